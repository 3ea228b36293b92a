#pragma once
// `tltrain export`: a checkpoint → one standalone TorchScript model file (backbone + head, eval
// mode, logits from forward, probabilities from predict_proba, classes and preprocessing inside).
// No torch here: the CLI includes it.
#include <string>

#include "tltrain/config/json_reader.h"
#include "tltrain/config/names.h"

namespace tltrain::ship {

struct ExportOptions {
  std::string checkpoint;  ///< best.pt / last.pt from `tltrain fit`
  std::string out;         ///< model file to write (atomically)
  double check_tolerance = 1e-4;  ///< max |logits(file) - logits(checkpoint)| / max(1, max |logits|) on a random batch
  /// The weights' type in the file: bf16 and fp16 halve it for GPU serving; the model still takes
  /// and returns float32 (it converts inside). Half-precision files are checked against a
  /// tolerance for their type; fp16 only where CUDA runs it (LibTorch's CPU has no fp16 convolution).
  config::Precision precision = config::Precision::Fp32;
  /// torchscript: the model file; onnx: that file converted to ONNX (ship/onnx.h, fp32 only), then
  /// run by OpenCV DNN on the self-check's batch against the TorchScript logits.
  config::ModelFormat format = config::ModelFormat::TorchScript;
  /// int8: post-training static quantisation (ship/quantize.h) of the fp32 model on CALIBRATION
  /// images from the run's training data (or CALIBRATION_DATA's); a TorchScript file.
  config::Quantize quantize = config::Quantize::None;
  int64_t calibration = 256;
  std::string calibration_data;
};

struct ExportSummary {
  std::string out;
  config::json metadata;   ///< what tltrain_model.json holds
  double check_max_abs_diff = 0;  ///< the self-check's difference, relative to the logits' size
  bool checked = true;            ///< false: fp16 without CUDA, the self-check could not run
  double onnx_max_abs_diff = 0;   ///< onnx: OpenCV DNN's logits against the TorchScript file's, relative
  int onnx_opset = 0;             ///< onnx: the opset written
  config::json quantization = config::json::object();  ///< int8: scripts/quantize_int8.py's summary (backend, agreement with fp32, sizes)
};

/// Writes the model file; a Data error for a bad checkpoint, Runtime when the self-check fails.
ExportSummary export_model(const ExportOptions& opts);

/// What `tltrain export` prints about S: the file, its checks, and how to load it. int8 files whose
/// top-1 agrees with fp32 on fewer than kInt8AgreementWarning of the calibration images get a
/// warning line first.
std::string export_report(const ExportOptions& opts, const ExportSummary& s);

/// Below this top-1 agreement with fp32 on its calibration images an int8 file is likely to lose
/// accuracy: one image in twenty decided differently.
constexpr double kInt8AgreementWarning = 0.95;

}  // namespace tltrain::ship
