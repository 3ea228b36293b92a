#pragma once
// Reading ONNX model files (docs/model-format.md "ONNX"): their tltrain metadata, straight from the
// protobuf, and the network run by OpenCV's DNN module, a C++ runtime other than LibTorch. Written
// by ship/onnx.h; read by load_model_file (model_file.h), so predict and serve take ONNX too.
// No torch here.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tltrain::checkpoint {

/// The metadata_props of the ONNX file PATH (key → value), read from its protobuf directly; a Data
/// error naming the file when it is not ONNX.
std::map<std::string, std::string> onnx_metadata(const std::string& path);

/// An ONNX file loaded into OpenCV DNN (CPU). forward may be called from several threads: a
/// cv::dnn::Net holds its blobs between setInput and forward, so calls take turns (OpenCV
/// parallelises inside one forward).
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

}  // namespace tltrain::checkpoint
