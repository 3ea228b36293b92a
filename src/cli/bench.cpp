// tltrain bench data --config X [--threads N] [--seconds S] [--decode-only]
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "tltrain/data/tools.h"
#include "tltrain/model/backbone_meta.h"

namespace tltrain::cli {

namespace {
struct BenchDataOptions {
  std::string config;
  std::vector<std::string> overrides;
  data::BenchOptions bench;
};

void run_bench_data(const BenchDataOptions& o) {
  auto setup = data::load_data_setup(o.config, o.overrides, model::read_image_spec);
  auto r = data::bench_data(setup, o.bench);
  char line[256];
  std::snprintf(line, sizeof line, "%s: %.1f images/s (%lld images in %.2f s, %lld threads, batch %lld, %lldx%lld)",
                o.bench.decode_only ? "decode only" : "training pipeline", r.images_per_s, static_cast<long long>(r.images),
                r.seconds, static_cast<long long>(r.threads), static_cast<long long>(r.batch_size),
                static_cast<long long>(setup.pre.height), static_cast<long long>(setup.pre.width));
  std::cout << line << "\n";
}
}  // namespace

void setup_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure parts of the pipeline");
  bench->require_subcommand(1);
  auto opts = std::make_shared<BenchDataOptions>();
  auto* d = bench->add_subcommand("data", "Steady-state images/s of the training data pipeline (after a warm-up batch)");
  d->add_option("-c,--config", opts->config, "Run config (JSON, comments allowed)")->required()->check(CLI::ExistingFile);
  d->add_option("--set", opts->overrides, "Override a config value (repeatable)");
  d->add_option("--threads", opts->bench.threads, "Loader threads (default: threads.loader, else one per core)");
  d->add_option("--seconds", opts->bench.seconds, "Measuring time")->capture_default_str();
  d->add_flag("--decode-only", opts->bench.decode_only, "Read and decode only: the ceiling of the pipeline");
  d->callback([opts] { run_bench_data(*opts); });
}

}  // namespace tltrain::cli
