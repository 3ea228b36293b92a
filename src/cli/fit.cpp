// tltrain fit --config X [--set key=value ...] [--dry-run]
#include <iostream>

#include "commands.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/train/plan.h"

namespace tltrain::cli {

namespace {
struct FitOptions {
  std::string config;
  std::vector<std::string> overrides;
  bool dry_run = false;
};

void run_fit(const FitOptions& o) {
  auto cfg = config::load_run_config(o.config, o.overrides);
  for (const auto& w : cfg.warnings) log::warn(o.config + ": " + w.path + ": " + w.message);
  if (o.dry_run) {
    auto d = train::dry_run(cfg);
    std::cout << "Resolved config:\n" << d.resolved_config.dump(2) << "\n\n" << d.text;
    return;
  }
  TLTRAIN_FAIL(ErrorKind::Usage, "training is not available in this build yet; use --dry-run to see the plan");
}
}  // namespace

void setup_fit(CLI::App& app) {
  auto opts = std::make_shared<FitOptions>();
  auto* sub = app.add_subcommand("fit", "Train all stages of a run config");
  sub->add_option("-c,--config", opts->config, "Run config (JSON, comments allowed)")->required();
  sub->add_option("--set", opts->overrides, "Override a config value: --set stages[1].optimizer.lr=1e-4 (repeatable)");
  sub->add_flag("--dry-run", opts->dry_run, "Print the resolved config and the per-stage plan, then stop");
  sub->callback([opts] { run_fit(*opts); });
}

}  // namespace tltrain::cli
