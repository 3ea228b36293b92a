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

/// Early stopping's counters within the current stage.
struct StageProgress {
  bool have_best = false;  ///< best holds a value
  double best = 0;         ///< the stage's best value of early_stopping.monitor
  int64_t wait = 0;        ///< epochs in a row without improvement
  bool stopped = false;    ///< early stopping ended the stage
};

/// Where a run stands at a saved checkpoint: what resume continues from.
struct Progress {
  size_t stage = 0;         ///< the stage to continue (== number of stages: all done)
  int64_t epoch = 0;        ///< epochs of that stage already done
  int64_t global_step = 0;  ///< optimizer steps over the whole run
  bool have_best = false;   ///< best_value holds a value
  double best_value = 0;    ///< the run's best value of its monitor (picks best.pt)
  StageProgress stage_state;
  double loss_scale = 0;             ///< fp16 loss scaling's scale (0: not started)
  int64_t loss_scale_good_steps = 0; ///< its clean steps in a row
};
config::json to_json(const Progress& p);
/// PROGRESS read back; a Data error naming WHERE when a key is missing or of the wrong type.
Progress progress_from_json(const config::json& progress, const std::string& where);

struct Checkpoint {
  config::json info;  ///< as stored: format, classes, resolved config, progress, history
  config::RunConfig config;          ///< info["config"], parsed once here
  std::vector<std::string> classes;  ///< info["classes"]: label i is classes[i]
  Progress progress;                 ///< info["progress"] (defaults when the file has none)
  model::Backbone backbone;                    ///< with the trained weights
  std::map<std::string, torch::Tensor> head;   ///< "head.<name>" tensors
  std::shared_ptr<torch::serialize::InputArchive> optimizer;  ///< null when none was saved
};

/// Saves MODEL (and OPTIMIZER when given) with INFO to PATH atomically.
void save(const std::string& path, model::Classifier& model, torch::optim::Optimizer* optimizer,
                     const config::json& info);

/// Loads a checkpoint onto DEVICE; a Data error naming PATH when it is not a tltrain checkpoint.
Checkpoint load(const std::string& path, const torch::Device& device = torch::kCPU);

/// Whether PATH is a TorchScript archive without backbone metadata at its top, as a checkpoint is
/// (its backbone travels inside it); false for a backbone file, an exported model or anything that is no archive.
bool looks_like_checkpoint(const std::string& path);

/// Builds the classifier a checkpoint holds, with its weights.
model::Classifier classifier_from(const Checkpoint& ckpt, const torch::Device& device);

}  // namespace tltrain::checkpoint
