#pragma once
// Mixed precision: the training forward computes in bf16 or fp16 under LibTorch's autocast while
// the weights, the gradients and the optimizer stay fp32 (Keras' mixed_float16 policy, PyTorch's
// torch.autocast + GradScaler); fp16's loss scaling keeps small gradients from flushing to zero.
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "tltrain/config/run_config.h"

namespace tltrain::train {

/// Autocast on DEVICE's type in PRECISION while it lives; nothing for fp32. Restores what was
/// set before, so guards nest.
class Autocast {
 public:
  Autocast(config::Precision precision, const torch::Device& device);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool on_ = false;
  torch::DeviceType type_ = torch::kCPU;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

using Forward = std::function<torch::Tensor(const torch::Tensor&)>;

/// FORWARD under autocast in PRECISION on DEVICE, its output back in fp32: every objective then
/// computes its loss and softmax in fp32, as autocast recommends. FORWARD itself for fp32.
Forward autocast_forward(Forward forward, config::Precision precision, const torch::Device& device);

/// A scaler's state between steps, saved in checkpoints so that a resumed run scales as the
/// uninterrupted one would have.
struct ScalerState {
  double scale = 0;        ///< 0: not started (the config's init)
  int64_t good_steps = 0;  ///< clean steps since the scale last changed
};

/// Dynamic loss scaling with GradScaler's rules: backward runs on loss × scale; before the step
/// the gradients are unscaled and checked; a step with a non-finite gradient is skipped and the
/// scale multiplied by backoff_factor; growth_interval clean steps in a row multiply it by
/// growth_factor. Uses LibTorch's fused _amp_* ops where the device has them (CUDA; CPU only in
/// newer LibTorch), the same arithmetic in plain tensor ops elsewhere.
class LossScaler {
 public:
  LossScaler(const config::LossScaleConfig& config, const torch::Device& device, ScalerState state = {});
  /// LOSS × the scale, for backward.
  torch::Tensor scale(const torch::Tensor& loss) const;
  /// Unscales the gradients of PARAMS in place and updates the scale; false when one was not
  /// finite: the step must be skipped.
  bool unscale_and_update(const std::vector<torch::Tensor>& params);
  double value() const;
  ScalerState state() const;

 private:
  config::LossScaleConfig config_;
  bool fused_ = false;
  torch::Tensor scale_;     ///< [1] float on the device
  torch::Tensor tracker_;   ///< [1] int32 on the device: clean steps in a row
};

}  // namespace tltrain::train
