#pragma once
// `tltrain eval`: a checkpoint on labelled images → loss, top-1/top-k accuracy, per-class
// precision/recall/F1, the confusion matrix and the misclassified files.
#include <string>

#include "tltrain/config/run_config.h"
#include "tltrain/eval/metrics.h"

namespace tltrain::eval {

struct EvalOptions {
  std::string checkpoint;
  std::string data;          ///< class-folder root or CSV; default: the run's validation set
  int64_t topk = 5;
  config::Device device = config::Device::Auto;
  int64_t threads = 0;       ///< 0: one per core
  int64_t batch_size = 32;
};

ClassificationReport evaluate_checkpoint(const EvalOptions& opts);

/// RUN_DIR/eval.json: to_json(REPORT) plus the checkpoint and data it describes ("" = the run's validation set).
void write_eval_json(const std::string& path, const ClassificationReport& report, const std::string& checkpoint,
                     const std::string& data);

/// After fit/finetune (rank 0 only): evaluates CHECKPOINT on the run's validation data when it has
/// some (→ eval.json), then writes report.html. Failures are warnings: the run itself is saved.
/// Returns the report path, or "" when it could not be written.
std::string finish_run(const std::string& run_dir, const std::string& checkpoint, const config::RunConfig& cfg);

}  // namespace tltrain::eval
