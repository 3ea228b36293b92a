// Issue 14's cross-validation and feature export with the tiny backbone: folds are stratified,
// disjoint and seeded; K folds of a head-only config run the backbone once per image and view;
// an interrupted cv resumes to the same figures; `tltrain features` writes files numpy and
// scikit-learn read.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/data/dataset.h"
#include "tltrain/eval/report.h"
#include "tltrain/train/cv.h"
#include "tltrain/train/feature_cache.h"
#include "tltrain/train/features.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

std::vector<data::Sample> samples_of(const std::vector<int>& per_class) {
  std::vector<data::Sample> s;
  for (size_t c = 0; c < per_class.size(); ++c)
    for (int i = 0; i < per_class[c]; ++i) s.push_back({"/d/c" + std::to_string(c) + "/" + std::to_string(i) + ".png", static_cast<int64_t>(c), {}});
  return s;
}

json cv_config(const test::TempDir& dir, const json& stages, int per_class_train = 6, int per_class_val = 3) {
  test::write_color_dataset(dir / "train", {"blue", "green", "red"}, per_class_train);
  test::write_color_dataset(dir / "val", {"blue", "green", "red"}, per_class_val);
  return {{"seed", 3}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 1}}},
          {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 4},
                    {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}}}}},
          {"model", {{"backbone", test::tiny_backbone()}}}, {"output_dir", dir / "cv"}, {"stages", stages}};
}

const json kHeadStage = json::parse(R"([{"name": "head", "epochs": 4, "trainable": "head", "optimizer": {"name": "adam", "lr": 0.05},
                                         "feature_cache": {"views": 2}}])");

}  // namespace

TEST(CvFolds, AreStratifiedDisjointAndSeeded) {
  const auto s = samples_of({10, 7, 3});
  const auto f = data::stratified_folds(s, 3, 4, 11, 0);
  ASSERT_EQ(f.size(), s.size());
  std::map<int64_t, int> size;
  std::map<std::pair<int64_t, int64_t>, int> per_class;  // (class, fold)
  for (size_t i = 0; i < s.size(); ++i) {
    ASSERT_GE(f[i], 0);
    ASSERT_LT(f[i], 4);
    size[f[i]]++;
    per_class[{s[i].label, f[i]}]++;
  }
  int lo = 1 << 30, hi = 0;
  for (const auto& [fold, n] : size) lo = std::min(lo, n), hi = std::max(hi, n);
  EXPECT_LE(hi - lo, 1) << "fold sizes differ by at most one";
  for (int64_t c = 0; c < 3; ++c) {
    int clo = 1 << 30, chi = 0;
    for (int64_t k = 0; k < 4; ++k) clo = std::min(clo, per_class[{c, k}]), chi = std::max(chi, per_class[{c, k}]);
    EXPECT_LE(chi - clo, 1) << "class " << c << " is spread evenly";
  }
  // Each fold's sets: disjoint, together every image.
  data::Dataset all;
  all.classes = {"a", "b", "c"};
  all.samples = s;
  for (int64_t k = 0; k < 4; ++k) {
    const auto d = data::fold_datasets(all, f, k);
    std::set<std::string> train, val;
    for (const auto& x : d.train.samples) train.insert(x.path);
    for (const auto& x : d.val.samples) val.insert(x.path);
    for (const auto& p : val) EXPECT_EQ(train.count(p), 0u) << p << " leaks into fold " << k << "'s training set";
    EXPECT_EQ(train.size() + val.size(), s.size());
    EXPECT_EQ(static_cast<int>(val.size()), size[k]);
  }
  EXPECT_EQ(data::stratified_folds(s, 3, 4, 11, 0), f) << "the same seed gives the same folds";
  EXPECT_NE(data::stratified_folds(s, 3, 4, 11, 1), f) << "another repeat gives other folds";
  EXPECT_NE(data::stratified_folds(s, 3, 4, 12, 0), f) << "another seed gives other folds";
  auto shuffled = s;
  std::reverse(shuffled.begin(), shuffled.end());
  const auto g = data::stratified_folds(shuffled, 3, 4, 11, 0);
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(g[s.size() - 1 - i], f[i]) << "a fold depends on the path, not the order";
  EXPECT_THROW(data::stratified_folds(s, 3, 1, 11, 0), Error);
  EXPECT_THROW(data::stratified_folds(s, 3, 21, 11, 0), Error);
}

