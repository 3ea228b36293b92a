#pragma once
// Reading an exported model file (docs/model-format.md): the TorchScript module plus its
// metadata. Includes torch: only translation units that run the network include this header.
#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "tltrain/checkpoint/onnx_file.h"
#include "tltrain/config/json_reader.h"
#include "tltrain/data/preprocess.h"

namespace tltrain::checkpoint {

constexpr const char* kModelFileName = "tltrain_model.json";  ///< the extra file with the metadata
constexpr const char* kModelFormat = "tltrain-model";

struct ModelInfo {
  std::vector<std::string> classes;  ///< output j is classes[j]
  data::Preprocess preprocess;       ///< exactly what `tltrain eval` applied
  std::string arch;                  ///< backbone architecture
  std::string output = "softmax";    ///< the head: softmax, sigmoid (binary) or multilabel
  double threshold = 0.5;            ///< sigmoid, multilabel: a class is decided above this probability
  /// Smallest batch the module is run on (ModelFile::logits pads a smaller one): 2 for int8 on
  /// the onednn engine, whose torch 1.13 kernels fail when the batch changes between 1 and more
  /// on several threads ("could not create a primitive descriptor for a reorder primitive").
  int64_t min_batch = 1;
  config::json raw;                  ///< tltrain_model.json as stored
};

struct ModelFile {
  torch::jit::Module module;     ///< TorchScript files, eval mode; forward(x) -> logits, predict_proba(x) -> probabilities
  std::shared_ptr<OnnxNet> onnx;  ///< ONNX files (`tltrain export --format onnx`), run by OpenCV DNN on the CPU
  ModelInfo info;

  bool is_onnx() const { return onnx != nullptr; }
  /// Logits N×C (float32) of the preprocessed batch X (N×3×H×W float32), on X's device for
  /// TorchScript, on the CPU for ONNX.
  torch::Tensor logits(const torch::Tensor& x);
};

/// Preprocess ↔ the "preprocess" object of tltrain_model.json.
config::json preprocess_to_json(const data::Preprocess& p);
data::Preprocess preprocess_from_json(const config::json& j, const std::string& file);

/// The head's probabilities for LOGITS (N×C): a sigmoid per class for a multi-label head, the softmax otherwise.
torch::Tensor probabilities(const ModelInfo& info, const torch::Tensor& logits);

/// The classes the head decides for one image's PROBS (C of them): every class above the threshold
/// (multi-label), class 1 when its probability is above the threshold (the binary sigmoid head),
/// else the most probable class.
std::vector<int64_t> decided_classes(const ModelInfo& info, const float* probs, size_t classes);

/// True when PATH begins as a zip archive does, as TorchScript files (and checkpoints) do; an
/// ONNX file does not.
bool is_zip_archive(const std::string& path);

/// Loads PATH: a TorchScript model file, or an ONNX one (told apart by content: TorchScript is a
/// zip archive), with its tltrain metadata. An int8 file selects the quantized engine it was
/// calibrated for. A Data error naming the file and the fix when it is missing, not a model
/// file, a backbone, a checkpoint, carries no tltrain model metadata, or needs a quantized engine
/// this LibTorch lacks. ONNX and int8 files run on the CPU only: a Usage error for another DEVICE.
ModelFile load_model_file(const std::string& path, const torch::Device& device = torch::kCPU);

}  // namespace tltrain::checkpoint
