#pragma once
// One setup_X(CLI::App&) per subcommand, each in its own file; the callback only turns
// options into a library call.
#include <CLI/CLI.hpp>

#include "tltrain/train/trainer.h"

namespace tltrain::cli {

void setup_inspect(CLI::App& app);
void setup_fit(CLI::App& app);
void setup_finetune(CLI::App& app);
void setup_eval(CLI::App& app);
void setup_data(CLI::App& app);
void setup_bench(CLI::App& app);
void setup_launch(CLI::App& app);

/// train::fit on the ranks the environment describes (torchrun, SLURM, tltrain launch; none: one
/// process): sets the output rank, starts the process group, and tells the others if this rank fails.
train::FitResult fit_on_ranks(const config::RunConfig& cfg, train::FitOptions opts, double dist_timeout = 60);

}  // namespace tltrain::cli
