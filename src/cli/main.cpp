// tltrain: thin CLI over tltrain_lib. Parses, dispatches, and maps failures to exit codes.
#include <torch/version.h>

#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "commands.h"
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/train/trainer.h"

namespace {
/// Settings libraries read once at load, set by re-executing once; a user's own values are kept
/// (docs/benchmarks.md): OpenMP threads spinning while waiting made training 5-10x slower whenever
/// anything else used the cores; tcmalloc's 32 MiB of per-thread freed blocks raised a 10x set's peak RSS 11.6%, 4 MiB: 8.6%.
void set_runtime_env(char** argv) {
  bool changed = false;
  for (const auto& [name, value] : {std::pair{"OMP_WAIT_POLICY", "PASSIVE"}, std::pair{"TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES", "4194304"}})
    if (!std::getenv(name)) changed = ::setenv(name, value, 1) == 0 || changed;
  if (changed) ::execv("/proc/self/exe", argv);  // returns only on failure: then run with the defaults
}

/// glibc serves blocks over its dynamic mmap threshold (at most 32 MiB) from fresh mappings and
/// trims freed heap above 128 KiB: every batch's decode buffers, image tensors and activations
/// were mapped, faulted in page by page and unmapped again. That was 8 of 31 CPU seconds in the
/// kernel for hymenoptera's feature cache; with these two settings 0.7, and the cache took 10.4 s
/// instead of 14.5 (docs/benchmarks.md, issue 18). Freed memory up to the trim threshold stays
/// with the process for the next batch.
void keep_batch_buffers() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
}
}  // namespace

int main(int argc, char** argv) {
  using namespace tltrain;
  set_runtime_env(argv);
  keep_batch_buffers();
  CLI::App app{"tltrain — transfer learning for image classification on LibTorch"};
  app.set_version_flag("--version", std::string("tltrain 0.1.0 (LibTorch ") + TORCH_VERSION + ")");
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Debug output, and where errors were raised");
  app.add_flag("-q,--quiet", quiet, "Warnings and errors only");
  app.parse_complete_callback([&] { log::init(quiet ? log::Level::Quiet : verbose ? log::Level::Verbose : log::Level::Normal); });
  cli::setup_inspect(app);
  cli::setup_fit(app);
  cli::setup_finetune(app);
  cli::setup_cv(app);
  cli::setup_lr_find(app);
  cli::setup_tune(app);
  cli::setup_distill(app);
  cli::setup_features(app);
  cli::setup_eval(app);
  // First Ctrl-C/SIGTERM: finish the batch, keep the last checkpoint, exit 130. A second one kills.
  auto on_signal = [](int sig) {
    train::request_stop();
    std::signal(sig, SIG_DFL);
  };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  cli::setup_data(app);
  cli::setup_bench(app);
  cli::setup_export(app);
  cli::setup_predict(app);
  cli::setup_serve(app);
  cli::setup_report(app);
  cli::setup_launch(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? exit_code::ok : exit_code::usage;
  } catch (const Error& e) {
    // Under torchrun/tltrain launch every rank may fail: say which one.
    const char* rank = std::getenv("RANK");
    std::cerr << (rank && *rank && std::string(rank) != "0" ? std::string("[rank ") + rank + "] " : "") << "error: " << e.what() << "\n";
    if (verbose && !e.where().empty()) std::cerr << "  (raised at " << e.where() << ")\n";
    return exit_code_for(e.kind());
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what() << "\nThis is a bug in tltrain; please report it with the command you ran.\n";
    return exit_code::internal;
  }
  return exit_code::ok;
}
