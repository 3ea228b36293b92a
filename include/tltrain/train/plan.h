#pragma once
// The training plan: per stage, which blocks train, the parameter groups and their learning
// rates. `fit --dry-run` prints it; the trainer builds its optimizers from the same plan.
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/model/backbone.h"
#include "tltrain/model/backbone_meta.h"
#include "tltrain/model/freeze_plan.h"

namespace tltrain::train {

struct ParamGroup {
  std::string name;  ///< "backbone" or "head"
  int64_t params = 0;
  double lr = 0.0;   ///< initial rate, before warm-up and schedule
  double weight_decay = 0.0;
};

struct StagePlan {
  std::string name;
  int64_t epochs = 0;
  std::string trainable;                       ///< the spec, described
  model::Cut cut;                              ///< first trainable block and layer; {N, L}: head only
  std::vector<std::string> trainable_blocks;   ///< every block with a trainable layer
  size_t trainable_layers = 0;
  std::vector<ParamGroup> groups;
  std::string batch_norm;
};

/// CFG's backbone on DEVICE, cut after model.features_from when it names a block.
model::Backbone load_run_backbone(const config::RunConfig& cfg, const torch::Device& device = torch::kCPU);

/// Parameter elements of the head on IN_FEATURES inputs (model::head_in_features) for NUM_CLASSES classes.
int64_t head_params(const config::HeadConfig& head, int64_t in_features, int64_t num_classes);

/// H×W of BACKBONE's feature map at CFG's input size when the head flattens it; 1 otherwise
/// (and then no forward runs).
int64_t flatten_positions(const config::RunConfig& cfg, model::Backbone& backbone);

/// Resolves every stage against the backbone's blocks. Usage error for a stage whose
/// "trainable" names a block that does not exist.
std::vector<StagePlan> plan_stages(const config::RunConfig& cfg, const model::BackboneMeta& meta, int64_t num_classes,
                                   int64_t head_in_features);

config::json plan_to_json(const std::vector<StagePlan>& plan, const model::BackboneMeta& meta, int64_t head_param_count);
std::string format_plan(const std::vector<StagePlan>& plan, const model::BackboneMeta& meta, int64_t head_param_count);

}  // namespace tltrain::train

namespace tltrain::train {

/// What `fit --dry-run` shows: the resolved config, the data summary and the stage plan,
/// computed from the config, the backbone's metadata and a scan of the data folders.
struct DryRun {
  config::json resolved_config;
  config::json data;  ///< classes and image counts per split
  config::json plan;
  std::string text;   ///< the human-readable plan
};
DryRun dry_run(const config::RunConfig& cfg);

}  // namespace tltrain::train
