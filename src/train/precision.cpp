#include "tltrain/train/precision.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>
#include <torch/version.h>

#include <cmath>

namespace tltrain::train {

namespace {

// LibTorch 2.4 folded the per-device autocast setters into ones taking the device type and
// deprecated the old ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(torch::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
void set_autocast_enabled(torch::DeviceType t, bool on) { at::autocast::set_autocast_enabled(t, on); }
at::ScalarType autocast_dtype(torch::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void set_autocast_dtype(torch::DeviceType t, at::ScalarType d) { at::autocast::set_autocast_dtype(t, d); }
#else
bool autocast_enabled(torch::DeviceType t) { return t == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(); }
void set_autocast_enabled(torch::DeviceType t, bool on) {
  if (t == torch::kCUDA)
    at::autocast::set_enabled(on);
  else
    at::autocast::set_cpu_enabled(on);
}
at::ScalarType autocast_dtype(torch::DeviceType t) {
  return t == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(torch::DeviceType t, at::ScalarType d) {
  if (t == torch::kCUDA)
    at::autocast::set_autocast_gpu_dtype(d);
  else
    at::autocast::set_autocast_cpu_dtype(d);
}
#endif

#if TORCH_VERSION_MAJOR < 2
// LibTorch 1.13 has no bf16 CPU kernel for hardtanh's backward (ReLU6: MobileNet V2/V3):
// bf16 training stopped with '"hardshrink_backward_cpu" not implemented for BFloat16'. Under CPU
// autocast a bf16 hardtanh runs as clamp, the same values, whose backward has the kernel; the
// gradient differs only at exactly min or max (clamp passes it there, hardtanh does not).
at::Tensor hardtanh_autocast(const at::Tensor& self, const at::Scalar& min, const at::Scalar& max) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  return self.scalar_type() == at::kBFloat16 ? at::clamp(self, min, max) : at::hardtanh(self, min, max);
}
at::Tensor& hardtanh_inplace_autocast(at::Tensor& self, const at::Scalar& min, const at::Scalar& max) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  return self.scalar_type() == at::kBFloat16 ? at::clamp_(self, min, max) : at::hardtanh_(self, min, max);
}
#endif

}  // namespace

#if TORCH_VERSION_MAJOR < 2
TORCH_LIBRARY_IMPL(aten, AutocastCPU, m) {
  m.impl("hardtanh", TORCH_FN(hardtanh_autocast));
  m.impl("hardtanh_", TORCH_FN(hardtanh_inplace_autocast));
}
#endif

Autocast::Autocast(config::Precision precision, const torch::Device& device) {
  if (precision == config::Precision::Fp32) return;
  on_ = true;
  type_ = device.type();
  was_enabled_ = autocast_enabled(type_);
  was_dtype_ = autocast_dtype(type_);
  set_autocast_enabled(type_, true);
  set_autocast_dtype(type_, precision == config::Precision::Bf16 ? at::kBFloat16 : at::kHalf);
  at::autocast::increment_nesting();
}

Autocast::~Autocast() {
  if (!on_) return;
  // The weights' low-precision copies live while any guard does (as torch.autocast's cache).
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(type_, was_enabled_);
  set_autocast_dtype(type_, was_dtype_);
}

Forward autocast_forward(Forward forward, config::Precision precision, const torch::Device& device) {
  if (precision == config::Precision::Fp32) return forward;
  return [forward = std::move(forward), precision, device](const torch::Tensor& x) {
    Autocast on(precision, device);
    return forward(x).to(torch::kFloat);
  };
}

namespace {
bool has_kernel(const char* op, c10::DispatchKey key) {
  auto handle = c10::Dispatcher::singleton().findSchema({op, ""});
  return handle && handle->hasKernelForDispatchKey(key);
}
}  // namespace

LossScaler::LossScaler(const config::LossScaleConfig& config, const torch::Device& device, ScalerState state) : config_(config) {
  const auto key = device.is_cuda() ? c10::DispatchKey::CUDA : c10::DispatchKey::CPU;
  fused_ = has_kernel("aten::_amp_foreach_non_finite_check_and_unscale_", key) && has_kernel("aten::_amp_update_scale_", key);
  const auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({1}, state.scale > 0 ? state.scale : config.init, f);
  tracker_ = torch::full({1}, state.good_steps, f.dtype(torch::kInt));
}

torch::Tensor LossScaler::scale(const torch::Tensor& loss) const { return loss * scale_.to(loss.dtype()).squeeze(); }

bool LossScaler::unscale_and_update(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  auto found_inf = torch::zeros({1}, scale_.options());
  // The reciprocal taken in fp64, as GradScaler does.
  const auto inv_scale = scale_.to(torch::kDouble).reciprocal().to(torch::kFloat);
  if (fused_) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
  } else {
    for (auto& g : grads) {
      found_inf.add_(torch::isfinite(g).logical_not().any().to(found_inf.dtype()));
      g.mul_(inv_scale.to(g.dtype()));
    }
    found_inf.clamp_max_(1.0);
  }
  if (config_.dynamic) {
    if (fused_) {
      at::_amp_update_scale_(scale_, tracker_, found_inf, config_.growth_factor, config_.backoff_factor, config_.growth_interval);
    } else if (found_inf.item<float>() > 0) {
      scale_.mul_(config_.backoff_factor);
      tracker_.zero_();
    } else if (tracker_.item<int>() + 1 >= config_.growth_interval) {
      const auto grown = scale_ * config_.growth_factor;
      if (torch::isfinite(grown).all().item<bool>()) scale_.copy_(grown);  // a scale of inf would skip every step
      tracker_.zero_();
    } else {
      tracker_.add_(1);
    }
  }
  return found_inf.item<float>() == 0;
}

double LossScaler::value() const { return scale_.item<double>(); }

ScalerState LossScaler::state() const { return {value(), tracker_.item<int64_t>()}; }

}  // namespace tltrain::train
