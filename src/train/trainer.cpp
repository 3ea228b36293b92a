#include "tltrain/train/trainer.h"

#include <atomic>
#include <filesystem>

#include "tltrain/core/error.h"
#include "tltrain/train/callbacks.h"
#include "tltrain/train/run.h"

namespace fs = std::filesystem;

namespace tltrain::train {

namespace {
std::atomic<bool> g_stop{false};
}  // namespace

void request_stop() { g_stop = true; }
bool stop_requested() { return g_stop.load(); }

FitResult fit(const config::RunConfig& cfg, const FitOptions& opts) {
  g_stop = false;
  Run run(cfg, opts, default_callbacks(opts));
  return run.fit();
}

config::RunConfig load_run_dir_config(const std::string& run_dir) {
  std::string path = run_dir + "/config.json";
  TLTRAIN_CHECK(fs::exists(path), ErrorKind::Data, "'" + run_dir + "' is not a tltrain run directory (no config.json)");
  return config::parse_run_config(config::parse_json_file(path), path);
}

}  // namespace tltrain::train
