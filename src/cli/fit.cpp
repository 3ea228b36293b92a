// tltrain fit --config X [--set key=value ...] [--dry-run] | tltrain fit --resume RUN_DIR
#include <iostream>

#include "commands.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/dist/context.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/trainer.h"

namespace tltrain::cli {

namespace {
struct FitOptions {
  std::string config;
  std::vector<std::string> overrides;
  bool dry_run = false;
  std::string resume;
  bool tensorboard = false;
  double dist_timeout = 60;  ///< seconds a collective may wait for the other ranks
};

void run_fit(const FitOptions& o) {
  // torchrun/SLURM/tltrain launch environment; none set: one process, as before.
  const dist::DistContext ctx = dist::context_from_env();
  log::set_rank(ctx.rank);
  TLTRAIN_CHECK(!o.config.empty() || !o.resume.empty(), ErrorKind::Usage, "fit needs --config FILE (or --resume RUN_DIR)");
  TLTRAIN_CHECK(o.config.empty() || o.resume.empty(), ErrorKind::Usage,
                "--resume continues a run with its own saved config; leave out --config");
  config::RunConfig cfg = o.resume.empty() ? config::load_run_config(o.config, o.overrides) : train::load_run_dir_config(o.resume);
  TLTRAIN_CHECK(o.resume.empty() || o.overrides.empty(), ErrorKind::Usage,
                "--set cannot change a run being resumed: the result would match neither config");
  for (const auto& w : cfg.warnings) log::warn(cfg.source + ": " + w.path + ": " + w.message);
  if (o.dry_run) {
    auto d = train::dry_run(cfg);
    std::cout << "Resolved config:\n" << d.resolved_config.dump(2) << "\n\n" << d.text;
    return;
  }
  auto r = train::fit_on_ranks(cfg, {!o.resume.empty(), "", o.tensorboard, nullptr}, o.dist_timeout);
  if (!log::is_output_rank()) return;
  std::string report = eval::finish_run(r.run_dir, r.best_checkpoint.empty() ? r.last_checkpoint : r.best_checkpoint, cfg);
  std::cout << "run: " << r.run_dir << "\n"
            << "best " << r.monitor << ": " << r.best_value << "  (" << r.best_checkpoint << ")\n"
            << "last checkpoint: " << r.last_checkpoint << "\n"
            << "logs: " << r.run_dir << "/log.csv\n"
            << (report.empty() ? "" : "report: " + report + "\n")
            << "next: tltrain eval --checkpoint " << r.best_checkpoint << "\n";
}
}  // namespace

void setup_fit(CLI::App& app) {
  auto opts = std::make_shared<FitOptions>();
  auto* sub = app.add_subcommand("fit", "Train all stages of a run config");
  sub->add_option("-c,--config", opts->config, "Run config (JSON, comments allowed)");
  sub->add_option("--set", opts->overrides, "Override a config value: --set stages[1].optimizer.lr=1e-4 (repeatable)");
  sub->add_flag("--dry-run", opts->dry_run, "Print the resolved config and the per-stage plan, then stop");
  sub->add_option("--resume", opts->resume, "Continue the interrupted run in RUN_DIR from its last checkpoint");
  sub->add_flag("--tensorboard", opts->tensorboard, "Also write per-epoch scalars for TensorBoard to RUN_DIR/tb/ (step = global epoch)");
  sub->add_option("--dist-timeout", opts->dist_timeout,
                  "Data-parallel runs: seconds a rank waits for the others before failing (env TLTRAIN_DIST_TIMEOUT)")
      ->check(CLI::PositiveNumber);
  sub->callback([opts] { run_fit(*opts); });
}

}  // namespace tltrain::cli
