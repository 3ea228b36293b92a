// Freezing as Keras users count (issue 13): the layer list, trainable {"layers": N},
// {"freeze_first": N}, {"from": sub-module}, `inspect --layers`, and model.features_from.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "test_util.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/error.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/model/backbone.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/freeze_plan.h"
#include "tltrain/model/inspect.h"
#include "tltrain/model/split.h"
#include "tltrain/ship/export.h"
#include "tltrain/ship/predict.h"
#include "tltrain/train/finetune.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/trainer.h"

using namespace tltrain;
using config::json;

namespace {

config::TrainableSpec spec(config::TrainableSpec::Kind kind, int64_t layers = 0, const std::string& from = "") {
  config::TrainableSpec s;
  s.kind = kind;
  s.layers = layers;
  s.from = from;
  return s;
}

std::string usage_error(const model::BackboneMeta& meta, const config::TrainableSpec& s) {
  try {
    model::resolve_cut(meta, s);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

json tiny_run(const test::TempDir& dir, const json& model, const json& stages) {
  return {{"seed", 5}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 2}}},
          {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}}},
          {"model", model}, {"output_dir", dir / "run"}, {"stages", stages}};
}

}  // namespace

TEST(Layers, TheTinyBackboneHasAConvAndABatchNormPerBlockInForwardOrder) {
  const auto meta = model::read_backbone_meta(test::tiny_backbone());
  ASSERT_EQ(meta.layers.size(), 8u);
  EXPECT_EQ(meta.layers[0].name, "block0.conv");
  EXPECT_EQ(meta.layers[1].name, "block0.bn");
  EXPECT_TRUE(meta.layers[1].batchnorm);
  EXPECT_FALSE(meta.layers[0].batchnorm);
  EXPECT_EQ(meta.layers[7].name, "block3.bn");
  EXPECT_EQ(meta.layers[7].block, 3);
  int64_t total = 0;
  for (const auto& l : meta.layers) total += l.params;
  EXPECT_EQ(total, meta.total_params()) << "every parameter has one layer";
  EXPECT_EQ(model::layer_of(meta.layers, "block2.bn.weight"), 5);
  EXPECT_EQ(model::layer_of(meta.layers, "block2.weight"), -1);
}

TEST(Layers, CountsNamesAndFreezeFirstAgreeOnOneCut) {
  const auto meta = model::read_backbone_meta(test::tiny_backbone());
  using K = config::TrainableSpec::Kind;
  const model::Cut want{2, 5};  // block2.bn, block3.conv, block3.bn
  EXPECT_EQ(model::resolve_cut(meta, spec(K::Layers, 3)), want);
  EXPECT_EQ(model::resolve_cut(meta, spec(K::FreezeFirst, 5)), want);
  EXPECT_EQ(model::resolve_cut(meta, spec(K::From, 0, "block2.bn")), want);
  EXPECT_EQ(model::resolve_cut(meta, spec(K::From, 0, "block2")), (model::Cut{2, 4})) << "a block name cuts at its first layer";
  EXPECT_EQ(model::resolve_cut(meta, spec(K::Layers, 0)), (model::Cut{4, 8})) << "no layers: head only";
  EXPECT_EQ(model::resolve_cut(meta, spec(K::Layers, 8)), (model::Cut{0, 0}));
  EXPECT_EQ(model::trainable_params(meta, want), meta.layers[5].params + meta.layers[6].params + meta.layers[7].params);

  EXPECT_NE(usage_error(meta, spec(K::Layers, 9)).find("cannot take 9 the last layers: the backbone has 8"), std::string::npos);
  EXPECT_NE(usage_error(meta, spec(K::FreezeFirst, 20)).find("the backbone has 8"), std::string::npos);
  EXPECT_NE(usage_error(meta, spec(K::From, 0, "block2.bnn")).find("did you mean \"block2.bn\""), std::string::npos);
}

