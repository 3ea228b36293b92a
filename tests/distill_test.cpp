// Knowledge distillation: the loss against a hand computation, the loader's second view (the
// same draws), the teacher run once per image and view where the stage allows, checkpoint and
// exported teachers giving the same logits, a distilled student that trains, the CLI shortcut
// and the refusals.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/ship/export.h"
#include "tltrain/train/distill.h"
#include "tltrain/train/objective.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

/// A·T²·KL(p_t ‖ p_s) + (1−A)·w_y·(−log softmax(s)_y) for one row, in doubles from the definitions.
double hand_loss(const std::vector<double>& s, const std::vector<double>& t, int y, double T, double A, double w) {
  auto softmax = [](const std::vector<double>& z, double temp) {
    double m = *std::max_element(z.begin(), z.end()), sum = 0;
    std::vector<double> p;
    for (double v : z) p.push_back(std::exp((v - m) / temp));
    for (double v : p) sum += v;
    for (double& v : p) v /= sum;
    return p;
  };
  const auto ps = softmax(s, T), pt = softmax(t, T), p1 = softmax(s, 1.0);
  double kl = 0;
  for (size_t j = 0; j < s.size(); ++j) kl += pt[j] * std::log(pt[j] / ps[j]);
  return w * (A * T * T * kl + (1 - A) * -std::log(p1[static_cast<size_t>(y)]));
}

struct Project {
  test::TempDir dir{"distill"};
  Project() {
    test::write_color_dataset(dir / "train", {"green", "red"}, 16);
    test::write_color_dataset(dir / "val", {"green", "red"}, 6);
  }
  json config(const std::string& out, const json& stages) const {
    return {{"seed", 5},
            {"device", "cpu"},
            {"threads", {{"intra_op", 1}, {"loader", 2}}},
            {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}, {"image_size", 16},
                      {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}}}}},
            {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}},
            {"output_dir", dir / out},
            {"stages", stages}};
  }
  /// A teacher trained on the squares at 24×24 (the students see 16×16): its best.pt.
  const std::string& teacher() {
    if (teacher_.empty()) {
      json c = config("teacher", json::array({{{"epochs", 3}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.02}}}}}));
      c["data"]["image_size"] = 24;
      teacher_ = train::fit(config::parse_run_config(c, "teacher.json")).best_checkpoint;
    }
    return teacher_;
  }
  std::string write(const json& cfg, const std::string& name) const {
    test::write_text(dir / name, cfg.dump(2));
    return dir / name;
  }

 private:
  std::string teacher_;
};

json head_stage(int epochs, int views) {
  return {{"name", "head"}, {"epochs", epochs}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.01}}},
          {"feature_cache", {{"views", views}}}};
}
json tune_stage(int epochs) {
  return {{"name", "tune"}, {"epochs", epochs}, {"trainable", "all"}, {"optimizer", {{"name", "sgd"}, {"lr", 0.01}, {"momentum", 0.9}}}};
}

}  // namespace

TEST(DistillLoss, MatchesAHandComputationWithAndWithoutClassWeights) {
  const std::vector<std::vector<double>> s{{1.0, -0.5, 2.0}, {0.3, 0.2, -1.0}}, t{{3.0, 0.0, 1.0}, {-2.0, 1.5, 0.5}};
  const std::vector<int> y{2, 0};
  const double T = 2.5, A = 0.7;
  auto to_tensor = [](const std::vector<std::vector<double>>& v) {
    return torch::tensor({v[0][0], v[0][1], v[0][2], v[1][0], v[1][1], v[1][2]}, torch::kDouble).view({2, 3});
  };
  const auto logits = to_tensor(s), targets = train::with_teacher(torch::tensor({2, 0}, torch::kLong), to_tensor(t));
  for (const bool weighted : {false, true}) {
    const std::vector<double> w = weighted ? std::vector<double>{0.5, 1.0, 3.0} : std::vector<double>{1, 1, 1};
    auto cw = weighted ? torch::tensor(w, torch::kDouble) : torch::Tensor();
    train::Distill kd(std::make_unique<train::CrossEntropy>(cw, 0.0), cw, T, A);
    const auto ls = kd.loss_sum(logits, targets);
    double expect = 0, weight = 0;
    for (size_t i = 0; i < 2; ++i) {
      expect += hand_loss(s[i], t[i], y[i], T, A, w[static_cast<size_t>(y[i])]);
      weight += w[static_cast<size_t>(y[i])];
    }
    EXPECT_NEAR(ls.sum.item<double>(), expect, 1e-9) << "weighted " << weighted;
    EXPECT_NEAR(ls.weight.item<double>(), weight, 1e-12);
    EXPECT_NEAR(kd.weight(targets).item<double>(), weight, 1e-12);
  }
  // Validation and accuracy read the labels alone: a student equal to its labels' argmax is right.
  train::Distill kd(std::make_unique<train::CrossEntropy>(torch::Tensor(), 0.0), torch::Tensor(), T, A);
  EXPECT_EQ(kd.correct(logits, targets), 2);
  EXPECT_EQ(kd.validate(logits, torch::tensor({2, 0}, torch::kLong)).second, 1.0);
  // A student that already equals its teacher gets no gradient from the teacher term.
  auto same = to_tensor(t).requires_grad_(true);
  train::Distill only_teacher(std::make_unique<train::CrossEntropy>(torch::Tensor(), 0.0), torch::Tensor(), T, 1.0);
  only_teacher.loss_sum(same, targets).sum.backward();
  EXPECT_LT(same.grad().abs().max().item<double>(), 1e-12);
}

