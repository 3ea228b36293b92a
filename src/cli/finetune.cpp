// tltrain finetune --checkpoint C [--unfreeze F | --unfreeze-blocks N | --unfreeze-from NAME] [--epochs --lr ...]
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_finetune(CLI::App& app) {
  auto o = std::make_shared<train::FinetuneOptions>();
  auto* sub = app.add_subcommand("finetune", "One more fine-tuning stage from a checkpoint (defaults: top 20%, SGD lr 1e-4 momentum 0.9)");
  sub->add_option("--checkpoint", o->checkpoint, "Checkpoint from fit (best.pt or last.pt)")->required();
  sub->add_option("--unfreeze", o->unfreeze, "Train the top fraction of backbone blocks, in (0, 1]")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--unfreeze-blocks", o->unfreeze_blocks, "Train the top N backbone blocks")->check(CLI::NonNegativeNumber);
  sub->add_option("--unfreeze-from", o->unfreeze_from, "Train this block (see `tltrain inspect`) and all after it");
  sub->add_option("--epochs", o->epochs, "Epochs (default 5)")->check(CLI::PositiveNumber);
  sub->add_option("--lr", o->lr, "Learning rate (default 1e-4)")->check(CLI::NonNegativeNumber);
  add_name_string<config::Optimizer>(*sub, "--optimizer", o->optimizer, "Optimizer (default sgd)");
  sub->add_option("--momentum", o->momentum, "Momentum for sgd/rmsprop (default 0.9)");
  add_name_string<config::BatchNormPolicy>(*sub, "--batch-norm", o->batch_norm, "Backbone BatchNorm (default frozen)");
  sub->add_option("--output-dir", o->output_dir, "Run directory (default: the checkpoint's run directory + '-finetune')");
  sub->add_option("--set", o->overrides, "Override any config value, as in fit");
  sub->callback([o] { app::finetune(*o, std::cout); });
}

}  // namespace tltrain::cli