TEST(Layers, AFalseLayerListInTheMetadataIsRefused) {
  test::TempDir dir("layers_meta");
  auto bb = model::load_backbone(test::tiny_backbone());
  json meta = bb.meta.raw;
  meta["layers"] = json::array();
  for (const auto& l : bb.meta.layers)
    if (l.name != "block1.conv") meta["layers"].push_back({{"name", l.name}, {"type", l.type}, {"params", l.params}, {"batchnorm", l.batchnorm}});
  model::save_backbone(bb.module, meta, dir / "missing_layer.pt");
  try {
    model::load_backbone(dir / "missing_layer.pt");
    ADD_FAILURE() << "loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter 'block1.conv.weight' belongs to no layer"), std::string::npos) << e.what();
  }
  // A complete list with output shapes is read as written.
  meta["layers"] = json::array();
  for (const auto& l : bb.meta.layers)
    meta["layers"].push_back({{"name", l.name}, {"type", "T" + l.type}, {"params", l.params}, {"batchnorm", l.batchnorm}, {"output_shape", {8, 16, 16}}});
  model::save_backbone(bb.module, meta, dir / "listed.pt");
  const auto listed = model::read_backbone_meta(dir / "listed.pt");
  EXPECT_EQ(listed.layers[0].type, "T" + bb.meta.layers[0].type);
  EXPECT_EQ(listed.layers[0].output_shape, (std::vector<int64_t>{8, 16, 16}));
}

TEST(Layers, InspectListsEveryLayerWithTheSettingsThatTrainIt) {
  const auto r = model::inspect_backbone(test::tiny_backbone());
  ASSERT_EQ(r["layers"].size(), 8u);
  const auto& l5 = r["layers"][5];
  EXPECT_EQ(l5["name"], "block2.bn");
  EXPECT_EQ(l5["unfreeze_layers"], 3);
  EXPECT_EQ(l5["freeze_first"], 5);
  EXPECT_EQ(l5["unfreeze_blocks"], 2);
  EXPECT_EQ(l5["unfreeze_fraction"], 0.3) << "ceil(0.3 x 4) = 2 blocks: block2 and block3";
  const std::string text = model::format_inspect(r, true);
  EXPECT_NE(text.find("block2.bn"), std::string::npos) << text;
  EXPECT_NE(text.find(">= 3"), std::string::npos) << text;
  const auto cli = test::run_tltrain("inspect --layers " + test::tiny_backbone());
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find("--unfreeze-layers"), std::string::npos) << cli.output;
  EXPECT_NE(cli.output.find("block3.conv"), std::string::npos) << cli.output;
}

TEST(Layers, ALayersStageTrainsExactlyTheLayersInspectLists) {
  test::TempDir dir("layers_stage");
  test::write_color_dataset(dir / "train", {"green", "red"}, 8);
  test::write_color_dataset(dir / "val", {"green", "red"}, 2);
  const json cfg = tiny_run(dir, {{"backbone", test::tiny_backbone()}},
                            {{{"epochs", 1}, {"trainable", {{"layers", 3}}}, {"optimizer", {{"name", "sgd"}, {"lr", 0.1}}}}});
  const auto r = train::fit(config::parse_run_config(cfg, "layers.json"));
  auto before = model::load_backbone(test::tiny_backbone());
  auto after = checkpoint::load(r.last_checkpoint);
  std::set<std::string> listed;
  const json report = model::inspect_backbone(test::tiny_backbone());
  for (const auto& l : report["layers"])
    if (l["unfreeze_layers"].get<size_t>() <= 3) listed.insert(l["name"].get<std::string>());
  ASSERT_EQ(listed.size(), 3u);
  std::map<std::string, torch::Tensor> trained;
  for (const auto& p : after.backbone.module.named_parameters(true)) trained[p.name] = p.value;
  for (const auto& p : before.module.named_parameters(true)) {
    const std::string owner = p.name.substr(0, p.name.rfind('.'));
    const bool changed = !torch::equal(p.value, trained.at(p.name));
    EXPECT_EQ(changed, listed.count(owner) > 0) << p.name;
  }
}

