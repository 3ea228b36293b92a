// tltrain features --config X [--set ...] | --checkpoint C --out DIR
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_features(CLI::App& app) {
  auto o = std::make_shared<train::FeaturesOptions>();
  auto* sub = app.add_subcommand("features", "Write pooled backbone features, labels and paths as NumPy .npy + CSV (for scikit-learn)");
  sub->add_option("-c,--config", o->config, "Run config: its backbone (cut at model.features_from), data and pooling");
  sub->add_option("--checkpoint", o->checkpoint, "Or a checkpoint: its trained backbone and its run's data")->check(CLI::ExistingFile);
  sub->add_option("--set", o->overrides, "Override a config value (with --config)");
  sub->add_option("--out", o->out, "Folder to write")->required();
  add_name_option<config::Device>(*sub, "--device", o->device, "Device");
  sub->add_option("--threads", o->threads, "Loader threads (default: one per core)")->check(CLI::NonNegativeNumber);
  sub->callback([o] { app::features(*o, std::cout); });
}

}  // namespace tltrain::cli
