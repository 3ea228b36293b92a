#pragma once
// A loader's batches already on the training device. On CUDA the next batch's host-to-device copy
// (from the loader's pinned memory) runs on a side stream while the current batch computes, so the
// copy engine works beside the kernels instead of before them; elsewhere it is a pass-through.
// TLTRAIN_COPY_OVERLAP=0 turns the side stream off (scripts/gpu_check.sh measures both).
#include <torch/torch.h>

#include <memory>
#include <optional>

#include "tltrain/data/loader.h"

namespace tltrain::data {

class DeviceBatches {
 public:
  /// Takes batches from LOADER (whose epoch the caller has started) for DEVICE.
  DeviceBatches(Loader& loader, torch::Device device);
  ~DeviceBatches();
  DeviceBatches(const DeviceBatches&) = delete;
  DeviceBatches& operator=(const DeviceBatches&) = delete;

  /// The next batch with images, labels and second_images on the device, ready to use on the
  /// current stream; nullopt at the epoch's end. Loader errors pass through.
  std::optional<Batch> next();
  /// Whether copies overlap compute (a CUDA build training on CUDA).
  bool overlapping() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tltrain::data
