#include "tltrain/train/plan.h"

#include <iomanip>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/preprocess.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/freeze_plan.h"
#include "tltrain/model/split.h"

namespace tltrain::train {

model::Backbone load_run_backbone(const config::RunConfig& cfg, const torch::Device& device) {
  model::Backbone backbone = model::load_backbone(cfg.model.backbone, device);
  if (cfg.model.features_from.empty()) return backbone;
  return model::truncate_backbone(std::move(backbone), cfg.model.features_from, cfg.source);
}

int64_t head_params(const config::HeadConfig& head, int64_t in_features, int64_t num_classes) {
  int64_t in = in_features;
  int64_t total = 0;
  for (int64_t width : head.hidden) {
    total += in * width + width;
    in = width;
  }
  return total + in * num_classes + num_classes;
}

int64_t flatten_positions(const config::RunConfig& cfg, model::Backbone& backbone) {
  if (cfg.model.head.pooling != config::Pooling::Flatten) return 1;
  config::DataConfig size_only = cfg.data;  // the input size is all that matters here, whatever the normalization
  size_only.normalization = config::Normalization::Unit;
  const data::Preprocess pre = data::resolve_preprocess(size_only, backbone.meta.image_spec());
  return model::feature_positions(backbone, pre.height, pre.width);
}

std::vector<StagePlan> plan_stages(const config::RunConfig& cfg, const model::BackboneMeta& meta, int64_t num_classes,
                                   int64_t head_in_features) {
  std::vector<StagePlan> plan;
  const int64_t head = head_params(cfg.model.head, head_in_features, num_classes);
  for (size_t i = 0; i < cfg.stages.size(); ++i) {
    const auto& st = cfg.stages[i];
    StagePlan p;
    p.name = st.name;
    p.epochs = st.epochs;
    p.trainable = st.trainable.describe();
    try {
      p.cut = model::resolve_cut(meta, st.trainable);
    } catch (const Error& e) {
      TLTRAIN_FAIL(ErrorKind::Usage, cfg.source + ": stages[" + std::to_string(i) + "].trainable: " + e.what());
    }
    for (size_t b = p.cut.block; b < meta.blocks.size(); ++b) p.trainable_blocks.push_back(meta.blocks[b].name);
    p.trainable_layers = meta.layers.size() - p.cut.layer;
    int64_t backbone = model::trainable_params(meta, p.cut);
    if (backbone > 0)
      p.groups.push_back({"backbone", backbone, st.optimizer.lr * st.backbone_lr_mult, st.optimizer.weight_decay});
    p.groups.push_back({"head", head, st.optimizer.lr, st.optimizer.weight_decay});
    p.batch_norm = config::name_of(st.batch_norm);
    plan.push_back(p);
  }
  return plan;
}

config::json plan_to_json(const std::vector<StagePlan>& plan, const model::BackboneMeta& meta, int64_t head_param_count) {
  config::json stages = config::json::array();
  for (const auto& p : plan) {
    config::json groups = config::json::array();
    for (const auto& g : p.groups)
      groups.push_back({{"name", g.name}, {"params", g.params}, {"lr", g.lr}, {"weight_decay", g.weight_decay}});
    stages.push_back({{"name", p.name},
                      {"epochs", p.epochs},
                      {"trainable", p.trainable},
                      {"first_trainable_block", p.cut.block < meta.blocks.size() ? config::json(meta.blocks[p.cut.block].name) : config::json(nullptr)},
                      {"first_trainable_layer", p.cut.layer < meta.layers.size() ? config::json(meta.layers[p.cut.layer].name) : config::json(nullptr)},
                      {"trainable_layers", p.trainable_layers},
                      {"trainable_blocks", p.trainable_blocks},
                      {"param_groups", groups},
                      {"batch_norm", p.batch_norm}});
  }
  return {{"backbone_params", meta.total_params()}, {"head_params", head_param_count}, {"stages", stages}};
}

std::string format_plan(const std::vector<StagePlan>& plan, const model::BackboneMeta& meta, int64_t head_param_count) {
  std::ostringstream ss;
  ss << "Plan: backbone " << meta.arch << " (" << meta.total_params() << " params in " << meta.blocks.size()
     << " blocks), head " << head_param_count << " params\n";
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& p = plan[i];
    ss << "  stage " << i + 1 << " '" << p.name << "': " << p.epochs << " epoch" << (p.epochs == 1 ? "" : "s") << ", trains "
       << p.trainable;
    if (p.trainable_blocks.empty()) {
      ss << " (backbone frozen)";
    } else {
      ss << " (" << p.trainable_blocks.size() << "/" << meta.blocks.size() << " blocks: " << p.trainable_blocks.front();
      if (p.trainable_blocks.size() > 1) ss << " … " << p.trainable_blocks.back();
      ss << ")";
    }
    ss << ", backbone BatchNorm " << p.batch_norm << "\n";
    for (const auto& g : p.groups)
      ss << "      group " << std::left << std::setw(9) << g.name << std::right << std::setw(11) << g.params
         << " params  lr " << g.lr << "  weight_decay " << g.weight_decay << "\n";
  }
  return ss.str();
}

DryRun dry_run(const config::RunConfig& cfg) {
  DryRun d;
  d.resolved_config = cfg.resolved;
  model::Backbone backbone = load_run_backbone(cfg);
  const model::BackboneMeta& meta = backbone.meta;
  data::Datasets ds = data::load_datasets(cfg.data, static_cast<uint64_t>(cfg.seed));
  const int64_t classes = static_cast<int64_t>(ds.train.classes.size());
  const int64_t in = model::head_in_features(cfg.model.head, meta.feature_channels, flatten_positions(cfg, backbone));
  auto plan = plan_stages(cfg, meta, classes, in);
  const int64_t head = head_params(cfg.model.head, in, classes);
  d.data = {{"classes", ds.train.classes},
            {"train_images", ds.train.samples.size()},
            {"val_images", ds.val.samples.size()},
            {"val_source", ds.has_val ? config::json(ds.val.source) : config::json(nullptr)},
            {"skipped_files", ds.train.skipped.count() + ds.val.skipped.count()}};
  d.plan = plan_to_json(plan, meta, head);
  std::ostringstream ss;
  ss << "Data: " << classes << " classes, " << ds.train.samples.size() << " train images, " << ds.val.samples.size()
     << " validation images" << (ds.val_is_split ? " (held out of train)" : "") << "\n";
  ss << format_plan(plan, meta, head);
  d.text = ss.str();
  return d;
}

}  // namespace tltrain::train
