// tltrain eval --checkpoint best.pt [--data DIR] [--topk 5] [--out eval.json]
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_eval(CLI::App& app) {
  auto o = std::make_shared<eval::EvalOptions>();
  auto out = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("eval", "Evaluate a checkpoint: loss, top-1/top-k, per-class P/R/F1, confusion matrix, mistakes");
  sub->add_option("--checkpoint", o->checkpoint, "Checkpoint from fit")->required();
  sub->add_option("--data", o->data, "Labelled images (class folders or CSV); default: the run's validation set");
  sub->add_option("--topk", o->topk, "k for top-k accuracy (default 5)")->check(CLI::PositiveNumber);
  sub->add_option("--out", *out, "JSON report path (default RUN_DIR/eval.json)");
  add_name_option(*sub, "--device", o->device, "Where to run (default auto)");
  sub->add_option("--threads", o->threads, "Loader threads (default: one per core)");
  sub->add_option("--batch-size", o->batch_size, "Images per batch (default 32)")->check(CLI::PositiveNumber);
  sub->callback([o, out] { app::evaluate(*o, *out, std::cout); });
}

}  // namespace tltrain::cli
