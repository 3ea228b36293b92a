#include "tltrain/data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "tltrain/core/error.h"

namespace tltrain::data {

namespace {
/// One row per data.normalization preset: the numbers live here, not scattered in code.
struct NormPreset {
  config::Normalization name;
  std::array<float, 3> mean, std;  ///< in output channel order
  bool bgr;
  float pixel_scale;
};
const NormPreset kPresets[] = {
    {config::Normalization::Imagenet, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, false, 1.0f / 255.0f},
    {config::Normalization::Unit, {0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f}, false, 1.0f / 255.0f},
    {config::Normalization::Symmetric, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, false, 1.0f / 255.0f},
    {config::Normalization::Caffe, {103.939f, 116.779f, 123.68f}, {1.0f, 1.0f, 1.0f}, true, 1.0f},
};
}  // namespace

std::string Preprocess::describe() const {
  std::ostringstream s;
  s << height << "x" << width << ", eval resize " << resize << " (" << config::name_of(interpolation) << "), " << normalization << " (" << (bgr ? "BGR" : "RGB")
    << ", x" << (pixel_scale == 1.0f ? "1" : "1/255") << ", mean [" << mean[0] << ", " << mean[1] << ", " << mean[2]
    << "], std [" << std[0] << ", " << std[1] << ", " << std[2] << "])";
  return s.str();
}

Preprocess resolve_preprocess(const config::DataConfig& cfg, const ImageSpec& meta) {
  Preprocess p;
  auto size = cfg.image_size ? *cfg.image_size : meta.input_size;
  p.height = size[0];
  p.width = size[1];
  if (cfg.resize > 0) {
    p.resize = cfg.resize;
  } else {
    // Keep the backbone's resize/crop ratio (256/224 = 1/0.875 for ImageNet models).
    double base = static_cast<double>(std::min(meta.input_size[0], meta.input_size[1]));
    p.resize = static_cast<int64_t>(std::llround(static_cast<double>(meta.resize) * std::min(p.height, p.width) / base));
  }
  p.interpolation = cfg.interpolation == config::Interpolation::Backbone ? meta.interpolation : cfg.interpolation;
  if (cfg.normalization == config::Normalization::Backbone) {
    p.normalization = "backbone";
    for (int c = 0; c < 3; ++c) {
      p.mean[c] = static_cast<float>(meta.mean[c]);
      p.std[c] = static_cast<float>(meta.std[c]);
    }
    p.bgr = meta.color_order == "BGR";
    // pixel_range: the value a white pixel has before mean/std (1 for torchvision, 255 for caffe).
    p.pixel_scale = static_cast<float>(meta.pixel_range / 255.0);
  } else if (cfg.normalization == config::Normalization::Dataset) {
    TLTRAIN_CHECK(cfg.normalization_stats.has_value(), ErrorKind::Usage,
                  "data.normalization \"dataset\" needs data.normalization_stats: fit computes them from the training images "
                  "(data::with_dataset_stats) and records them in the run's config.json; give them yourself as "
                  "{\"mean\": [r, g, b], \"std\": [r, g, b]} on 0..1 pixels");
    p.normalization = "dataset";
    for (int c = 0; c < 3; ++c) {
      p.mean[c] = static_cast<float>(cfg.normalization_stats->mean[c]);
      p.std[c] = static_cast<float>(cfg.normalization_stats->std[c]);
    }
    p.bgr = false;
    p.pixel_scale = 1.0f / 255.0f;
  } else {
    const NormPreset* found = nullptr;
    for (const auto& preset : kPresets)
      if (cfg.normalization == preset.name) found = &preset;
    TLTRAIN_CHECK(found, ErrorKind::Usage, "data.normalization " + config::name_of(cfg.normalization) + " has no preset row");
    p.normalization = config::name_of(found->name);
    p.mean = found->mean;
    p.std = found->std;
    p.bgr = found->bgr;
    p.pixel_scale = found->pixel_scale;
  }
  p.max_pixels = cfg.max_pixels;
  p.skip_bad_images = cfg.on_bad_image != config::OnBadImage::Error;
  return p;
}

namespace {
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
}  // namespace

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t s = a;
  uint64_t h = splitmix(s);
  s = h ^ (b * 0xD6E8FEB86659FD93ULL);
  h = splitmix(s);
  s = h ^ (c * 0xA0761D6478BD642FULL);
  return splitmix(s);
}

SampleRng SampleRng::for_sample(uint64_t seed, int64_t epoch, int64_t index) {
  return SampleRng(mix_seed(seed, static_cast<uint64_t>(epoch) + 1, static_cast<uint64_t>(index) + 1));
}

uint64_t SampleRng::next() { return splitmix(state_); }

double SampleRng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double SampleRng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

int64_t SampleRng::below(int64_t n) {
  // Multiply-shift: unbiased enough for n << 2^64 and the same everywhere.
  return static_cast<int64_t>((static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(n)) >> 64);
}

}  // namespace tltrain::data

namespace tltrain::data {

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle, int64_t rank, int64_t world_size,
                                 bool pad) {
  TLTRAIN_ASSERT(n >= 0 && world_size >= 1 && rank >= 0 && rank < world_size, "epoch_order: bad arguments");
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
  if (shuffle) {
    // Fisher-Yates with our own generator: std::shuffle's algorithm is implementation-defined.
    SampleRng rng(mix_seed(seed, static_cast<uint64_t>(epoch) + 1, 0x5348554646ULL));
    for (int64_t i = n - 1; i > 0; --i) std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(rng.below(i + 1))]);
  }
  if (world_size == 1 || n == 0) return perm;
  const int64_t per_rank = pad ? (n + world_size - 1) / world_size : (n - rank + world_size - 1) / world_size;
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(per_rank));
  for (int64_t k = 0; k < per_rank; ++k) mine.push_back(perm[static_cast<size_t>((rank + k * world_size) % n)]);
  return mine;
}

void stream_window(int64_t n, uint64_t seed, int64_t epoch0, int64_t first, int64_t count, int64_t rank, int64_t world_size,
                   std::vector<int64_t>& index, std::vector<int64_t>& epoch) {
  index.clear();
  epoch.clear();
  const auto pass_len = static_cast<int64_t>(epoch_order(n, seed, epoch0, true, rank, world_size).size());
  if (pass_len == 0 || count <= 0) return;
  index.reserve(static_cast<size_t>(count));
  epoch.reserve(static_cast<size_t>(count));
  std::vector<int64_t> order;
  int64_t pass = -1;
  for (int64_t q = first; q < first + count; ++q) {
    if (q / pass_len != pass) {
      pass = q / pass_len;
      order = epoch_order(n, seed, epoch0 + pass, true, rank, world_size);
    }
    index.push_back(order[static_cast<size_t>(q % pass_len)]);
    epoch.push_back(epoch0 + pass);
  }
}

int64_t stream_passes(int64_t n, int64_t epochs, int64_t steps, int64_t batch, int64_t world_size) {
  if (steps <= 0 || n <= 0) return epochs;
  const int64_t pass_len = (n + world_size - 1) / world_size;
  return std::max<int64_t>(epochs, (epochs * steps * batch + pass_len - 1) / pass_len);
}

}  // namespace tltrain::data
