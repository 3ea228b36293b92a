#pragma once
// ONNX for other runtimes (docs/model-format.md): LibTorch's C++ API has no ONNX exporter, so a
// tltrain model file (TorchScript) is converted by scripts/export_onnx.py under Debian's Python
// torch, and the result is proven by a C++ runtime, OpenCV's DNN module (checkpoint/onnx_file.h),
// which also runs `tltrain predict --model model.onnx` and `tltrain serve`. No torch here.
#include <cstdint>
#include <string>
#include <vector>


namespace tltrain::ship {

constexpr int kOnnxOpset = 10;  ///< what OpenCV DNN 4.6 and ONNX Runtime both read (scripts/export_onnx.py says why)

struct OnnxExport {
  std::string out;
  int opset = kOnnxOpset;
  int64_t bytes = 0;
  std::vector<std::string> ops;  ///< the graph's operator types
};

/// Converts the model file MODEL_PT to ONNX at OUT (atomically) with scripts/export_onnx.py
/// (python_script.h); messages call the model SOURCE_NAME (MODEL_PT when empty). A Usage error
/// naming the missing interpreter, torch or onnx and how to install it, a Data error for a file it
/// cannot convert. The file is read back through checkpoint/onnx_file.h.
OnnxExport convert_to_onnx(const std::string& model_pt, const std::string& out, const std::string& source_name = "",
                           int opset = kOnnxOpset);

}  // namespace tltrain::ship
