#pragma once
// `tltrain eval`: a checkpoint on labelled images → loss, top-1/top-k accuracy, per-class
// precision/recall/F1, the confusion matrix and the misclassified files.
#include <string>

#include "tltrain/eval/metrics.h"

namespace tltrain::eval {

struct EvalOptions {
  std::string checkpoint;
  std::string data;          ///< class-folder root or CSV; default: the run's validation set
  int64_t topk = 5;
  std::string device = "auto";
  int64_t threads = 0;       ///< 0: one per core
  int64_t batch_size = 32;
};

ClassificationReport evaluate_checkpoint(const EvalOptions& opts);

}  // namespace tltrain::eval
