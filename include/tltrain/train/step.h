#pragma once
// The gradient step and the optimizers: the single place where a batch becomes an update.
// Data-parallel training (all-reduce between backward and step) hooks in here.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/dist/context.h"
#include "tltrain/train/objective.h"

namespace tltrain::train {

struct StepStats {
  double loss_sum = 0, weight_sum = 0;
  int64_t correct = 0, count = 0;
  void add(const StepStats& o) {
    loss_sum += o.loss_sum;
    weight_sum += o.weight_sum;
    correct += o.correct;
    count += o.count;
  }
  double loss() const { return weight_sum > 0 ? loss_sum / weight_sum : 0.0; }
  double accuracy() const { return count > 0 ? static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
};

/// Zero, forward/backward in chunks of MICRO rows (0: all) with the loss normalised by the whole
/// batch (so the gradient equals the full batch's), then one optimizer step. With GROUP the batch
/// is this rank's share: the loss is normalised by the global batch's weight and the trainable
/// gradients are summed over ranks before the step, so W ranks × B equal one process × W·B.
StepStats gradient_step(const std::function<torch::Tensor(const torch::Tensor&)>& forward, const torch::Tensor& inputs,
                        const torch::Tensor& targets, torch::optim::Optimizer& optimizer, const Objective& objective,
                        int64_t micro, dist::ProcessGroup* group = nullptr);

/// Sums STATS over the ranks of GROUP (no-op without one): epoch metrics count every rank's share.
StepStats all_reduce_stats(const StepStats& stats, dist::ProcessGroup* group);

/// The stage's optimizer over parameter groups (params, initial lr).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::OptimizerConfig& o,
                                                        std::vector<std::pair<std::vector<torch::Tensor>, double>> groups);

}  // namespace tltrain::train
