#include "tltrain/train/objective.h"

#include <limits>

#include "tltrain/core/error.h"
#include "tltrain/core/ranking.h"
#include "tltrain/model/inference.h"

namespace tltrain::train {

CrossEntropy::CrossEntropy(torch::Tensor class_weights, double smoothing)
    : class_w_(std::move(class_weights)), smoothing_(smoothing) {}

LossSum CrossEntropy::loss_sum(const torch::Tensor& logits, const torch::Tensor& y) const {
  auto logp = torch::log_softmax(logits, 1);
  auto nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1);
  auto w_y = class_w_.defined() ? class_w_.index_select(0, y) : torch::ones_like(nll);
  auto per = (1.0 - smoothing_) * w_y * nll;
  if (smoothing_ > 0) {
    auto all = class_w_.defined() ? -(logp * class_w_.unsqueeze(0)).sum(1) : -logp.sum(1);
    per = per + smoothing_ * all / static_cast<double>(logits.size(1));
  }
  return {per.sum(), w_y.sum()};
}

torch::Tensor CrossEntropy::weight(const torch::Tensor& y) const {
  return class_w_.defined() ? class_w_.index_select(0, y).sum() : torch::full({}, static_cast<double>(y.size(0)));
}

torch::Tensor CrossEntropy::count_correct(const torch::Tensor& logits, const torch::Tensor& y) const {
  return logits.argmax(1).eq(y).sum();
}

std::pair<double, double> CrossEntropy::validate(const torch::Tensor& logits, const torch::Tensor& y) const {
  return model::loss_and_accuracy({logits, y, {}});
}

namespace {
/// Crammer-Singer margins per row: max(0, 1 + the best wrong score - the right one).
torch::Tensor hinge_per_sample(const torch::Tensor& logits, const torch::Tensor& y) {
  const auto right = logits.gather(1, y.unsqueeze(1)).squeeze(1);
  const auto wrong = logits.masked_fill(torch::one_hot(y, logits.size(1)).to(torch::kBool), -std::numeric_limits<double>::infinity());
  return torch::clamp_min(1.0 + std::get<0>(wrong.max(1)) - right, 0.0);
}
}  // namespace

Hinge::Hinge(torch::Tensor class_weights) : CrossEntropy(std::move(class_weights), 0.0) {}

LossSum Hinge::loss_sum(const torch::Tensor& logits, const torch::Tensor& y) const {
  const auto per = hinge_per_sample(logits, y);
  const auto w = weight(y);
  if (!class_weights().defined()) return {per.sum(), w};
  return {(class_weights().index_select(0, y) * per).sum(), w};
}

std::pair<double, double> Hinge::validate(const torch::Tensor& logits, const torch::Tensor& y) const {
  if (y.size(0) == 0) return {0.0, 0.0};
  const double loss = hinge_per_sample(logits.to(torch::kDouble), y).mean().item<double>();
  return {loss, static_cast<double>(correct(logits, y)) / static_cast<double>(y.size(0))};
}

config::json Objective::scores(const torch::Tensor&, const torch::Tensor&) const { return config::json::object(); }

namespace {
config::json score_or_null(const std::optional<double>& v) { return v ? config::json(*v) : config::json(nullptr); }
}  // namespace

config::json BinaryCrossEntropy::scores(const torch::Tensor& logits, const torch::Tensor& y) const {
  const auto p1 = torch::softmax(logits.to(torch::kDouble), 1).select(1, 1).contiguous().to(torch::kCPU);
  const auto labels = y.to(torch::kCPU).contiguous();
  std::vector<double> scores(p1.data_ptr<double>(), p1.data_ptr<double>() + p1.numel());
  std::vector<bool> positive;
  for (int64_t i = 0; i < labels.numel(); ++i) positive.push_back(labels.data_ptr<int64_t>()[i] == 1);
  return {{"roc_auc", score_or_null(ranking::roc_auc(scores, positive))},
          {"average_precision", score_or_null(ranking::average_precision(scores, positive))}};
}

MultiLabelCrossEntropy::MultiLabelCrossEntropy(double smoothing, double threshold) : smoothing_(smoothing), threshold_(threshold) {}

LossSum MultiLabelCrossEntropy::loss_sum(const torch::Tensor& logits, const torch::Tensor& y) const {
  const auto target = y.to(logits.dtype()) * (1.0 - smoothing_) + smoothing_ / 2.0;
  const auto per = torch::binary_cross_entropy_with_logits(logits, target, {}, {}, at::Reduction::None).mean(1);
  return {per.sum(), weight(y)};
}

torch::Tensor MultiLabelCrossEntropy::weight(const torch::Tensor& y) const {
  return torch::full({}, static_cast<double>(y.size(0)));
}

torch::Tensor MultiLabelCrossEntropy::count_correct(const torch::Tensor& logits, const torch::Tensor& y) const {
  const auto decided = torch::sigmoid(logits).gt(threshold_);
  return decided.eq(y.gt(0.5)).all(1).sum();
}

std::pair<double, double> MultiLabelCrossEntropy::validate(const torch::Tensor& logits, const torch::Tensor& y) const {
  if (y.size(0) == 0) return {0.0, 0.0};
  const double n = static_cast<double>(y.size(0));
  const double loss = torch::binary_cross_entropy_with_logits(logits.to(torch::kDouble), y.to(torch::kDouble)).item<double>();
  return {loss, static_cast<double>(correct(logits, y)) / n};
}

