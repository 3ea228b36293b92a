#pragma once
// The checkpoint format, a box of its own between model and the boxes that use it (train writes
// and resumes; eval, export and finetune read): one self-contained file (the trained backbone as
// TorchScript with its metadata, the head, optimizer state, and a JSON record of classes, config,
// stage/epoch/step and history). Written atomically: a kill at any moment leaves the previous
// checkpoint intact.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/config/run_config.h"
#include "tltrain/model/classifier.h"

namespace tltrain::checkpoint {

struct Checkpoint {
  config::json info;  ///< as stored: format, classes, resolved config, progress, history
  config::RunConfig config;          ///< info["config"], parsed once here
  std::vector<std::string> classes;  ///< info["classes"]: label i is classes[i]
  model::Backbone backbone;                    ///< with the trained weights
  std::map<std::string, torch::Tensor> head;   ///< "head.<name>" tensors
  std::shared_ptr<torch::serialize::InputArchive> optimizer;  ///< null when none was saved
};

/// Saves MODEL (and OPTIMIZER when given) with INFO to PATH atomically.
void save(const std::string& path, model::Classifier& model, torch::optim::Optimizer* optimizer,
                     const config::json& info);

/// Loads a checkpoint onto DEVICE; a Data error naming PATH when it is not a tltrain checkpoint.
Checkpoint load(const std::string& path, const torch::Device& device = torch::kCPU);

/// Builds the classifier a checkpoint holds, with its weights.
model::Classifier classifier_from(const Checkpoint& ckpt, const torch::Device& device);

}  // namespace tltrain::checkpoint
