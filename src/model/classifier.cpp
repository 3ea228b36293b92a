#include "tltrain/model/classifier.h"

#include <algorithm>

#include "tltrain/core/error.h"
#include "tltrain/model/inference.h"
#include "tltrain/model/split.h"

namespace tltrain::model {

int64_t cuda_index(int local_rank, int64_t gpus) { return gpus > 0 ? std::max(local_rank, 0) % gpus : 0; }

torch::Device resolve_device(config::Device d, int local_rank) {
  if (d == config::Device::Cpu) return torch::kCPU;
  bool cuda = torch::cuda::is_available();
  TLTRAIN_CHECK(cuda || d != config::Device::Cuda, ErrorKind::Usage,
                "device is \"cuda\" but CUDA is not available (this LibTorch has no CUDA, or no GPU is visible); use \"auto\" or \"cpu\"");
  if (!cuda) return torch::kCPU;
  const auto index = cuda_index(local_rank, static_cast<int64_t>(torch::cuda::device_count()));
  return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(index));
}

namespace {

using TensorFn = torch::Tensor (*)(const torch::Tensor&);

/// Pooling of a N×C×H×W feature map to N×(C·width): each name with its function and width.
struct Pooling {
  TensorFn pool;
  int64_t width;
};
const std::map<config::Pooling, Pooling>& poolings() {
  static const std::map<config::Pooling, Pooling> table{
      {config::Pooling::Avg, {[](const torch::Tensor& f) { return f.mean({2, 3}); }, 1}},
      {config::Pooling::Max, {[](const torch::Tensor& f) { return f.amax({2, 3}); }, 1}},
      {config::Pooling::Flatten, {[](const torch::Tensor& f) { return f.flatten(1); }, 0}},  // width: C·H·W
      {config::Pooling::AvgMax, {[](const torch::Tensor& f) { return torch::cat({f.mean({2, 3}), f.amax({2, 3})}, 1); }, 2}},
  };
  return table;
}

const std::map<config::Activation, TensorFn>& activations() {
  static const std::map<config::Activation, TensorFn> table{
      {config::Activation::Relu, [](const torch::Tensor& x) { return torch::relu(x); }},
      {config::Activation::Gelu, [](const torch::Tensor& x) { return torch::gelu(x); }},
      {config::Activation::Silu, [](const torch::Tensor& x) { return torch::silu(x); }},
      {config::Activation::Tanh, [](const torch::Tensor& x) { return torch::tanh(x); }},
  };
  return table;
}

}  // namespace

int64_t feature_positions(Backbone& backbone, int64_t height, int64_t width) {
  torch::NoGradGuard no_grad;
  const bool training = backbone.module.is_training();
  backbone.module.eval();
  auto options = torch::TensorOptions();
  for (const auto& p : backbone.module.parameters()) {
    options = options.device(p.device());  // wherever the module lives
    break;
  }
  const auto f = backbone.module.forward({torch::zeros({1, 3, height, width}, options)}).toTensor();
  backbone.module.train(training);
  return f.size(2) * f.size(3);
}

int64_t head_in_features(const config::HeadConfig& head, int64_t channels, int64_t positions) {
  const int64_t width = config::row_of(poolings(), head.pooling).width;
  return width > 0 ? width * channels : channels * positions;
}

HeadImpl::HeadImpl(const config::HeadConfig& c, int64_t feature_channels, int64_t num_classes, int64_t positions)
    : cfg(c), pool_fn_(config::row_of(poolings(), c.pooling).pool), activation_fn_(config::row_of(activations(), c.activation)) {
  int64_t in = head_in_features(c, feature_channels, positions);
  TLTRAIN_CHECK(in <= kMaxHeadInFeatures, ErrorKind::Usage,
                "model.head.pooling \"flatten\" gives " + std::to_string(feature_channels) + " channels x " + std::to_string(positions) +
                    " positions = " + std::to_string(in) + " features per image, more than " + std::to_string(kMaxHeadInFeatures) +
                    ": its Dense layer would be too large to train; use \"avg\" or \"max\", or a smaller data.image_size");
  in_features = in;
  dense = register_module("dense", torch::nn::ModuleList());
  for (int64_t width : c.hidden) {
    dense->push_back(torch::nn::Linear(in, width));
    in = width;
  }
  // The binary head has one logit; forward gives it out as [0, z], whose softmax is
  // [1 - sigmoid(z), sigmoid(z)]: cross-entropy on it is binary cross-entropy, and eval, export
  // and predict see two classes as from any head.
  TLTRAIN_CHECK(c.output != config::HeadOutput::Sigmoid || num_classes == 2, ErrorKind::Usage,
                "model.head.output \"sigmoid\" is the binary head and needs exactly 2 classes, the data has " +
                    std::to_string(num_classes) + ": use \"softmax\"");
  dense->push_back(torch::nn::Linear(in, c.output == config::HeadOutput::Sigmoid ? 1 : num_classes));
}

torch::Tensor HeadImpl::pool(const torch::Tensor& f) const { return pool_fn_(f); }

torch::Tensor HeadImpl::forward(const torch::Tensor& pooled) {
  torch::Tensor x = pooled;
  const size_t n = dense->size();
  for (size_t i = 0; i < n; ++i) {
    if (cfg.dropout > 0) x = torch::dropout(x, cfg.dropout, is_training());
    x = dense[i]->as<torch::nn::Linear>()->forward(x);
    if (i + 1 < n) x = activation_fn_(x);
  }
  if (cfg.output == config::HeadOutput::Sigmoid) x = torch::cat({torch::zeros_like(x), x}, 1);
  return x;
}

