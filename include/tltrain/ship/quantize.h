#pragma once
// `tltrain export --quantize int8`: post-training static quantisation. LibTorch's C++ API has no
// eager-mode quantisation, so scripts/quantize_int8.py (python_script.h) rebuilds the backbone as
// torchvision's quantisable twin of its architecture, calibrates it on images the run trained on,
// and writes a TorchScript model file that predict and serve load like any other. Includes torch:
// only ship's translation units include this header.
#include <torch/torch.h>

#include <string>

#include "tltrain/config/json_reader.h"
#include "tltrain/config/run_config.h"
#include "tltrain/data/preprocess.h"

namespace tltrain::ship {

/// N preprocessed images (N×3×H×W float32, evaluation transform PRE) for calibration: drawn at
/// random (seeded by CFG's seed) from the run's training data, or from the images under SOURCE
/// when given. Fewer when the data has fewer (a warning says so); a Data error when none decode.
torch::Tensor calibration_images(const config::RunConfig& cfg, const data::Preprocess& pre, int64_t n, const std::string& source = "");

/// Quantizes the fp32 model file MODEL_PT to OUT (atomically) with CALIBRATION; messages and the
/// metadata's source_model call the model SOURCE_NAME (MODEL_PT when empty). The script's
/// summary (backend, calibration images, bytes, fp32_bytes, top1_agreement and max_rel_diff
/// against fp32 on the calibration images). Usage error for an architecture without a quantisable
/// form (the message lists those that have one).
config::json quantize_int8(const std::string& model_pt, const torch::Tensor& calibration, const std::string& out,
                          const std::string& source_name = "");

}  // namespace tltrain::ship
