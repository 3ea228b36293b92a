#pragma once
// ONNX for other runtimes (docs/model-format.md): LibTorch's C++ API has no ONNX exporter, so a
// tltrain model file (TorchScript) is converted by scripts/export_onnx.py under Debian's Python
// torch, and the result is proven by a C++ runtime, OpenCV's DNN module, which also runs
// `tltrain predict --model model.onnx`. No torch here.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tltrain::ship {

constexpr int kOnnxOpset = 10;  ///< what OpenCV DNN 4.6 and ONNX Runtime both read (scripts/export_onnx.py says why)

/// The interpreter and script that convert: TLTRAIN_PYTHON (default /usr/bin/python3, Debian's,
/// which has torch) and TLTRAIN_SCRIPTS_DIR/export_onnx.py (default: the checkout's scripts/).
std::string onnx_python();
std::string onnx_script();

struct OnnxExport {
  std::string out;
  int opset = kOnnxOpset;
  int64_t bytes = 0;
  std::vector<std::string> ops;  ///< the graph's operator types
};

/// Converts the model file MODEL_PT to ONNX at OUT (atomically); a Usage error naming the missing
/// interpreter, torch or onnx and how to install it, a Data error for a file it cannot convert.
OnnxExport convert_to_onnx(const std::string& model_pt, const std::string& out, int opset = kOnnxOpset);

/// The metadata_props of the ONNX file PATH (key → value), read from its protobuf directly; a Data
/// error naming the file when it is not ONNX.
std::map<std::string, std::string> onnx_metadata(const std::string& path);

/// An ONNX file loaded into OpenCV DNN (CPU): a C++ runtime other than LibTorch.
class OnnxNet {
 public:
  /// Loads PATH; a Data error naming it when OpenCV cannot read it.
  explicit OnnxNet(const std::string& path);
  ~OnnxNet();
  OnnxNet(const OnnxNet&) = delete;
  OnnxNet& operator=(const OnnxNet&) = delete;
  /// Logits N×C (row-major) of a float32 N×3×H×W batch BATCH (row-major); C goes to *CLASSES.
  std::vector<float> forward(const float* batch, int64_t n, int64_t h, int64_t w, int64_t* classes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tltrain::ship
