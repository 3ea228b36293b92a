#include "tltrain/data/device_batches.h"

#include <cstdlib>
#include <string>

#if defined(TLTRAIN_HAVE_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace tltrain::data {

namespace {
/// B with its tensors copied to DEVICE without blocking the host (pinned sources copy asynchronously).
Batch to_device(const Batch& b, const torch::Device& device) {
  Batch d;
  d.images = b.images.to(device, /*non_blocking=*/true);
  d.labels = b.labels.to(device, /*non_blocking=*/true);
  if (b.second_images.defined()) d.second_images = b.second_images.to(device, /*non_blocking=*/true);
  d.indices = b.indices;
  return d;
}
}  // namespace

struct DeviceBatches::Impl {
  Loader& loader;
  torch::Device device;
#if defined(TLTRAIN_HAVE_CUDA)
  std::optional<c10::cuda::CUDAStream> copy_stream;
  std::optional<Batch> ready;  // copied (or being copied) on copy_stream
  at::cuda::CUDAEvent copied;
  bool primed = false;

  /// Issues the copy of the loader's next batch on the side stream.
  void prefetch() {
    auto b = loader.next();
    if (!b) {
      ready.reset();
      return;
    }
    c10::cuda::CUDAStreamGuard on_copy(*copy_stream);
    ready = to_device(*b, device);
    copied.record(*copy_stream);
  }
#endif
  Impl(Loader& l, torch::Device d) : loader(l), device(d) {}
};

DeviceBatches::DeviceBatches(Loader& loader, torch::Device device) : impl_(std::make_unique<Impl>(loader, device)) {
#if defined(TLTRAIN_HAVE_CUDA)
  // TLTRAIN_COPY_OVERLAP=0 copies on the compute stream instead: for measuring what overlap gains.
  const char* env = std::getenv("TLTRAIN_COPY_OVERLAP");
  const bool overlap = !(env && std::string(env) == "0");
  if (device.is_cuda() && overlap) impl_->copy_stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
#endif
}

DeviceBatches::~DeviceBatches() = default;

bool DeviceBatches::overlapping() const {
#if defined(TLTRAIN_HAVE_CUDA)
  return impl_->copy_stream.has_value();
#else
  return false;
#endif
}

std::optional<Batch> DeviceBatches::next() {
#if defined(TLTRAIN_HAVE_CUDA)
  if (impl_->copy_stream) {
    auto& m = *impl_;
    if (!m.primed) {
      m.prefetch();
      m.primed = true;
    }
    if (!m.ready) return std::nullopt;
    const auto compute = c10::cuda::getCurrentCUDAStream(m.device.index());
    m.copied.block(compute);  // the compute stream waits for the copy, the host does not
    Batch b = std::move(*m.ready);
    // Made on the copy stream, used on the compute one: the allocator must not hand their memory
    // back to the copy stream before the compute stream is done with them.
    for (auto* t : {&b.images, &b.labels, &b.second_images})
      if (t->defined()) t->record_stream(compute.unwrap());
    m.prefetch();  // the next copy runs while the caller computes on B
    return b;
  }
#endif
  auto b = impl_->loader.next();
  if (!b) return std::nullopt;
  return to_device(*b, impl_->device);
}

}  // namespace tltrain::data
