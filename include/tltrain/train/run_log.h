#pragma once
// What a run shows and leaves behind as it trains: the terminal progress line and the
// per-epoch logs (log.csv, log.jsonl). Rank 0 only, through log::is_output_rank().
#include <chrono>
#include <string>

#include "tltrain/config/json_reader.h"

namespace tltrain::train {

/// Progress on a terminal: one rewritten line per batch with ETA, loss, accuracy and img/s;
/// nothing when stderr is not a TTY (logs then get one line per epoch).
class Progress {
 public:
  Progress(std::string label, int64_t total);
  void update(int64_t done, double loss, double accuracy, int64_t images);
  void finish();

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

/// Rewrites DIR/log.csv and DIR/log.jsonl from HISTORY (one entry per epoch), atomically, so a
/// resumed run's logs hold exactly its completed epochs.
void write_logs(const std::string& dir, const config::json& history);

}  // namespace tltrain::train
