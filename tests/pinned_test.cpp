// Behaviour pinned before the trainer's redesign (issue 12): two recipes' log.jsonl figures must
// stay the same to 1e-6. After an intended change of behaviour, re-pin with
//   TLTRAIN_WRITE_PINNED=1 ctest -R Pinned
// and say in the commit why the numbers moved.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tltrain/config/run_config.h"
#include "tltrain/train/trainer.h"

using namespace tltrain;
using json = config::json;
namespace fs = std::filesystem;

namespace {

const char* const kFields[] = {"stage", "epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "lr_backbone"};

json pinned_view(const json& history) {
  json out = json::array();
  for (const auto& e : history) {
    json row = json::object();
    for (const char* f : kFields)
      if (e.contains(f)) row[f] = e[f];
    out.push_back(row);
  }
  return out;
}

/// Compares HISTORY with tests/pinned/NAME.json (or writes it under TLTRAIN_WRITE_PINNED=1).
void expect_pinned(const json& history, const std::string& name) {
  const std::string path = std::string(TLTRAIN_SOURCE_DIR) + "/tests/pinned/" + name + ".json";
  const json got = pinned_view(history);
  if (std::getenv("TLTRAIN_WRITE_PINNED")) {
    std::ofstream(path) << got.dump(1) << "\n";
    GTEST_SKIP() << "wrote " << path;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path << " is missing: pin it with TLTRAIN_WRITE_PINNED=1";
  const json want = json::parse(in);
  ASSERT_EQ(got.size(), want.size()) << "epochs differ:\n" << got.dump(1);
  for (size_t i = 0; i < want.size(); ++i)
    for (auto it = want[i].begin(); it != want[i].end(); ++it) {
      ASSERT_TRUE(got[i].contains(it.key())) << "epoch row " << i << " lost " << it.key();
      if (it.value().is_number_float())
        EXPECT_NEAR(got[i][it.key()].get<double>(), it.value().get<double>(), 1e-6) << "row " << i << " " << it.key();
      else
        EXPECT_EQ(got[i][it.key()], it.value()) << "row " << i << " " << it.key();
    }
}

}  // namespace

TEST(Pinned, TinyBackboneRecipeKeepsItsFigures) {
  // Branches the loop has: cached augmented views, early stopping with restore, class weights,
  // label smoothing, warm-up + cosine, a partial unfreeze with discriminative rates.
  test::TempDir dir("pinned");
  test::write_color_dataset(dir / "train", {"green", "red", "blue"}, 12);
  test::write_color_dataset(dir / "val", {"green", "red", "blue"}, 4);
  json stages = json::parse(R"([
    {"name": "head", "epochs": 4, "trainable": "head", "optimizer": {"name": "adam", "lr": 0.01},
     "feature_cache": {"views": 2}, "class_weights": "auto", "label_smoothing": 0.1,
     "early_stopping": {"monitor": "val_loss", "patience": 2}},
    {"name": "tune", "epochs": 3, "trainable": {"fraction": 0.5}, "backbone_lr_mult": 0.1,
     "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.9}, "schedule": {"name": "cosine", "warmup_steps": 2}}])");
  json cfg = {{"seed", 7}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8},
                        {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}, {"rotation_range", 10}}}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}, {"dropout", 0.1}}}}},
              {"output_dir", dir / "run"}, {"stages", stages}};
  auto r = train::fit(config::parse_run_config(cfg, "pinned.json"));
  expect_pinned(r.history, "tiny");
}

TEST(ExportedPinned, HymenopteraRecipeKeepsItsFigures) {
  if (test::shared_dir().empty()) GTEST_SKIP() << "../shared is absent: the hymenoptera images and ImageNet weights are needed";
  const std::string bb = std::string(TLTRAIN_EXPORT_DIR) + "/mobilenet_v2_imagenet.pt";
  ASSERT_TRUE(fs::exists(bb)) << "run through ctest: the export_backbones fixture makes it";
  test::TempDir dir("pinned_hym");
  auto cfg = config::load_run_config(std::string(TLTRAIN_SOURCE_DIR) + "/configs/hymenoptera.json",
                                     {"model.backbone=" + bb, "output_dir=" + (dir / "run"),
                                      "data.train=" + test::shared_dir() + "/data/hymenoptera/train",
                                      "data.val=" + test::shared_dir() + "/data/hymenoptera/val"});
  auto r = train::fit(cfg);
  expect_pinned(r.history, "hymenoptera");
}
