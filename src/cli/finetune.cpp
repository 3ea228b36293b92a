// tltrain finetune --checkpoint C [--unfreeze F | --unfreeze-blocks N | --unfreeze-layers N | --freeze-first N | --unfreeze-from NAME] [--epochs --lr ...]
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
  sub->add_option("--unfreeze-layers", o->unfreeze_layers, "Train the last N layers, counted as Keras does (see `tltrain inspect --layers`)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--freeze-first", o->freeze_first, "Freeze the first N layers and train the rest")->check(CLI::NonNegativeNumber);
  sub->add_option("--unfreeze-from", o->unfreeze_from, "Train this block or sub-module (see `tltrain inspect --layers`) and all after it");
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
