#pragma once
// How the ranks of one `tltrain tune` meet (train/tune.cpp's private part): through files in the
// search's folder, with no torch here.
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/train/trainer.h"

namespace tltrain::dist {
class ProcessGroup;
}

namespace tltrain::train::tune_detail {

namespace fs = std::filesystem;

/// The ranks of a search (tltrain launch, torchrun, SLURM): each trains its share of a rung's
/// candidates as a one-process fit, and they meet through files in the search's folder, which they
/// share (one machine, or a shared filesystem), because a rung can outlast any collective's
/// timeout. DIR/ranks holds each rank's mark for each rung ("done", or "stopped" when its budget
/// ran out) and a failed rank's reason; DIR/results every result, as the rank that trained it wrote it.
struct Ranks {
  dist::ProcessGroup* group = nullptr;
  int rank = 0, world = 1, local_world = 1;
  std::string dir;  ///< the search's folder

  std::string marks() const { return dir + "/ranks"; }
  std::string mark_of(size_t rung, int r) const { return marks() + "/rung" + std::to_string(rung) + "_rank" + std::to_string(r); }
  std::string failed_of(int r) const { return marks() + "/rank" + std::to_string(r) + ".failed"; }
  std::string result_of(size_t candidate, size_t rung) const {
    return dir + "/results/c" + std::to_string(candidate) + "_r" + std::to_string(rung) + ".json";
  }
  void mark(size_t rung, bool stopped) const {
    if (world > 1) write_file_atomically(mark_of(rung, rank), stopped ? "stopped\n" : "done\n");
  }
  /// Fails with another rank's reason when one has failed, and on Ctrl-C with RESUME.
  void check(const std::string& resume) const {
    for (int r = 0; r < world; ++r)
      if (r != rank && fs::exists(failed_of(r))) TLTRAIN_FAIL(ErrorKind::Runtime, "tune: rank " + std::to_string(r) + " failed: " + read_file(failed_of(r), "a failed rank's reason"));
    TLTRAIN_CHECK(!stop_requested(), ErrorKind::Interrupted, resume);
  }
  /// Waits until READY holds, saying so once when it takes a while.
  template <typename Ready>
  void wait(Ready ready, const std::string& what, const std::string& resume) const {
    const auto t0 = std::chrono::steady_clock::now();
    bool said = false;
    while (!ready()) {
      check(resume);
      if (!said && std::chrono::steady_clock::now() - t0 > std::chrono::seconds(10)) {
        log::info("tune: rank " + std::to_string(rank) + " waits for " + what);
        said = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  /// Waits until every rank has marked RUNG; whether one of them stopped for the budget.
  bool all_marked(size_t rung, const std::string& resume) const {
    if (world == 1) return false;
    wait([&] {
      for (int r = 0; r < world; ++r)
        if (!fs::exists(mark_of(rung, r))) return false;
      return true;
    }, "the other ranks' candidates of rung " + std::to_string(rung), resume);
    for (int r = 0; r < world; ++r)
      if (read_file(mark_of(rung, r), "a rank's mark").rfind("stopped", 0) == 0) return true;
    return false;
  }
};

/// While a rank trains its own trial it is that run's only writer, so it writes its files (the
/// log's output rank); afterwards it is one of the search's ranks again.
class OwnRun {
 public:
  explicit OwnRun(int rank) : rank_(rank) { log::set_rank(0); }
  ~OwnRun() { log::set_rank(rank_); }
  OwnRun(const OwnRun&) = delete;
  OwnRun& operator=(const OwnRun&) = delete;

 private:
  int rank_;
};

}  // namespace tltrain::train::tune_detail