Classifier::Classifier(Backbone backbone, const config::HeadConfig& head, int64_t num_classes, torch::Device device,
                       int64_t positions)
    : backbone_(std::move(backbone)),
      head_(head, backbone_.meta.feature_channels, num_classes, positions),
      device_(device),
      num_classes_(num_classes),
      cut_(block_cut(backbone_.meta, backbone_.meta.blocks.size())) {
  backbone_.module.to(device_);
  head_->to(device_);
  set_trainable(cut_);
}

torch::Tensor Classifier::features(const torch::Tensor& images) {
  if (top_) return top_->forward({frozen_features(images)}).toTensor();
  return backbone_.module.forward({images}).toTensor();
}

std::string Classifier::optimize_frozen_blocks(const std::vector<int64_t>& input_shape) {
  fast_bottom_.reset();
  top_.reset();
  set_training(false, config::BatchNormPolicy::Frozen);  // freezing needs every module of the bottom in inference mode
  std::string why;
  auto split = split_backbone(backbone_.module, backbone_.meta, cut_.block, input_shape, &why);
  if (!split) return why;
  torch::jit::Module fast = optimized_for_inference(split->bottom, input_shape, &why);
  if (!why.empty()) return why;
  fast_bottom_ = fast;
  top_ = split->top;
  return "";
}

torch::Tensor Classifier::frozen_features(const torch::Tensor& images) {
  TLTRAIN_ASSERT(fast_bottom_.has_value(), "frozen_features before optimize_frozen_blocks");
  torch::NoGradGuard no_grad;
  return fast_bottom_->forward({images}).toTensor();
}

torch::Tensor Classifier::forward_from_frozen(const torch::Tensor& frozen) {
  TLTRAIN_ASSERT(top_.has_value(), "forward_from_frozen before optimize_frozen_blocks");
  return head_->forward(head_->pool(top_->forward({frozen}).toTensor()));
}

torch::Tensor Classifier::forward(const torch::Tensor& images) { return head_->forward(head_->pool(features(images))); }

void Classifier::set_trainable(const Cut& cut) {
  cut_ = cut;
  fast_bottom_.reset();
  top_.reset();
  for (const auto& p : backbone_.module.named_parameters(true)) {
    int l = layer_of(backbone_.meta.layers, p.name);
    p.value.set_requires_grad(l >= 0 && static_cast<size_t>(l) >= cut.layer);
  }
  for (auto& p : head_->parameters()) p.set_requires_grad(true);
}

void Classifier::set_training(bool training, config::BatchNormPolicy bn_policy) {
  head_->train(training);
  for (const auto& m : backbone_.module.named_modules()) {
    bool on = training;
    if (on && !m.name.empty()) {
      // Frozen layers and blocks run exactly as at inference (dropout off, BN statistics fixed).
      const int l = layer_index(m.name);
      const int b = block_of(backbone_.meta.blocks, m.name + ".");
      if (l >= 0 ? static_cast<size_t>(l) < cut_.layer : b >= 0 && static_cast<size_t>(b) < cut_.block) on = false;
      if (bn_policy == config::BatchNormPolicy::Frozen && is_batchnorm(m.value)) on = false;
    }
    // jit::Module::train() recurses into children, which would override a trainable block
    // inside a frozen container (features.18 in features); set each module's own flag.
    torch::jit::Module mod = m.value;
    mod.setattr("training", on);
  }
}

int Classifier::layer_index(const std::string& module_name) const {
  const auto& layers = backbone_.meta.layers;
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].name == module_name) return static_cast<int>(i);
  return -1;
}

std::vector<torch::Tensor> Classifier::trainable_backbone_parameters() {
  std::vector<torch::Tensor> out;
  for (const auto& p : backbone_.module.named_parameters(true))
    if (p.value.requires_grad()) out.push_back(p.value);
  return out;
}

std::vector<torch::Tensor> Classifier::head_parameters() { return head_->parameters(); }

std::vector<torch::Tensor> Classifier::head_weights() {
  std::vector<torch::Tensor> w;
  for (const auto& p : head_->parameters())
    if (p.dim() >= 2) w.push_back(p);
  return w;
}

std::map<std::string, torch::Tensor> Classifier::state() {
  std::map<std::string, torch::Tensor> s;
  for (const auto& p : backbone_.module.named_parameters(true)) s["backbone." + p.name] = p.value;
  for (const auto& b : backbone_.module.named_buffers(true)) s["backbone." + b.name] = b.value;
  for (const auto& p : head_->named_parameters(true)) s["head." + p.key()] = p.value();
  for (const auto& b : head_->named_buffers(true)) s["head." + b.key()] = b.value();
  return s;
}

void Classifier::load_state(const std::map<std::string, torch::Tensor>& in, const std::string& what) {
  torch::NoGradGuard no_grad;
  fast_bottom_.reset();  // its weights are a copy
  top_.reset();
  auto mine = state();
  for (auto& [name, t] : mine) {
    auto it = in.find(name);
    TLTRAIN_CHECK(it != in.end(), ErrorKind::Data, what + " has no tensor '" + name + "': it was made for another model");
    TLTRAIN_CHECK(it->second.sizes() == t.sizes(), ErrorKind::Data,
                  what + ": tensor '" + name + "' has shape " + c10::str(it->second.sizes()) + ", the model needs " +
                      c10::str(t.sizes()) + " (another number of classes or head?)");
    t.copy_(it->second);
  }
  TLTRAIN_CHECK(in.size() == mine.size(), ErrorKind::Data,
                what + " holds " + std::to_string(in.size()) + " tensors, the model has " + std::to_string(mine.size()));
}

std::map<std::string, torch::Tensor> Classifier::snapshot() {
  std::map<std::string, torch::Tensor> s;
  for (auto& [name, t] : state()) s[name] = t.detach().clone();
  return s;
}

}  // namespace tltrain::model
