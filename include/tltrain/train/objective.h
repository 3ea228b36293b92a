#pragma once
// What a stage trains for: logits and targets → the loss to minimise, how many predictions are
// right, and what validation measures. The loop and the gradient step know only this interface,
// so a new loss (binary cross-entropy, hinge, distillation) is a new Objective, not a new branch.
#include <torch/torch.h>

#include <memory>
#include <utility>
#include <vector>

#include "tltrain/config/run_config.h"

namespace tltrain::train {

/// A chunk's summed per-sample loss and summed sample weight: chunks of a batch add up, and
/// sum / weight over the whole batch is its mean loss.
struct LossSum {
  torch::Tensor sum, weight;
};

class Objective {
 public:
  virtual ~Objective() = default;
  /// The loss of LOGITS against TARGETS, summed (differentiable) with the samples' weight.
  virtual LossSum loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) const = 0;
  /// The summed weight of TARGETS: the divisor a batch's loss is normalised by before any forward.
  virtual torch::Tensor weight(const torch::Tensor& targets) const = 0;
  /// How many of LOGITS' predictions are right, as a 0-dim tensor where LOGITS are: the step adds
  /// it up on the device and reads it once with the loss (no host sync per micro-batch on a GPU).
  virtual torch::Tensor count_correct(const torch::Tensor& logits, const torch::Tensor& targets) const = 0;
  /// count_correct read to the host.
  int64_t correct(const torch::Tensor& logits, const torch::Tensor& targets) const {
    return count_correct(logits, targets).item<int64_t>();
  }
  /// Validation's (loss, accuracy) over a whole set's LOGITS.
  virtual std::pair<double, double> validate(const torch::Tensor& logits, const torch::Tensor& targets) const = 0;
  /// Further scores of a whole validation set for the epoch's log, e.g. {"roc_auc": 0.97}; none by default.
  virtual config::json scores(const torch::Tensor& logits, const torch::Tensor& targets) const;
};

/// Softmax cross-entropy over single-label targets, with optional per-class weights (undefined:
/// none) and label smoothing as torch's cross_entropy. Validation measures the plain loss, so
/// stages with different smoothing or weights stay comparable (as Keras's class_weight).
class CrossEntropy : public Objective {
 public:
  CrossEntropy(torch::Tensor class_weights, double smoothing);
  LossSum loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  torch::Tensor weight(const torch::Tensor& targets) const override;
  torch::Tensor count_correct(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  std::pair<double, double> validate(const torch::Tensor& logits, const torch::Tensor& targets) const override;

 protected:
  const torch::Tensor& class_weights() const { return class_w_; }

 private:
  torch::Tensor class_w_;
  double smoothing_;
};

/// The multi-class linear SVM's loss (Crammer-Singer, Keras categorical_hinge) on the head's
/// scores: max(0, 1 + max_{j != y} z_j - z_y), with the class weights as CrossEntropy's. On a
/// linear head with weight decay it is the soft-margin SVM; validation measures the plain hinge.
class Hinge final : public CrossEntropy {
 public:
  explicit Hinge(torch::Tensor class_weights);
  LossSum loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  std::pair<double, double> validate(const torch::Tensor& logits, const torch::Tensor& targets) const override;
};

/// The binary head's cross-entropy (on its [0, z] logits, binary cross-entropy): validation also
/// scores the ranking of class 1's probability, ROC-AUC and average precision.
class BinaryCrossEntropy final : public CrossEntropy {
 public:
  using CrossEntropy::CrossEntropy;
  config::json scores(const torch::Tensor& logits, const torch::Tensor& targets) const override;
};

/// The multi-label head: one sigmoid per class against multi-hot TARGETS, binary cross-entropy
/// averaged over the classes as Keras' binary_crossentropy, with its label smoothing
/// y (1 - s) + s / 2. An image counts as right when every class decision (probability above
/// THRESHOLD) is (sklearn's exact-match accuracy); validation also logs mAP and micro/macro F1.
class MultiLabelCrossEntropy final : public Objective {
 public:
  MultiLabelCrossEntropy(double smoothing, double threshold);
  LossSum loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  torch::Tensor weight(const torch::Tensor& targets) const override;
  torch::Tensor count_correct(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  std::pair<double, double> validate(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  config::json scores(const torch::Tensor& logits, const torch::Tensor& targets) const override;

 private:
  double smoothing_, threshold_;
};

/// Knowledge distillation over a softmax (or the binary head's [0, z]) output: training targets
/// are N×(1+C) rows [label, teacher logits] (train/distill.h) and the loss per image is
/// A·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−A)·BASE's loss, both weighted by the image's class
/// weight; T² keeps the teacher term's gradient the size of the label term's (Hinton et al.).
/// Accuracy, validation and scores are BASE's on the labels (validation has no teacher).
class Distill final : public Objective {
 public:
  Distill(std::unique_ptr<CrossEntropy> base, torch::Tensor class_weights, double temperature, double alpha);
  LossSum loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  torch::Tensor weight(const torch::Tensor& targets) const override;
  torch::Tensor count_correct(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  std::pair<double, double> validate(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  config::json scores(const torch::Tensor& logits, const torch::Tensor& targets) const override;

 private:
  std::unique_ptr<CrossEntropy> base_;
  torch::Tensor class_w_;
  double t_, alpha_;
};

/// The objective stage ST trains HEAD with, given the training set's per-class COUNTS.
std::unique_ptr<Objective> make_objective(const config::StageConfig& st, const config::HeadConfig& head,
                                          const std::vector<int64_t>& counts, const torch::Device& device);

/// Per-class loss weights for a stage: undefined for "none", sklearn's "balanced"
/// n / (classes * count) for "auto", or the configured list (its length checked against COUNTS).
torch::Tensor class_weights(const config::StageConfig& st, const std::vector<int64_t>& counts, const torch::Device& device);

}  // namespace tltrain::train
