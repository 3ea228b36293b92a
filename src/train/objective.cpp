#include "tltrain/train/objective.h"

#include "tltrain/core/error.h"
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

int64_t CrossEntropy::correct(const torch::Tensor& logits, const torch::Tensor& y) const {
  return logits.argmax(1).eq(y).sum().item<int64_t>();
}

std::pair<double, double> CrossEntropy::validate(const torch::Tensor& logits, const torch::Tensor& y) const {
  return model::loss_and_accuracy({logits, y, {}});
}

std::unique_ptr<Objective> make_objective(const config::StageConfig& st, const std::vector<int64_t>& counts,
                                          const torch::Device& device) {
  return std::make_unique<CrossEntropy>(class_weights(st, counts, device), st.label_smoothing);
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
