#include "tltrain/model/inference.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <optional>
#include <set>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/side_by_side.h"
#include "tltrain/data/device_batches.h"

namespace tltrain::model {

std::vector<torch::Tensor> chunks_of(const torch::Tensor& x, int64_t micro,
                                     const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  const int64_t n = x.size(0);
  if (micro <= 0) return {fn(x)};
  // A batch smaller than a chunk per worker is shared out too: a worker runs on one thread.
  const int64_t workers = x.device().is_cpu() ? side_by_side_workers() : 1;
  const int64_t rows = std::max<int64_t>(1, std::min(micro, (n + workers - 1) / workers));
  if (rows >= n) return {fn(x)};
  return concurrently((n + rows - 1) / rows, x.device().is_cpu(),
                      [&](int64_t i) { return fn(x.narrow(0, i * rows, std::min(rows, n - i * rows))); });
}

torch::Tensor in_chunks(const torch::Tensor& x, int64_t micro, const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  auto parts = chunks_of(x, micro, fn);
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

torch::jit::Module optimized_for_inference(const torch::jit::Module& module, const std::vector<int64_t>& input_shape,
                                           std::string* why, bool side_by_side) {
  torch::NoGradGuard no_grad;
  // Freezing makes the oneDNN primitives, which keep this thread count when they run.
  OneThreadHere one_thread(side_by_side);
  try {
    // optimize_for_inference freezes a copy: MODULE itself keeps its parameters and types.
    torch::jit::Module copy = module;
    // Freezing inlines submodule calls, which the graph executor's optimized mode provides;
    // training switches it off (trainer.cpp), so it is on only for this call.
    const bool was = torch::jit::getGraphExecutorOptimize();
    torch::jit::setGraphExecutorOptimize(true);
    torch::jit::Module fast;
    try {
      fast = torch::jit::optimize_for_inference(copy);
    } catch (...) {
      torch::jit::setGraphExecutorOptimize(was);
      throw;
    }
    torch::jit::setGraphExecutorOptimize(was);
    auto x = torch::randn(input_shape, torch::TensorOptions().device(module.parameters().begin() != module.parameters().end()
                                                                         ? (*module.parameters().begin()).device()
                                                                         : torch::Device(torch::kCPU)));
    auto want = copy.forward({x}).toTensor();
    double diff = (fast.forward({x}).toTensor() - want).abs().max().item<double>();
    double scale = std::max(1.0, want.abs().max().item<double>());
    if (diff <= 1e-3 * scale) return fast;
    if (why) *why = "the optimized module differs from the original by " + std::to_string(diff);
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (why) *why = what.substr(0, what.find('\n'));
  }
  return module;
}

namespace {
/// The trained blocks and the head over each stored chunk of frozen-block outputs, concatenated on the CPU.
torch::Tensor from_frozen(Classifier& model, const std::vector<torch::Tensor>& frozen) {
  if (frozen.empty()) return torch::empty({0, model.num_classes()});
  const auto parts = concurrently(static_cast<int64_t>(frozen.size()), frozen[0].device().is_cpu(),
                                  [&](int64_t i) { return model.forward_from_frozen(frozen[static_cast<size_t>(i)]); });
  return torch::cat(parts, 0).to(torch::kCPU);
}
}  // namespace

namespace {
bool samples(const torch::jit::Block* block) {
  static const std::set<std::string> ops = {
      "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "bernoulli", "rand", "rand_like", "randn",
      "randn_like", "randint", "randint_like", "randperm", "normal", "uniform", "multinomial", "poisson", "exponential",
      "geometric", "cauchy", "log_normal", "rrelu", "native_dropout"};
  for (const torch::jit::Node* node : block->nodes()) {
    std::string op = node->kind().toUnqualString();
    if (!op.empty() && op.back() == '_') op.pop_back();  // in-place variants: bernoulli_, uniform_
    if (node->kind().is_aten() && ops.count(op)) return true;
    for (const torch::jit::Block* inner : node->blocks())
      if (samples(inner)) return true;
  }
  return false;
}
}  // namespace

bool draws_random_numbers(const torch::jit::Module& module) {
  for (const auto& m : module.modules())
    for (const auto& method : m.get_methods())
      if (samples(method.graph()->block())) return true;
  return false;
}

bool draws_random_numbers(Classifier& model) {
  return model.head()->cfg.dropout > 0 || draws_random_numbers(model.backbone_module());
}

bool FrozenInputs::add(const torch::Tensor& f, int64_t capacity) {
  const int64_t n = f.size(0), cols = n > 0 ? f.numel() / n : 0;
  if (!rows.defined()) {
    rows = storage ? storage(capacity, cols) : torch::zeros({capacity, cols}, torch::TensorOptions(f.device()));
    if (!rows.defined()) return false;
    dtype_ = f.scalar_type();
  }
  TLTRAIN_ASSERT(used + n <= rows.size(0) && cols == rows.size(1) && rows.device() == f.device(),
                 "frozen activations beyond the rows made for them");
  rows.narrow(0, used, n).copy_(f.reshape({n, cols}));
  shapes_.push_back(f.sizes().vec());
  used += n;
  return true;
}

std::vector<torch::Tensor> FrozenInputs::chunks() const {
  std::vector<torch::Tensor> out;
  int64_t row = 0;
  for (const auto& shape : shapes_) {
    out.push_back(rows.narrow(0, row, shape[0]).view(shape).to(dtype_));  // no copy for float
    row += shape[0];
  }
  return out;
}

void FrozenInputs::clear() {
  labels.clear();
  indices.clear();
  shapes_.clear();
  rows = torch::Tensor();
  used = 0;
  complete = false;
}

Predictions predict(Classifier& model, data::Loader& loader, int64_t micro, int64_t epoch, FrozenInputs* keep) {
  torch::NoGradGuard no_grad;
  model.set_training(false, config::BatchNormPolicy::Frozen);
  std::vector<torch::Tensor> logits, labels;
  Predictions p;
  const bool split = model.frozen_blocks_optimized();
  if (split && keep && keep->complete) {
    logits.push_back(from_frozen(model, keep->chunks()));
    p.logits = logits.empty() ? torch::empty({0, model.num_classes()}) : torch::cat(logits, 0);
    p.labels = keep->labels.empty() ? torch::empty({0}, torch::kLong) : torch::cat(keep->labels, 0);
    p.indices = keep->indices;
    return p;
  }
  bool storing = split && keep;
  int64_t capacity = 0;  // images the kept rows are made for, from the first batch
  if (keep) keep->clear();
  std::optional<torch::jit::Module> fast;  // optimized on the first batch's shape
  loader.start_epoch(epoch);
  data::DeviceBatches batches(loader, model.device());
  while (auto batch = batches.next()) {
    const auto& x = batch->images;
    if (split) {
      auto frozen = chunks_of(x, micro, [&](const torch::Tensor& c) { return model.frozen_features(c); });
      // Room for this rank's share of the epoch: its batches, none larger than the first.
      if (storing && capacity == 0) capacity = std::min(static_cast<int64_t>(loader.samples().size()), loader.batches_per_epoch() * x.size(0));
      for (const auto& f : frozen) {
        if (storing && !keep->add(f, capacity)) storing = false;  // storage declined: the blocks run again each call
      }
      logits.push_back(from_frozen(model, frozen));
    } else {
      if (!fast) {
        std::vector<int64_t> shape = x.sizes().vec();
        shape[0] = std::max<int64_t>(1, std::min<int64_t>(micro > 0 ? micro : shape[0], shape[0]));
        fast = optimized_for_inference(model.backbone_module(), shape);
      }
      logits.push_back(in_chunks(x, micro, [&](const torch::Tensor& c) {
                         return model.head()->forward(model.head()->pool(fast->forward({c}).toTensor()));
                       }).to(torch::kCPU));
    }
    labels.push_back(batch->labels.to(torch::kCPU));
    p.indices.insert(p.indices.end(), batch->indices.begin(), batch->indices.end());
  }
  if (storing) {
    keep->labels = labels;
    keep->indices = p.indices;
    keep->complete = true;
  }
  p.logits = logits.empty() ? torch::empty({0, model.num_classes()}) : torch::cat(logits, 0);
  p.labels = labels.empty() ? torch::empty({0}, torch::kLong) : torch::cat(labels, 0);
  return p;
}

const char* const kConstantFeaturesFix =
    "a randomly initialised backbone whose BatchNorm runs in inference mode computes nothing that depends on the image. "
    "Export it with pretrained weights (scripts/export_backbone.py --weights imagenet, or --weights PATH.pth), or train it "
    "from scratch: every stage \"trainable\": \"all\" with \"batch_norm\": \"train\" (configs/quickstart-scratch.json)";

std::string constant_rows(const torch::Tensor& x) {
  if (x.dim() != 2 || x.size(0) < 2) return "";
  torch::NoGradGuard no_grad;
  auto f = x.to(torch::kCPU, torch::kDouble);
  const double spread = (std::get<0>(f.max(0)) - std::get<0>(f.min(0))).max().item<double>();
  const double scale = f.abs().max().item<double>();
  if (spread > 1e-6 * std::max(1.0, scale)) return "";
  std::ostringstream how;
  how.precision(2);
  how << "largest spread " << spread << " across " << x.size(0) << " rows, largest magnitude " << scale;
  return how.str();
}

std::pair<double, double> loss_and_accuracy(const Predictions& p) {
  if (p.labels.numel() == 0) return {0.0, 0.0};
  double loss = torch::nn::functional::cross_entropy(p.logits, p.labels).item<double>();
  double acc = p.logits.argmax(1).eq(p.labels).to(torch::kDouble).mean().item<double>();
  return {loss, acc};
}

torch::Tensor probabilities(config::HeadOutput output, const torch::Tensor& logits) {
  return output == config::HeadOutput::MultiLabel ? torch::sigmoid(logits) : torch::softmax(logits, 1);
}

std::vector<int64_t> decided_classes(config::HeadOutput output, double threshold, const float* probs, size_t classes) {
  std::vector<int64_t> out;
  if (output == config::HeadOutput::MultiLabel) {
    for (size_t c = 0; c < classes; ++c)
      if (probs[c] > threshold) out.push_back(static_cast<int64_t>(c));
  } else if (output == config::HeadOutput::Sigmoid && classes == 2) {
    out.push_back(probs[1] > threshold ? 1 : 0);
  } else {
    out.push_back(static_cast<int64_t>(std::max_element(probs, probs + classes) - probs));
  }
  return out;
}

}  // namespace tltrain::model
