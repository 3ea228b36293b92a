#include "tltrain/model/inference.h"

namespace tltrain::model {

torch::Tensor in_chunks(const torch::Tensor& x, int64_t micro, const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  const int64_t n = x.size(0);
  if (micro <= 0 || micro >= n) return fn(x);
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < n; start += micro) parts.push_back(fn(x.narrow(0, start, std::min(micro, n - start))));
  return torch::cat(parts, 0);
}

Predictions predict(Classifier& model, data::Loader& loader, int64_t micro, int64_t epoch) {
  torch::NoGradGuard no_grad;
  model.set_training(false, "frozen");
  std::vector<torch::Tensor> logits, labels;
  Predictions p;
  loader.start_epoch(epoch);
  while (auto batch = loader.next()) {
    auto x = batch->images.to(model.device(), /*non_blocking=*/true);
    logits.push_back(in_chunks(x, micro, [&](const torch::Tensor& c) { return model.forward(c); }).to(torch::kCPU));
    labels.push_back(batch->labels);
    p.indices.insert(p.indices.end(), batch->indices.begin(), batch->indices.end());
  }
  p.logits = logits.empty() ? torch::empty({0, model.num_classes()}) : torch::cat(logits, 0);
  p.labels = labels.empty() ? torch::empty({0}, torch::kLong) : torch::cat(labels, 0);
  return p;
}

std::pair<double, double> loss_and_accuracy(const Predictions& p) {
  if (p.labels.numel() == 0) return {0.0, 0.0};
  double loss = torch::nn::functional::cross_entropy(p.logits, p.labels).item<double>();
  double acc = p.logits.argmax(1).eq(p.labels).to(torch::kDouble).mean().item<double>();
  return {loss, acc};
}

}  // namespace tltrain::model
