#pragma once
// What every image goes through after decoding, resolved once from the config and the backbone's
// metadata, and the counter-based random numbers that make augmentation independent of threads.
// No torch, no OpenCV: the CLI, the planner and the transforms all read it.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"

namespace tltrain::data {

/// What a network expects of its input images, as plain data: the model box provides one from a
/// backbone's metadata (BackboneMeta::image_spec), so data never needs to know about models.
/// The defaults are torchvision's ImageNet preprocessing.
struct ImageSpec {
  std::array<int64_t, 2> input_size{224, 224};  ///< [height, width]
  int64_t resize = 256;                         ///< eval: shorter side before center crop
  std::array<double, 3> mean{0.485, 0.456, 0.406};
  std::array<double, 3> std{0.229, 0.224, 0.225};
  std::string color_order = "RGB";              ///< RGB|BGR
  double pixel_range = 1.0;                     ///< a white pixel's value before mean/std (1, or 255 for caffe)
  config::Interpolation interpolation = config::Interpolation::Bilinear;  ///< torchvision's eval resize filter
};

/// Resolved preprocessing: what every image goes through after decoding (and augmenting).
struct Preprocess {
  int64_t height = 224, width = 224;  ///< network input
  int64_t resize = 256;               ///< eval: shorter side, then center crop
  config::Interpolation interpolation = config::Interpolation::Bilinear;  ///< eval resize filter (never Backbone)
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};  ///< in output channel order
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  bool bgr = false;                   ///< output channel order BGR (caffe)
  float pixel_scale = 1.0f / 255.0f;  ///< applied to 0..255 before mean/std
  int64_t max_pixels = 89478485;
  bool skip_bad_images = true;        ///< on_bad_image: skip (false: error)
  std::string normalization = "imagenet";  ///< the preset it came from, for reports
  std::string describe() const;       ///< "224x224, resize 256, imagenet (RGB, mean [...], std [...])"
};

/// data.image_size/resize/normalization resolved against what the network expects.
Preprocess resolve_preprocess(const config::DataConfig& cfg, const ImageSpec& spec);

enum class Mode { Train, Eval };  ///< Train augments; Eval is resize + center crop only

/// Small counter-based generator (splitmix64). Its streams are defined here, not by the standard
/// library, so a seed gives the same augmentation on every platform and for every thread count.
class SampleRng {
 public:
  explicit SampleRng(uint64_t state) : state_(state) {}
  /// The stream of one sample's draws: a function of (seed, epoch, sample index) only.
  static SampleRng for_sample(uint64_t seed, int64_t epoch, int64_t index);
  uint64_t next();
  double uniform();                        ///< [0, 1)
  double uniform(double lo, double hi);    ///< [lo, hi)
  int64_t below(int64_t n);                ///< integer in [0, n), n > 0

 private:
  uint64_t state_;
};

/// The single place that orders an epoch: the permutation (or identity) of [0, n) for EPOCH,
/// this rank's even share of it (padded by wrapping, as DistributedSampler does). Without PAD a
/// rank takes positions rank, rank + world_size, ... < n only: evaluation counts each sample once.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle, int64_t rank, int64_t world_size,
                                 bool pad = true);

/// Positions [FIRST, FIRST + COUNT) of the endless stream of training passes (Keras fit on a
/// generator, steps_per_epoch): pass p is epoch_order(N, SEED, EPOCH0 + p, shuffle, RANK,
/// WORLD_SIZE). INDEX gets each position's sample, EPOCH the pass's epoch id, which seeds the
/// sample's augmentation as any epoch's does.
void stream_window(int64_t n, uint64_t seed, int64_t epoch0, int64_t first, int64_t count, int64_t rank, int64_t world_size,
                   std::vector<int64_t>& index, std::vector<int64_t>& epoch);

/// How many passes of N samples over WORLD_SIZE ranks a stage of EPOCHS epochs of STEPS batches of
/// BATCH touches (EPOCHS when STEPS is 0): the augmentation epoch ids it uses up.
int64_t stream_passes(int64_t n, int64_t epochs, int64_t steps, int64_t batch, int64_t world_size);

/// Mixes words into one well-spread 64-bit value (splitmix64 finalizer chain).
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0);

}  // namespace tltrain::data
