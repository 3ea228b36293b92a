#pragma once
// Streaming loader: worker threads decode + transform samples into contiguous float batches
// through a bounded prefetch queue. Every random draw of a sample comes from
// (seed, epoch, sample index), so batches are bit-identical for any number of threads.
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/preprocess.h"

namespace tltrain::data {

struct LoaderOptions {
  int64_t batch_size = 32;
  int64_t threads = 0;          ///< decode/augment workers; 0 = hardware concurrency
  int64_t prefetch_batches = 4; ///< bounds memory: at most this many batches wait in the queue
  bool shuffle = false;         ///< new permutation each epoch from (seed, epoch)
  bool drop_last = false;
  uint64_t seed = 0;
  bool pin_memory = false;      ///< when batches go to CUDA
  int64_t rank = 0, world_size = 1;  ///< shard of each epoch's permutation (DistributedSampler)
  bool pad_shards = true;       ///< equal shards by wrapping (training); false: each sample once (evaluation)
  int64_t multi_hot_classes = 0;  ///< > 0: labels are multi-hot over this many classes (a multi-label set)
  /// Also each sample's view under this Preprocess (another network's size and normalization,
  /// e.g. a distillation teacher's): the same decoded image and the same random draws.
  std::optional<Preprocess> second;
};

struct Batch {
  torch::Tensor images;          ///< float N×3×H×W, normalized
  torch::Tensor labels;          ///< int64 N, or float N×C multi-hot for a multi-label set (targets())
  std::vector<int64_t> indices;  ///< sample indices into the loader's samples
  torch::Tensor second_images;   ///< with LoaderOptions::second: the same views at its size, normalized its way
};

/// The training targets of SAMPLES[INDICES]: their labels as int64 N, or with MULTI_HOT_CLASSES > 0
/// a float N×C holding 1 for each class an image has.
torch::Tensor targets(const std::vector<Sample>& samples, const std::vector<int64_t>& indices, int64_t multi_hot_classes);

// BadImage (a file that failed to decode, with the reason) is declared in dataset.h.

// epoch_order(), the single place that orders an epoch, is declared in preprocess.h (no torch).

class Loader {
 public:
  Loader(std::vector<Sample> samples, Preprocess pre, config::AugmentConfig augment, Mode mode, LoaderOptions opts);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Starts producing EPOCH's batches (stops any epoch in flight).
  void start_epoch(int64_t epoch);
  /// Starts producing STEPS full batches from position FIRST_BATCH × batch_size of the endless
  /// stream of shuffled passes whose pass p is epoch EPOCH0 + p (data::stream_window): the
  /// steps_per_epoch epochs of Keras fit on a generator.
  void start_stream(int64_t epoch0, int64_t first_batch, int64_t steps);
  /// The next batch of the current epoch; nullopt at its end (and before start_epoch or after stop). Throws a Data error for a bad
  /// image under on_bad_image: error, and rethrows a worker's failure.
  std::optional<Batch> next();
  /// Stops the workers (also done by the destructor and by a new start_epoch).
  void stop();

  int64_t batches_per_epoch() const;
  const std::vector<Sample>& samples() const;
  /// Batches filled or being filled that next() has not taken yet; never above prefetch_batches.
  int64_t pending_batches() const;
  /// Bad images met so far (each path once).
  std::vector<BadImage> bad_images() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tltrain::data
