#pragma once
// Inference over a loader in micro-batches: validation, eval and predict share it.
#include <torch/torch.h>

#include <vector>

#include "tltrain/data/loader.h"
#include "tltrain/model/classifier.h"

namespace tltrain::model {

/// MICRO (or the whole batch when 0 or larger) rows at a time through FN, results concatenated.
/// On CPU small chunks are several times faster per image than one big batch.
torch::Tensor in_chunks(const torch::Tensor& x, int64_t micro, const std::function<torch::Tensor(const torch::Tensor&)>& fn);

struct Predictions {
  torch::Tensor logits;          ///< N×C float, CPU, in loader order
  torch::Tensor labels;          ///< N int64
  std::vector<int64_t> indices;  ///< sample index of each row
};

/// Runs MODEL in inference mode over one epoch of LOADER.
Predictions predict(Classifier& model, data::Loader& loader, int64_t micro, int64_t epoch = 0);

/// Mean cross-entropy and top-1 accuracy of predictions.
std::pair<double, double> loss_and_accuracy(const Predictions& p);

}  // namespace tltrain::model
