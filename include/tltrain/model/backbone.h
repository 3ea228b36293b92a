#pragma once
// Loading a backbone file: the TorchScript module plus its metadata, checked against each other.
// Includes torch: only translation units that run the network include this header.
#include <torch/script.h>

#include <string>

#include "tltrain/model/backbone_meta.h"

namespace tltrain::model {

struct Backbone {
  torch::jit::Module module;
  BackboneMeta meta;
};

/// Loads PATH onto DEVICE. Each way a file can be wrong (missing, not TorchScript, a plain
/// state dict, no metadata, metadata that does not match the weights) is a Data error
/// naming the file and the fix.
Backbone load_backbone(const std::string& path, const torch::Device& device = torch::kCPU);

/// MODULE with the metadata text META_TEXT, both read from PATH, checked against each other (the
/// second half of load_backbone, for backbones that travel inside checkpoints).
Backbone adopt_backbone(torch::jit::Module module, const std::string& meta_text, const std::string& path);

/// Saves MODULE with META as a backbone file (atomically).
void save_backbone(torch::jit::Module& module, const config::json& meta, const std::string& path);

/// True for TorchScript modules whose type is a BatchNorm (torch.nn.BatchNorm1d/2d/3d or ours).
bool is_batchnorm(const torch::jit::Module& m);

/// Writes the test backbone: 4 conv+BN+ReLU blocks (block0..block3), 32×32 input, ~8k parameters,
/// built in C++ so tests need neither Python nor downloads.
void write_tiny_backbone(const std::string& path, uint64_t seed = 0);

}  // namespace tltrain::model
