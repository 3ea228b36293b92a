#pragma once
// Reading an exported model file (docs/model-format.md): the TorchScript module plus its
// metadata. Includes torch: only translation units that run the network include this header.
#include <torch/script.h>

#include <string>
#include <vector>

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
  config::json raw;                  ///< tltrain_model.json as stored
};

struct ModelFile {
  torch::jit::Module module;  ///< eval mode; forward(x) -> logits, predict_proba(x) -> probabilities
  ModelInfo info;
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

/// Loads PATH; a Data error naming the file and the fix when it is missing, not TorchScript,
/// a backbone, a checkpoint, or carries no tltrain model metadata.
ModelFile load_model_file(const std::string& path, const torch::Device& device = torch::kCPU);

}  // namespace tltrain::checkpoint