TEST(FeaturesFrom, TheHeadSitsOnTheBlocksOutputAndTheRunTrainsEvaluatesExportsAndPredicts) {
  auto cut = model::truncate_backbone(model::load_backbone(test::tiny_backbone()), "block1", "test");
  EXPECT_EQ(cut.meta.blocks.size(), 2u);
  EXPECT_EQ(cut.meta.feature_channels, 16);
  EXPECT_EQ(cut.meta.feature_size, (std::array<int64_t, 2>{8, 8})) << "two stride-2 blocks on 32x32";
  EXPECT_EQ(cut.meta.raw["features_from"], "block1");
  std::set<std::string> names;
  for (const auto& p : cut.module.named_parameters(true)) names.insert(p.name);
  EXPECT_TRUE(names.count("block1.conv.weight")) << "the cut keeps the backbone's parameter names";
  EXPECT_FALSE(names.count("block2.conv.weight"));
  try {
    model::truncate_backbone(model::load_backbone(test::tiny_backbone()), "block9", "cfg.json");
    ADD_FAILURE() << "cut at a block that does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: model.features_from \"block9\" is no block"), std::string::npos) << e.what();
  }

  test::TempDir dir("features_from");
  test::write_color_dataset(dir / "train", {"green", "red", "blue"}, 8);
  test::write_color_dataset(dir / "val", {"green", "red", "blue"}, 3);
  const json cfg = tiny_run(dir, {{"backbone", test::tiny_backbone()}, {"features_from", "block1"}},
                            {{{"epochs", 4}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.05}}}},
                             {{"epochs", 1}, {"trainable", {{"blocks", 1}}}, {"feature_cache", false}}});
  const auto r = train::fit(config::parse_run_config(cfg, "features_from.json"));
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.9) << r.history.dump(1);
  auto ck = checkpoint::load(r.last_checkpoint);
  EXPECT_EQ(ck.backbone.meta.blocks.size(), 2u);
  EXPECT_EQ(ck.head.at("head.dense.0.weight").size(1), 16) << "the head reads block1's 16 channels";

  eval::EvalOptions eo;
  eo.checkpoint = r.last_checkpoint;
  eo.threads = 1;
  EXPECT_NEAR(eval::evaluate_checkpoint(eo).accuracy, r.history.back()["val_accuracy"].get<double>(), 1e-9);
  ship::ExportOptions xo;
  xo.checkpoint = r.last_checkpoint;
  xo.out = dir / "model.pt";
  const auto summary = ship::export_model(xo);  // its own self-check compares logits
  EXPECT_EQ(summary.metadata["backbone"]["features_from"], "block1");
  const auto cli = test::run_tltrain("predict --topk 1 --model " + xo.out + " " + dir / "val/red/0.png");
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find("red"), std::string::npos) << cli.output;
}

TEST(Layers, FinetuneTakesLayerCountsAsKerasUsersGiveThem) {
  test::TempDir dir("layers_finetune");
  test::write_color_dataset(dir / "train", {"green", "red"}, 6);
  test::write_color_dataset(dir / "val", {"green", "red"}, 2);
  const auto r = train::fit(config::parse_run_config(
      tiny_run(dir, {{"backbone", test::tiny_backbone()}}, {{{"epochs", 1}, {"trainable", "head"}}}), "head.json"));
  train::FinetuneOptions o;
  o.checkpoint = r.best_checkpoint;
  o.unfreeze_layers = 3;
  auto cfg = train::finetune_config(o);
  EXPECT_EQ(cfg.stages[0].trainable.kind, config::TrainableSpec::Kind::Layers);
  EXPECT_EQ(cfg.stages[0].trainable.layers, 3);
  o.unfreeze_layers = -1;
  o.freeze_first = 5;
  cfg = train::finetune_config(o);
  EXPECT_EQ(cfg.stages[0].trainable.describe(), "all but the first 5 layers");
  o.unfreeze_layers = 2;
  EXPECT_THROW(train::finetune_config(o), Error) << "two unfreeze options at once";
  const auto cli = test::run_tltrain("finetune --checkpoint " + r.best_checkpoint + " --unfreeze-layers 3 --epochs 1 --output-dir " +
                                     dir / "ft");
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find("last 3 layers"), std::string::npos) << cli.output;
}