TEST(CvSpread, IsMeanSampleStdAndStudentsInterval) {
  const auto s = train::spread({0.9, 0.95, 1.0});
  EXPECT_NEAR(s.mean, 0.95, 1e-12);
  EXPECT_NEAR(s.std, 0.05, 1e-12);
  EXPECT_NEAR(s.ci95, 4.303 * 0.05 / std::sqrt(3.0), 1e-9);  // t(0.975, 2 dof) = 4.303
  EXPECT_EQ(train::spread({0.7}).ci95, 0.0);
}

TEST(Cv, HeadOnlyFoldsShareOneCacheAndEveryImageIsPredictedOnce) {
  test::TempDir dir("cv_head");
  const auto cfg = config::parse_run_config(cv_config(dir, kHeadStage), "cv.json");
  const int64_t images = 3 * (6 + 3);
  const int64_t before = train::cached_image_views();
  train::CvOptions o;
  o.folds = 3;
  const auto r = train::cross_validate(cfg, o);
  // One pass over all 27 images for each of the 2 augmented views and the un-augmented one
  // (validation), whatever the number of folds; per-fold caches would cost 3 x (18 x 2 + 9).
  EXPECT_EQ(train::cached_image_views() - before, images * 3);
  ASSERT_EQ(r.summary["folds"].size(), 3u);
  const json& acc = r.summary["metrics"]["val_accuracy"];
  ASSERT_EQ(acc["values"].size(), 3u);
  EXPECT_GT(acc["mean"].get<double>(), 0.8) << r.summary.dump(1);  // solid colours: easy
  EXPECT_GE(acc["ci95"].get<double>(), 0.0);
  for (const auto& f : r.summary["folds"]) {
    EXPECT_EQ(f["train_images"].get<int>() + f["val_images"].get<int>(), images);
    EXPECT_TRUE(fs::exists(f["dir"].get<std::string>() + "/split.json")) << "each fold's split is saved";
  }
  // Out of fold: every image once, with its probabilities summing to 1.
  std::ifstream csv(dir / "cv/oof_predictions.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "repeat,fold,path,true,predicted,p_blue,p_green,p_red");
  std::set<std::string> paths;
  while (std::getline(csv, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 8u) << line;
    EXPECT_TRUE(paths.insert(f[2]).second) << f[2] << " predicted twice";
    EXPECT_NEAR(std::stod(f[5]) + std::stod(f[6]) + std::stod(f[7]), 1.0, 1e-5);
  }
  EXPECT_EQ(static_cast<int64_t>(paths.size()), images);
  EXPECT_EQ(r.summary["out_of_fold"][0]["images"], images);
  const std::string page = eval::write_cv_report(r.dir);
  std::ifstream in(page);
  const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("id=\"cv-metrics\""), std::string::npos);
  EXPECT_NE(html.find("id=\"plot-confusion\""), std::string::npos);
  // A second cv into the same folder is refused; --resume of a finished one changes nothing.
  EXPECT_THROW(train::cross_validate(cfg, o), Error);
  o.resume = true;
  const int64_t after = train::cached_image_views();
  EXPECT_EQ(train::cross_validate(cfg, o).summary["metrics"], r.summary["metrics"]);
  EXPECT_EQ(train::cached_image_views(), after) << "finished folds are not trained again";
}

