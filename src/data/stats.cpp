#include "tltrain/data/stats.h"

#include <cmath>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/data/loader.h"

namespace tltrain::data {

config::NormalizationStats dataset_stats(const std::vector<Sample>& samples, const config::DataConfig& cfg, const ImageSpec& spec,
                                         int64_t threads) {
  // Unit normalization: the loader hands back RGB pixels on 0..1.
  config::DataConfig unit = cfg;
  unit.normalization = config::Normalization::Unit;
  LoaderOptions lo;
  lo.batch_size = 32;
  lo.threads = threads;
  Loader loader(samples, resolve_preprocess(unit, spec), config::AugmentConfig{}, Mode::Eval, lo);
  loader.start_epoch(0);
  std::array<double, 3> sum{0, 0, 0}, sum_sq{0, 0, 0};
  double pixels = 0;
  while (auto b = loader.next()) {  // batches come in sample order whatever the thread count
    const auto x = b->images.to(torch::kDouble);
    const auto s = x.sum({0, 2, 3}), q = (x * x).sum({0, 2, 3});
    for (int c = 0; c < 3; ++c) {
      sum[c] += s[c].item<double>();
      sum_sq[c] += q[c].item<double>();
    }
    pixels += static_cast<double>(x.size(0) * x.size(2) * x.size(3));
  }
  TLTRAIN_CHECK(pixels > 0, ErrorKind::Data, "data.normalization \"dataset\": no training image could be decoded");
  config::NormalizationStats st;
  for (int c = 0; c < 3; ++c) {
    st.mean[c] = sum[c] / pixels;
    // A constant channel would divide by zero: Keras adds 1e-6 to the deviation for the same reason.
    st.std[c] = std::sqrt(std::max(0.0, sum_sq[c] / pixels - st.mean[c] * st.mean[c])) + 1e-6;
  }
  return st;
}

config::RunConfig with_dataset_stats(const config::RunConfig& cfg, const std::vector<Sample>& samples, const ImageSpec& spec,
                                     int64_t threads) {
  if (cfg.data.normalization != config::Normalization::Dataset || cfg.data.normalization_stats) return cfg;
  config::RunConfig out = cfg;
  out.data.normalization_stats = dataset_stats(samples, cfg.data, spec, threads);
  const auto& st = *out.data.normalization_stats;
  out.resolved["data"]["normalization_stats"] = {{"mean", st.mean}, {"std", st.std}};
  std::ostringstream msg;
  msg << "data.normalization \"dataset\": mean [" << st.mean[0] << ", " << st.mean[1] << ", " << st.mean[2] << "], std ["
      << st.std[0] << ", " << st.std[1] << ", " << st.std[2] << "] over " << samples.size() << " training images";
  log::info(msg.str());
  return out;
}

}  // namespace tltrain::data
