#pragma once
// What the data commands do (tltrain data check / data preview / bench data), as library calls
// the CLI and the tests share. No torch, no OpenCV in this header.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/preprocess.h"

namespace tltrain::data {

/// A run config read for the data commands, with its preprocessing resolved.
struct DataSetup {
  config::RunConfig cfg;
  Preprocess pre;
  std::string note;  ///< how the preprocessing was resolved (the backbone's metadata, or why defaults)
};

/// What a backbone file expects of its images (model::read_image_spec); throws tltrain::Error.
using ImageSpecReader = std::function<ImageSpec(const std::string& backbone_path)>;

/// Loads CONFIG for a data command. Unlike `fit`, neither model.backbone nor stages are required:
/// without a backbone READ_SPEC can read, the preprocessing falls back to 224×224 ImageNet
/// defaults (noted). READ_SPEC is passed in so that data stays independent of the model box.
DataSetup load_data_setup(const std::string& config_path, const std::vector<std::string>& overrides,
                          const ImageSpecReader& read_spec);

struct CheckOptions {
  bool decode = true;   ///< decode every image to find the ones that cannot be used
  int64_t threads = 0;  ///< decoding threads; 0 = one per core
};

struct SplitReport {
  std::string name;    ///< "train" or "val"
  std::string source;
  std::vector<std::string> classes;
  std::vector<int64_t> counts;  ///< usable images per class (bad images excluded when decoded)
  int64_t images = 0;           ///< usable images
  SkipReport skipped;           ///< files the scan left out, by reason
  std::vector<BadImage> bad;    ///< files that failed to decode
};

struct CheckReport {
  std::vector<SplitReport> splits;
  std::vector<std::string> warnings;  ///< e.g. class imbalance
  bool decoded = false;
  bool usable() const;  ///< every split has at least one usable image
};

/// Scans (and decodes) the configured splits. Throws the scan's Data errors (missing folder,
/// no images, class mismatch).
CheckReport check_data(const DataSetup& setup, const CheckOptions& opts = {});
/// The report as text, skipped files grouped by reason (the first 10 of each named).
std::string format_check(const CheckReport& report);

/// Writes a PNG grid of N augmented training samples of EPOCH (de-normalized back to 8 bits),
/// atomically. Returns the number of tiles written (bad images are left out).
int64_t write_preview(const DataSetup& setup, const std::string& out_png, int64_t n = 16, int64_t epoch = 0);

struct BenchOptions {
  int64_t threads = 0;        ///< 0: config threads.loader, else one per core
  double seconds = 10.0;      ///< measuring time after the warm-up batch
  bool decode_only = false;   ///< read + decode only (the ceiling of the pipeline)
};
struct BenchResult {
  double images_per_s = 0;
  int64_t images = 0, threads = 0, batch_size = 0;
  double seconds = 0;
};
/// Steady-state images/s of the training pipeline (or of decoding alone).
BenchResult bench_data(const DataSetup& setup, const BenchOptions& opts);

}  // namespace tltrain::data
