#pragma once
// Checkpoints: one self-contained file (the trained backbone as TorchScript with its metadata,
// the head, optimizer state, and a JSON record of classes, config, stage/epoch/step and
// history). Written atomically: a kill at any moment leaves the previous checkpoint intact.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "tltrain/config/json_reader.h"
#include "tltrain/model/classifier.h"

namespace tltrain::train {

struct Checkpoint {
  config::json info;  ///< format, classes, resolved config, backbone metadata, progress, history
  model::Backbone backbone;                    ///< with the trained weights
  std::map<std::string, torch::Tensor> head;   ///< "head.<name>" tensors
  std::shared_ptr<torch::serialize::InputArchive> optimizer;  ///< null when none was saved
};

/// Saves MODEL (and OPTIMIZER when given) with INFO to PATH atomically.
void save_checkpoint(const std::string& path, model::Classifier& model, torch::optim::Optimizer* optimizer,
                     const config::json& info);

/// Loads a checkpoint onto DEVICE; a Data error naming PATH when it is not a tltrain checkpoint.
Checkpoint load_checkpoint(const std::string& path, const torch::Device& device = torch::kCPU);

/// Builds the classifier a checkpoint holds, with its weights.
model::Classifier classifier_from(Checkpoint& ckpt, const torch::Device& device);

}  // namespace tltrain::train