TEST(DistillLoader, TheSecondViewHasTheSameDrawsAndItsOwnSize) {
  test::TempDir dir("second_view");
  test::write_color_dataset(dir / "d", {"a", "b"}, 6, 32);
  auto ds = data::scan_source(dir / "d");
  data::Preprocess small;
  small.height = small.width = 16;
  small.resize = 18;
  data::Preprocess big = small;
  big.height = big.width = 24;
  big.resize = 27;
  config::AugmentConfig aug;
  aug.random_resized_crop.enabled = true;
  aug.brightness = 0.4;
  data::LoaderOptions lo;
  lo.batch_size = 4;
  lo.threads = 2;
  lo.shuffle = true;
  lo.seed = 9;
  lo.second = small;  // the same Preprocess twice: the two views must be the same pixels
  data::Loader same(ds.samples, small, aug, data::Mode::Train, lo);
  same.start_epoch(1);
  int batches = 0;
  while (auto b = same.next()) {
    ASSERT_TRUE(b->second_images.defined());
    EXPECT_TRUE(torch::equal(b->images, b->second_images)) << "batch " << batches;
    ++batches;
  }
  EXPECT_EQ(batches, 3);
  lo.second = big;
  data::Loader two(ds.samples, small, aug, data::Mode::Train, lo);
  two.start_epoch(1);
  auto b = two.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->second_images.sizes(), (std::vector<int64_t>{4, 3, 24, 24}));
  // The big view shrunk to the small size is the small view, up to resampling.
  auto shrunk = torch::nn::functional::interpolate(
      b->second_images, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{16, 16}).mode(torch::kArea));
  EXPECT_LT((shrunk - b->images).abs().mean().item<double>(), 0.15);
}

TEST(Distill, TheTeacherRunsOncePerImageAndViewWhereTheStageAllows) {
  Project p;
  const std::string teacher = p.teacher();
  json cached = p.config("cached", json::array({head_stage(4, 2)}));
  cached["distill"] = {{"teacher", teacher}, {"temperature", 4}, {"alpha", 0.5}};
  int64_t before = train::teacher_images_run();
  auto r = train::fit(config::parse_run_config(cached, "s.json"));
  EXPECT_EQ(train::teacher_images_run() - before, 32 * 2) << "4 cache epochs over 2 views: the teacher runs once per image and view";
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.95) << r.history.dump();

  // An un-augmented fine-tune sees the same images every epoch: one teacher pass.
  json fixed = p.config("fixed", json::array({tune_stage(3)}));
  fixed["data"]["augment"] = {{"random_resized_crop", false}, {"horizontal_flip", false}};
  fixed["distill"] = {{"teacher", teacher}};
  before = train::teacher_images_run();
  train::fit(config::parse_run_config(fixed, "s.json"));
  EXPECT_EQ(train::teacher_images_run() - before, 32);

  // Augmented epochs draw new views: the teacher runs on each.
  json augmented = p.config("augmented", json::array({tune_stage(3)}));
  augmented["distill"] = {{"teacher", teacher}};
  before = train::teacher_images_run();
  train::fit(config::parse_run_config(augmented, "s.json"));
  EXPECT_EQ(train::teacher_images_run() - before, 32 * 3);
}

TEST(Distill, DistilledStudentTrainsAndDiffersFromThePlainOne) {
  Project p;
  const json stages = json::array({head_stage(2, 2), tune_stage(2)});
  json kd = p.config("kd", stages);
  kd["distill"] = {{"teacher", p.teacher()}, {"temperature", 4}, {"alpha", 0.5}};
  auto distilled = train::fit(config::parse_run_config(kd, "s.json"));
  auto plain = train::fit(config::parse_run_config(p.config("plain", stages), "s.json"));
  ASSERT_EQ(distilled.history.size(), 4u);
  EXPECT_GE(distilled.history.back()["val_accuracy"].get<double>(), 0.95) << distilled.history.dump();
  EXPECT_NE(distilled.history.back()["loss"], plain.history.back()["loss"]) << "the teacher changed nothing";
  // A stage may opt out: with distill null it trains as the plain run.
  json off = kd;
  off["output_dir"] = p.dir / "off";
  off["stages"][0]["distill"] = nullptr;
  off["stages"][1]["distill"] = nullptr;
  auto opted_out = train::fit(config::parse_run_config(off, "s.json"));
  EXPECT_EQ(opted_out.history.back()["loss"], plain.history.back()["loss"]);
}

