// tltrain lr-find --config X [--stage N] [--start-lr A --end-lr B --steps K] [--checkpoint CK]
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_lr_find(CLI::App& app) {
  auto o = std::make_shared<app::LrFindRequest>();
  auto* sub = app.add_subcommand("lr-find", "Learning-rate range test of one stage (fastai's lr_find): the loss as the rate grows, and the rates it suggests");
  sub->add_option("-c,--config", o->config, "Run config (JSON, comments allowed)")->required();
  sub->add_option("--stage", o->options.stage, "Which stage, 0-based (default 0); the stages before it train first");
  sub->add_option("--start-lr", o->options.start_lr, "First rate (default 1e-7)")->check(CLI::PositiveNumber);
  sub->add_option("--end-lr", o->options.end_lr, "Last rate (default 10)")->check(CLI::PositiveNumber);
  sub->add_option("--steps", o->options.steps, "Batches, one rate each (default 100)")->check(CLI::Range(5, 100000));
  sub->add_option("--diverge", o->options.diverge, "Stop once the smoothed loss passes this many times its best (default 4)");
  sub->add_option("--checkpoint", o->options.checkpoint, "Start from these weights instead of training the earlier stages")
      ->check(CLI::ExistingFile);
  sub->add_option("--out", o->options.out_dir, "Where to write (default OUTPUT_DIR/lr_find/stage<N>)");
  sub->add_option("--set", o->overrides, "Override a config value, as in fit (repeatable)");
  sub->callback([o] { app::lr_find(*o, std::cout); });
}

}  // namespace tltrain::cli