TEST(Cv, AnInterruptedTwoStageCvResumesToTheSameFigures) {
  const json stages = json::parse(R"([{"name": "head", "epochs": 2, "trainable": "head", "optimizer": {"name": "adam", "lr": 0.05}},
      {"name": "tune", "epochs": 2, "trainable": {"fraction": 0.5}, "feature_cache": false, "optimizer": {"name": "sgd", "lr": 0.01}}])");
  test::TempDir straight_dir("cv_straight"), killed_dir("cv_killed");
  train::CvOptions o;
  o.folds = 2;
  const auto straight = train::cross_validate(config::parse_run_config(cv_config(straight_dir, stages, 4, 2), "s.json"), o);

  test::write_text(killed_dir / "cfg.json", cv_config(killed_dir, stages, 4, 2).dump());
  // Fold 1 has 9 training images in batches of 4: 3 steps an epoch; step 8 is inside its fine-tune stage.
  const auto killed = test::run_command("TLTRAIN_DEBUG_KILL_AFTER_STEPS=8 " + std::string(TLTRAIN_BIN) + " cv --config " +
                                        (killed_dir / "cfg.json") + " --folds 2 2>&1");
  EXPECT_NE(killed.exit_code, 0) << killed.output;
  EXPECT_FALSE(fs::exists(killed_dir / "cv/fold1/fold.json")) << "killed inside fold 1";
  EXPECT_TRUE(fs::exists(killed_dir / "cv/fold1/checkpoints/last.pt"));
  const auto resumed = test::run_tltrain("cv --resume " + (killed_dir / "cv"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("val_accuracy: "), std::string::npos) << resumed.output;
  const json summary = json::parse(std::ifstream(killed_dir / "cv/cv.json"));
  for (const char* key : {"val_loss", "val_accuracy"})
    EXPECT_EQ(summary["metrics"][key]["values"], straight.summary["metrics"][key]["values"]) << key;
}

TEST(Features, WritesNpyThatNumpyAndScikitLearnRead) {
  test::TempDir dir("features");
  test::write_color_dataset(dir / "train", {"blue", "red"}, 6);
  test::write_color_dataset(dir / "val", {"blue", "red"}, 3);
  const json cfg = {{"seed", 1}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 1}}},
                    {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 4}}},
                    {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"pooling", "avgmax"}}}}},
                    {"stages", json::array({{{"epochs", 1}}})}};
  test::write_text(dir / "cfg.json", cfg.dump());
  const auto res = test::run_tltrain("features --config " + (dir / "cfg.json") + " --out " + (dir / "f"));
  ASSERT_EQ(res.exit_code, 0) << res.output;
  test::write_text(dir / "check.py", R"(import sys, csv, numpy as np
from sklearn.linear_model import LogisticRegression
d = sys.argv[1]
X, y = np.load(d + "/train_features.npy"), np.load(d + "/train_labels.npy")
Xv, yv = np.load(d + "/val_features.npy"), np.load(d + "/val_labels.npy")
rows = list(csv.DictReader(open(d + "/train.csv")))
classes = open(d + "/classes.txt").read().split()
assert X.dtype == np.float32 and y.dtype == np.int64, (X.dtype, y.dtype)
assert X.shape[0] == y.shape[0] == len(rows) == 12 and Xv.shape[0] == 6, (X.shape, Xv.shape)
assert all(int(r["label"]) == int(l) and classes[int(l)] == r["class"] and r["class"] in r["path"] for r, l in zip(rows, y))
acc = LogisticRegression(max_iter=1000).fit(X, y).score(Xv, yv)
print(X.shape[1], acc)
)");
  const auto py = test::run_command("/usr/bin/python3 " + (dir / "check.py") + " " + (dir / "f") + " 2>&1");
  ASSERT_EQ(py.exit_code, 0) << py.output;
  std::stringstream out(py.output);
  int dim = 0;
  double acc = 0;
  out >> dim >> acc;
  const json meta = json::parse(std::ifstream(dir / "f/features.json"));
  EXPECT_EQ(dim, meta["train"]["dim"].get<int>());
  EXPECT_EQ(meta["pooling"], "avgmax");
  EXPECT_GE(acc, 0.99) << "scikit-learn separates the two colours from the features: " << py.output;
}
