#pragma once
// `tltrain predict`: a model file on image files and folders → top-k classes per image, with the
// loader's threaded decoding and exactly the evaluation preprocessing. A file that cannot be
// decoded becomes an error row; the rest are still predicted. No torch here: the CLI includes it.
#include <cstdint>
#include <string>
#include <vector>

#include "tltrain/data/dataset.h"

namespace tltrain::ship {

struct PredictOptions {
  std::string model;                ///< file from `tltrain export`
  std::vector<std::string> inputs;  ///< image files and folders (searched recursively)
  int64_t topk = 5;                 ///< clamped to the number of classes
  int64_t batch_size = 32;
  int64_t threads = 0;              ///< decode workers; 0: one per core
  int64_t micro = 8;                ///< rows per forward on CPU (small chunks are faster per image)
  /// Run a TorchScript file frozen with BatchNorm folded into oneDNN convolutions, as serve does
  /// (model::optimized_for_inference; probabilities differ from the file's by float rounding).
  bool optimize = true;
};

struct ClassScore {
  int64_t index = 0;
  std::string name;
  double probability = 0;
};

struct PredictRow {
  std::string path;
  std::vector<ClassScore> top;  ///< best first; empty when error is set
  /// The head's decision: every class above the threshold for a multi-label head, the class the
  /// threshold picks for the binary sigmoid head, the top class otherwise.
  std::vector<ClassScore> decided;
  std::string error;            ///< why the file could not be used
};

/// Image files of INPUTS in order: a file as given, a folder's image files sorted (data::list_images;
/// what else the folders hold goes to SKIPPED when given). Data error for a path that does not
/// exist or a folder without images.
std::vector<std::string> collect_images(const std::vector<std::string>& inputs, data::SkipReport* skipped = nullptr);

/// One row per collected image, in that order.
std::vector<PredictRow> predict_images(const PredictOptions& opts);

/// FORMAT: table|json|csv. Usage error for any other.
std::string format_predictions(const std::vector<PredictRow>& rows, const std::string& format);

}  // namespace tltrain::ship
