#pragma once
// `tltrain finetune`: one more fine-tuning stage from a checkpoint, as the Keras guides set it up.
#include <cstdint>
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"

namespace tltrain::train {

struct FinetuneOptions {
  std::string checkpoint;                 ///< best.pt or last.pt of a run
  std::string output_dir;                 ///< default: the checkpoint run's output_dir + "-finetune"
  double unfreeze = 0;                    ///< top fraction of blocks; with none of the five: 0.2 (the seeds' "top 20%")
  int64_t unfreeze_blocks = -1;           ///< top N blocks (-1: not given)
  int64_t unfreeze_layers = -1;           ///< last N layers (-1: not given)
  int64_t freeze_first = -1;              ///< all but the first N layers (-1: not given)
  std::string unfreeze_from;              ///< this block or sub-module and everything after it
  int64_t epochs = 5;
  std::string optimizer = "sgd";          ///< sgd|adam|adamw|rmsprop
  double lr = 1e-4, momentum = 0.9;       ///< momentum: sgd and rmsprop only
  std::string batch_norm = "frozen";      ///< frozen|train
  std::vector<std::string> overrides;     ///< --set, applied last
};

/// The checkpoint run's config with one "finetune" stage built from OPTS (no feature cache), the
/// overrides applied, validated. A Usage error when more than one unfreeze option is given.
config::RunConfig finetune_config(const FinetuneOptions& opts);

}  // namespace tltrain::train
