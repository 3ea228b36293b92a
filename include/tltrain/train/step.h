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
#include "tltrain/train/precision.h"

namespace tltrain::train {

struct StepStats {
  double loss_sum = 0, weight_sum = 0;
  int64_t correct = 0, count = 0;
  int64_t skipped = 0;  ///< steps loss scaling skipped (a gradient overflowed)
  void add(const StepStats& o) {
    skipped += o.skipped;
    loss_sum += o.loss_sum;
    weight_sum += o.weight_sum;
    correct += o.correct;
    count += o.count;
  }
  double loss() const { return weight_sum > 0 ? loss_sum / weight_sum : 0.0; }
  double accuracy() const { return count > 0 ? static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
};

/// What a step's loss holds beyond the objective, for optimizers that read the loss itself
/// (LBFGS's line search evaluates it several times per step).
struct StepLoss {
  bool global = false;               ///< the returned loss is the whole batch's over every rank
  double l2 = 0;                     ///< adds 0.5·l2·|P|² over PARAMS (LBFGS's weight_decay)
  std::vector<torch::Tensor> params;
};

/// How a step runs beyond its batch.
struct StepOptions {
  int64_t micro = 0;                    ///< forward chunk rows (0: the whole batch)
  dist::ProcessGroup* group = nullptr;  ///< data-parallel: this rank's share of a global batch
  StepLoss extra;
  LossScaler* scaler = nullptr;         ///< fp16: backward on the scaled loss, overflowing steps skipped
  /// On CPU, chunks run side by side, one per intra-op thread (core/side_by_side.h), each with its
  /// own backward; their gradients are summed in chunk order, which is the order backward
  /// accumulates them in turn, so the step is the same at any thread count. Only for a forward
  /// that draws no random numbers (dropout would draw in whichever order the chunks ran).
  bool side_by_side = false;
};

/// Zero, forward/backward in chunks of MICRO rows (0: all) with the loss normalised by the whole
/// batch (so the gradient equals the full batch's), then one optimizer step. With GROUP the batch
/// is this rank's share: the loss is normalised by the global batch's weight and the trainable
/// gradients are summed over ranks before the step, so W ranks × B equal one process × W·B.
/// All of it is the optimizer's closure: LBFGS calls it as often as its line search needs, the
/// others once; the figures returned are those of the first call (the weights the step began at).
/// With a SCALER the optimizer steps only when the summed gradients are finite.
StepStats gradient_step(const Forward& forward, const torch::Tensor& inputs, const torch::Tensor& targets,
                        torch::optim::Optimizer& optimizer, const Objective& objective, const StepOptions& options = {});

/// Sums STATS over the ranks of GROUP (no-op without one): epoch metrics count every rank's share.
StepStats all_reduce_stats(const StepStats& stats, dist::ProcessGroup* group);

/// The stage's optimizer over parameter groups (params, initial lr).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::OptimizerConfig& o,
                                                        std::vector<std::pair<std::vector<torch::Tensor>, double>> groups);

/// What O's steps add to the loss: LBFGS's weight decay as an L2 term on WEIGHTS (the head's
/// matrices; biases go free, as in sklearn) and the global loss its line search reads.
StepLoss step_loss(const config::OptimizerConfig& o, std::vector<torch::Tensor> weights);

/// O has its own schedule (LBFGS's line search): the stage's schedule and warm-up do not apply.
bool sets_own_rate(const config::OptimizerConfig& o);

}  // namespace tltrain::train