config::json MultiLabelCrossEntropy::scores(const torch::Tensor& logits, const torch::Tensor& y) const {
  const auto p = torch::sigmoid(logits).to(torch::kFloat).contiguous().to(torch::kCPU);
  const auto t = y.gt(0.5).to(torch::kUInt8).contiguous().to(torch::kCPU);
  const auto m = ranking::multilabel({p.data_ptr<float>(), p.data_ptr<float>() + p.numel()},
                                     {t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel()}, static_cast<size_t>(p.size(1)), threshold_);
  return {{"map", score_or_null(m.mean_average_precision)}, {"f1_micro", m.micro_f1}, {"f1_macro", m.macro_f1}};
}

namespace {
/// A distillation batch's labels (column 0 of its targets); other targets as they are.
torch::Tensor labels_of(const torch::Tensor& targets) {
  return targets.dim() == 2 && targets.scalar_type() != torch::kLong ? targets.select(1, 0).to(torch::kLong) : targets;
}
}  // namespace

Distill::Distill(std::unique_ptr<CrossEntropy> base, torch::Tensor class_weights, double temperature, double alpha)
    : base_(std::move(base)), class_w_(std::move(class_weights)), t_(temperature), alpha_(alpha) {}

LossSum Distill::loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) const {
  const auto y = labels_of(targets);
  const auto teacher = targets.narrow(1, 1, targets.size(1) - 1).to(logits.dtype());
  LossSum hard = base_->loss_sum(logits, y);
  const auto log_p_student = torch::log_softmax(logits / t_, 1);
  const auto log_p_teacher = torch::log_softmax(teacher / t_, 1);
  auto kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1);
  if (class_w_.defined()) kl = kl * class_w_.index_select(0, y).to(kl.dtype());
  return {(1.0 - alpha_) * hard.sum + alpha_ * t_ * t_ * kl.sum(), hard.weight};
}

torch::Tensor Distill::weight(const torch::Tensor& targets) const { return base_->weight(labels_of(targets)); }
torch::Tensor Distill::count_correct(const torch::Tensor& logits, const torch::Tensor& targets) const {
  return base_->count_correct(logits, labels_of(targets));
}
std::pair<double, double> Distill::validate(const torch::Tensor& logits, const torch::Tensor& targets) const {
  return base_->validate(logits, labels_of(targets));
}
config::json Distill::scores(const torch::Tensor& logits, const torch::Tensor& targets) const {
  return base_->scores(logits, labels_of(targets));
}

namespace {
std::unique_ptr<Objective> plain_objective(const config::StageConfig& st, const config::HeadConfig& head,
                                           const std::vector<int64_t>& counts, const torch::Device& device) {
  switch (head.output) {
    case config::HeadOutput::MultiLabel: return std::make_unique<MultiLabelCrossEntropy>(st.label_smoothing, head.threshold);
    case config::HeadOutput::Sigmoid:
      return std::make_unique<BinaryCrossEntropy>(class_weights(st, counts, device), st.label_smoothing);
    case config::HeadOutput::Softmax: break;
  }
  if (st.loss == config::Loss::Hinge) return std::make_unique<Hinge>(class_weights(st, counts, device));
  return std::make_unique<CrossEntropy>(class_weights(st, counts, device), st.label_smoothing);
}
}  // namespace

std::unique_ptr<Objective> make_objective(const config::StageConfig& st, const config::HeadConfig& head,
                                          const std::vector<int64_t>& counts, const torch::Device& device) {
  if (!st.distill.enabled()) return plain_objective(st, head, counts, device);
  // The config refuses distillation for the hinge loss and the multi-label head: the labels'
  // term is a softmax or binary cross-entropy, weighted as the teacher's term.
  TLTRAIN_ASSERT(st.loss != config::Loss::Hinge && head.output != config::HeadOutput::MultiLabel, "distillation over a non-softmax objective");
  auto cw = class_weights(st, counts, device);
  std::unique_ptr<CrossEntropy> labels = head.output == config::HeadOutput::Sigmoid
                                             ? std::make_unique<BinaryCrossEntropy>(cw, st.label_smoothing)
                                             : std::make_unique<CrossEntropy>(cw, st.label_smoothing);
  return std::make_unique<Distill>(std::move(labels), cw, st.distill.temperature, st.distill.alpha);
}

torch::Tensor class_weights(const config::StageConfig& st, const std::vector<int64_t>& counts, const torch::Device& device) {
  const auto classes = static_cast<int64_t>(counts.size());
  std::vector<float> w;
  using Mode = config::StageConfig::ClassWeights;
  if (st.class_weights_mode == Mode::Auto) {
    int64_t n = 0;
    for (auto c : counts) n += c;
    for (auto c : counts) w.push_back(c > 0 ? static_cast<float>(n) / static_cast<float>(classes * c) : 0.f);
  } else if (st.class_weights_mode == Mode::List) {
    TLTRAIN_CHECK(static_cast<int64_t>(st.class_weights.size()) == classes, ErrorKind::Usage,
                  "stage '" + st.name + "': class_weights has " + std::to_string(st.class_weights.size()) + " weights for " +
                      std::to_string(classes) + " classes");
    w.assign(st.class_weights.begin(), st.class_weights.end());
  } else {
    return {};  // Mode::None
  }
  return torch::tensor(w).to(device);
}

}  // namespace tltrain::train
