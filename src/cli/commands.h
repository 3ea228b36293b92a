#pragma once
// One setup_X(CLI::App&) per subcommand, each in its own file; the callback only turns
// options into a library call.
#include <CLI/CLI.hpp>

#include <string>

#include "tltrain/config/run_config.h"
#include "tltrain/eval/metrics.h"
#include "tltrain/train/trainer.h"

namespace tltrain::cli {

void setup_inspect(CLI::App& app);
void setup_fit(CLI::App& app);
void setup_finetune(CLI::App& app);
void setup_eval(CLI::App& app);
void setup_data(CLI::App& app);
void setup_bench(CLI::App& app);
void setup_export(CLI::App& app);
void setup_predict(CLI::App& app);
void setup_serve(CLI::App& app);
void setup_report(CLI::App& app);

/// RUN_DIR/eval.json: eval::to_json(REPORT) plus the checkpoint and data it describes ("" = the run's validation set).
void write_eval_json(const std::string& path, const eval::ClassificationReport& report, const std::string& checkpoint,
                     const std::string& data);

/// After fit/finetune (rank 0 only): evaluates CHECKPOINT on the run's validation data when it has
/// some (→ eval.json), then writes report.html. Failures are warnings: the run itself is saved.
/// Returns the report path, or "" when it could not be written.
std::string finish_run(const std::string& run_dir, const std::string& checkpoint, const config::RunConfig& cfg);
void setup_launch(CLI::App& app);

/// train::fit on the ranks the environment describes (torchrun, SLURM, tltrain launch; none: one
/// process): sets the output rank, starts the process group, and tells the others if this rank fails.
train::FitResult fit_on_ranks(const config::RunConfig& cfg, train::FitOptions opts, double dist_timeout = 60);

}  // namespace tltrain::cli
