// tltrain bench data --config X [--threads N] [--seconds S] [--decode-only]
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

namespace {
struct BenchDataOptions {
  std::string config;
  std::vector<std::string> overrides;
  data::BenchOptions bench;
};
}  // namespace

void setup_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure parts of the pipeline");
  bench->require_subcommand(1);
  auto o = std::make_shared<BenchDataOptions>();
  auto* d = bench->add_subcommand("data", "Steady-state images/s of the training data pipeline (after a warm-up batch)");
  add_config_options(*d, o->config, o->overrides);
  d->add_option("--threads", o->bench.threads, "Loader threads (default: threads.loader, else one per core)");
  d->add_option("--seconds", o->bench.seconds, "Measuring time")->capture_default_str();
  d->add_flag("--decode-only", o->bench.decode_only, "Read and decode only: the ceiling of the pipeline");
  d->callback([o] { app::bench_data(o->config, o->overrides, o->bench, std::cout); });
}

}  // namespace tltrain::cli