TEST(Distill, AnExportedTeacherGivesItsCheckpointsLogits) {
  Project p;
  const std::string ckpt = p.teacher();
  const std::string exported = p.dir / "teacher_model.pt";
  ship::export_model({ckpt, exported});
  const std::vector<std::string> classes{"green", "red"};
  train::Teacher a(ckpt, torch::kCPU, classes, 0), b(exported, torch::kCPU, classes, 0);
  EXPECT_EQ(a.preprocess().height, 24);
  EXPECT_EQ(b.preprocess().height, 24);
  torch::manual_seed(3);
  const auto x = torch::randn({5, 3, 24, 24});
  EXPECT_LT((a.logits(x) - b.logits(x)).abs().max().item<double>(), 1e-4);
  try {
    train::Teacher wrong(ckpt, torch::kCPU, {"blue", "green", "red"}, 0);
    FAIL() << "a teacher of other classes was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("[green, red]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[blue, green, red]"), std::string::npos) << e.what();
  }
  // A file that is not TorchScript (an ONNX export, say) is refused as bad data on every device:
  // the check reads its first bytes before any runtime sees it.
  test::write_text(p.dir / "teacher.onnx", "not a zip archive");
  for (const auto device : {torch::Device(torch::kCPU), torch::Device(torch::kCUDA)}) {
    try {
      train::Teacher onnx(p.dir / "teacher.onnx", device, classes, 0);
      FAIL() << "a teacher that is not TorchScript was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data) << e.what();
      EXPECT_NE(std::string(e.what()).find("teacher.onnx' is not TorchScript"), std::string::npos) << e.what();
    }
  }
  try {
    train::Teacher none(p.dir / "missing.pt", torch::kCPU, classes, 0);
    FAIL() << "a missing teacher was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.pt"), std::string::npos) << e.what();
  }
}

TEST(DistillCli, DistillCommandTrainsTheStudentFromTheTeacher) {
  Project p;
  const std::string cfg = p.write(p.config("cli", json::array({head_stage(2, 1)})), "student.json");
  auto r = test::run_tltrain("distill --teacher " + p.teacher() + " --config " + cfg + " --temperature 3 --alpha 0.6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("teacher " + p.teacher()), std::string::npos) << r.output;
  std::ifstream in(p.dir / "cli/config.json");
  const json resolved = json::parse(in);
  EXPECT_EQ(resolved["stages"][0]["distill"]["teacher"], p.teacher());
  EXPECT_EQ(resolved["stages"][0]["distill"]["temperature"], 3.0);
  EXPECT_EQ(resolved["stages"][0]["distill"]["alpha"], 0.6);
  auto missing = test::run_tltrain("distill --config " + cfg);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("--teacher"), std::string::npos) << missing.output;
}

TEST(DistillConfig, RefusesWhatItCannotDistill) {
  Project p;
  json c = p.config("r", json::array({head_stage(1, 0)}));
  c["distill"] = {{"teacher", "t.pt"}, {"alpha", 2}};
  EXPECT_NE(test::config_error(c).find("distill.alpha"), std::string::npos) << test::config_error(c);
  c["distill"] = {{"temperature", 2}};
  EXPECT_NE(test::config_error(c).find("distill.teacher"), std::string::npos) << test::config_error(c);
  c["distill"] = {{"teacher", "t.pt"}};
  c["model"]["head"]["output"] = "multilabel";
  EXPECT_NE(test::config_error(c).find("stages[0].distill"), std::string::npos) << test::config_error(c);
  c["model"]["head"].erase("output");
  c["stages"][0]["loss"] = "hinge";
  EXPECT_NE(test::config_error(c).find("hinge"), std::string::npos) << test::config_error(c);
  c["stages"][0].erase("loss");
  c["distill"] = "t.pt";
  EXPECT_NE(test::config_error(c).find("distill"), std::string::npos) << test::config_error(c);
  c["distill"] = {{"teacher", "t.pt"}};
  auto ok = config::parse_run_config(c, "s.json");
  EXPECT_TRUE(ok.stages[0].distill.enabled());
  EXPECT_EQ(ok.stages[0].distill.temperature, 10.0);
  EXPECT_EQ(ok.stages[0].distill.alpha, 0.9);
  EXPECT_TRUE(fs::path(ok.stages[0].distill.teacher).is_absolute());
}
