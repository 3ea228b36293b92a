// tltrain fit --config X [--set key=value ...] [--dry-run] | tltrain fit --resume RUN_DIR
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_fit(CLI::App& app) {
  auto o = std::make_shared<app::FitRequest>();
  auto* sub = app.add_subcommand("fit", "Train all stages of a run config");
  sub->add_option("-c,--config", o->config, "Run config (JSON, comments allowed)");
  sub->add_option("--set", o->overrides, "Override a config value: --set stages[1].optimizer.lr=1e-4 (repeatable)");
  sub->add_flag("--dry-run", o->dry_run, "Print the resolved config and the per-stage plan, then stop");
  sub->add_option("--resume", o->resume, "Continue the interrupted run in RUN_DIR from its last checkpoint");
  sub->add_flag("--tensorboard", o->tensorboard, "Also write per-epoch scalars for TensorBoard to RUN_DIR/tb/ (step = global epoch)");
  sub->add_option("--dist-timeout", o->dist_timeout,
                  "Data-parallel runs: seconds a rank waits for the others before failing (env TLTRAIN_DIST_TIMEOUT)")
      ->check(CLI::PositiveNumber);
  sub->callback([o] { app::fit(*o, std::cout); });
}

}  // namespace tltrain::cli
