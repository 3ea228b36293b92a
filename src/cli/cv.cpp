// tltrain cv --config X --folds K [--repeats R] [--set key=value ...] | tltrain cv --resume CV_DIR
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_cv(CLI::App& app) {
  auto o = std::make_shared<app::CvRequest>();
  auto* sub = app.add_subcommand("cv", "K-fold cross-validation of a run config (stratified, seeded; train and val merged)");
  sub->add_option("-c,--config", o->config, "Run config (JSON, comments allowed)");
  sub->add_option("--folds", o->folds, "Number of folds (default 5)")->check(CLI::Range(2, 1000));
  sub->add_option("--repeats", o->repeats, "Repeated k-fold: this many different fold assignments (default 1)")->check(CLI::Range(1, 100));
  sub->add_option("--set", o->overrides, "Override a config value, as in fit (repeatable)");
  sub->add_option("--resume", o->resume, "Continue the interrupted cv in CV_DIR at the fold and epoch where it stopped");
  sub->add_option("--dist-timeout", o->dist_timeout, "Data-parallel runs: seconds a rank waits for the others")->check(CLI::PositiveNumber);
  sub->callback([o] { app::cv(*o, std::cout); });
}

}  // namespace tltrain::cli
