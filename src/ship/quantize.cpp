#include "tltrain/ship/quantize.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/core/npy.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/ship/python_script.h"

namespace tltrain::ship {

torch::Tensor calibration_images(const config::RunConfig& cfg, const data::Preprocess& pre, int64_t n, const std::string& source) {
  TLTRAIN_CHECK(n >= 1, ErrorKind::Usage, "--calibration must be >= 1 (images to calibrate the int8 ranges on), got " + std::to_string(n));
  std::vector<data::Sample> samples;
  try {
    samples = source.empty() ? data::load_datasets(cfg.data, static_cast<uint64_t>(cfg.seed)).train.samples : data::scan_source(source).samples;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Data || !source.empty()) throw;
    TLTRAIN_FAIL(ErrorKind::Data, std::string(e.what()) + " (int8 calibration draws from the run's training data; give another folder of " +
                                      "such images with --calibration-data)");
  }
  std::vector<size_t> order(samples.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::shuffle(order.begin(), order.end(), std::mt19937_64(static_cast<uint64_t>(cfg.seed)));
  order.resize(std::min(order.size(), static_cast<size_t>(n)));
  std::sort(order.begin(), order.end());
  std::vector<data::Sample> chosen;
  for (size_t i : order) chosen.push_back(samples[i]);
  data::Preprocess eval = pre;
  eval.skip_bad_images = true;  // a file that does not decode is one calibration image fewer
  data::LoaderOptions lo;
  lo.batch_size = 32;
  data::Loader loader(chosen, eval, config::AugmentConfig{}, data::Mode::Eval, lo);
  std::vector<torch::Tensor> parts;
  loader.start_epoch(0);
  while (auto b = loader.next()) parts.push_back(b->images);
  TLTRAIN_CHECK(!parts.empty(), ErrorKind::Data, "no calibration image could be decoded from " + (source.empty() ? cfg.data.train : source));
  auto x = torch::cat(parts).contiguous();
  if (x.size(0) < n)
    log::warn("int8 calibration on " + std::to_string(x.size(0)) + " images (--calibration " + std::to_string(n) + " asked for more than the data has)");
  return x;
}

config::json quantize_int8(const std::string& model_pt, const torch::Tensor& calibration, const std::string& out,
                          const std::string& source_name) {
  const std::string npy = out + ".calibration.tmp.npy";
  RemoveOnExit remove{npy};
  const auto x = calibration.to(torch::kFloat).contiguous();
  write_npy(npy, "<f4", x.sizes().vec(), x.data_ptr<float>(), static_cast<size_t>(x.numel()) * sizeof(float));
  return run_script("quantize_int8.py", {"--model", model_pt, "--calibration", npy, "--out", out, "--source-name", source_name},
                    "int8 quantization", "python3-torch python3-torchvision python3-numpy")
      .summary;
}

}  // namespace tltrain::ship
