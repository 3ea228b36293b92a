#pragma once
// Classifier = exported backbone + head (pooling → [dropout → Dense → activation]* → dropout →
// Dense). Freezing and the BatchNorm policy live here, so every stage applies them one way.
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/model/backbone.h"
#include "tltrain/model/freeze_plan.h"

namespace tltrain::model {

struct HeadImpl : torch::nn::Module {
  /// POSITIONS: H×W of the feature map at the run's input size (flatten's width is C·H·W).
  HeadImpl(const config::HeadConfig& cfg, int64_t feature_channels, int64_t num_classes, int64_t positions = 1);
  /// N×C×h×w feature map → N×C' pooled vector (C' = 2C for avgmax).
  torch::Tensor pool(const torch::Tensor& features) const;
  /// Pooled vector → logits.
  torch::Tensor forward(const torch::Tensor& pooled);

  config::HeadConfig cfg;
  int64_t in_features = 0;  ///< the pooled vector's width
  torch::nn::ModuleList dense;

 private:
  torch::Tensor (*pool_fn_)(const torch::Tensor&);        ///< cfg.pooling's, from the pooling table
  torch::Tensor (*activation_fn_)(const torch::Tensor&);  ///< cfg.activation's
};
TORCH_MODULE(Head);

/// "auto" → CUDA when LibTorch has it and a GPU is visible, else CPU; "cpu"; "cuda" (a Usage
/// error when CUDA is not available). The one place that picks the device. On CUDA the GPU is
/// cuda_index(LOCAL_RANK, GPUs): each data-parallel rank of a machine takes its own, as torchrun.
torch::Device resolve_device(config::Device device, int local_rank = 0);

/// GPU LOCAL_RANK mod GPUS: ranks beyond the GPUs share them round-robin (0 with no GPU).
int64_t cuda_index(int local_rank, int64_t gpus);

/// H×W of BACKBONE's feature map for HEIGHT×WIDTH images (one forward of zeros, no gradient).
int64_t feature_positions(Backbone& backbone, int64_t height, int64_t width);
/// The head's input width: C (avg, max), 2C (avgmax) or C·POSITIONS (flatten).
int64_t head_in_features(const config::HeadConfig& head, int64_t channels, int64_t positions);
/// The widest flatten head input accepted: beyond it the first Dense layer alone would hold
/// hundreds of millions of weights.
constexpr int64_t kMaxHeadInFeatures = int64_t{1} << 20;

class Classifier {
 public:
  /// The head is initialised from torch's global generator: seed it first for reproducibility.
  /// POSITIONS: H×W of the backbone's feature map at the run's input size (feature_positions),
  /// which a flatten head needs.
  Classifier(Backbone backbone, const config::HeadConfig& head, int64_t num_classes, torch::Device device, int64_t positions = 1);

  torch::Tensor features(const torch::Tensor& images);  ///< backbone feature map
  torch::Tensor forward(const torch::Tensor& images);   ///< logits

  /// Until the next set_trainable or load_state, the wholly frozen blocks [0, cut.block) run as a
  /// frozen, BatchNorm-folded copy (model::optimized_for_inference: the same numbers, checked) and only
  /// blocks [cut.block, N) as saved — a stage that trains the top blocks then pays inference speed for
  /// the rest. Returns "" when done, else why not (the model then keeps running as saved). Leaves
  /// the model in inference mode: set_training before training.
  std::string optimize_frozen_blocks(const std::vector<int64_t>& input_shape);
  bool frozen_blocks_optimized() const { return fast_bottom_.has_value(); }
  /// The frozen blocks' output, without autograd (after optimize_frozen_blocks).
  torch::Tensor frozen_features(const torch::Tensor& images);
  /// Logits from frozen_features' output.
  torch::Tensor forward_from_frozen(const torch::Tensor& frozen);

  /// Layers [cut.layer, L) and the head train; the layers before are frozen (requires_grad off).
  void set_trainable(const Cut& cut);
  const Cut& cut() const { return cut_; }
  /// Training or inference mode. Frozen layers and blocks always stay in inference mode. With BN policy
  /// "frozen" every backbone BatchNorm stays in inference mode too (its running statistics never
  /// change), as the Keras fine-tuning guide prescribes; with "train" those in trainable blocks train.
  void set_training(bool training, config::BatchNormPolicy batch_norm_policy);

  std::vector<torch::Tensor> trainable_backbone_parameters();
  std::vector<torch::Tensor> head_parameters();
  std::vector<torch::Tensor> head_weights();  ///< the head's matrices, without biases (for an L2 term)

  /// Every parameter and buffer, keyed "backbone.<name>" / "head.<name>" (checkpoints, snapshots).
  std::map<std::string, torch::Tensor> state();
  /// Copies STATE's tensors in; a Data error naming WHAT when names or shapes differ.
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& what);
  /// A deep copy of state() (for restore-best).
  std::map<std::string, torch::Tensor> snapshot();

  const BackboneMeta& meta() const { return backbone_.meta; }
  torch::jit::Module& backbone_module() { return backbone_.module; }
  Head& head() { return head_; }
  const torch::Device& device() const { return device_; }
  int64_t num_classes() const { return num_classes_; }

 private:
  int layer_index(const std::string& module_name) const;  ///< in meta().layers, or -1

  Backbone backbone_;
  Head head_;
  torch::Device device_;
  int64_t num_classes_;
  Cut cut_;
  std::optional<torch::jit::Module> fast_bottom_, top_;  ///< set by optimize_frozen_blocks
};

}  // namespace tltrain::model
