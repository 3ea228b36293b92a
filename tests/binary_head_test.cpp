// The binary (sigmoid) head and the two-class metrics (issue 13): one logit given out as [0, z],
// cross-entropy on it is binary cross-entropy, the decision threshold, ROC-AUC and average
// precision, and a run that trains, evaluates and exports.
#include <gtest/gtest.h>
#include <fstream>
#include <torch/script.h>
#include <torch/torch.h>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/eval/metrics.h"
#include "tltrain/model/classifier.h"
#include "tltrain/ship/export.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/model/backbone.h"
#include "tltrain/train/objective.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/trainer.h"

using namespace tltrain;
using config::json;

TEST(BinaryMetrics, RocAucAndAveragePrecisionAsSklearn) {
  // sklearn's documented example: roc_auc_score 0.75, average_precision_score 0.8333.
  const std::vector<double> scores{0.1, 0.4, 0.35, 0.8};
  const std::vector<bool> pos{false, false, true, true};
  EXPECT_NEAR(*eval::roc_auc(scores, pos), 0.75, 1e-12);
  EXPECT_NEAR(*eval::average_precision(scores, pos), 0.8333333333333333, 1e-12);
  // Ties count half; one class only has no ROC-AUC.
  EXPECT_NEAR(*eval::roc_auc({0.5, 0.5, 0.9}, {true, false, true}), 0.75, 1e-12);
  EXPECT_FALSE(eval::roc_auc({0.2, 0.3}, {true, true}).has_value());
  EXPECT_FALSE(eval::average_precision({0.2, 0.3}, {false, false}).has_value());
}

TEST(BinaryMetrics, TheThresholdDecidesTheSecondClass) {
  const std::vector<float> probs{0.3f, 0.7f, 0.8f, 0.2f, 0.05f, 0.95f};
  const std::vector<int64_t> labels{1, 0, 1};
  auto at_half = eval::evaluate(probs, labels, {"no", "yes"}, {}, 0.0, 5, 0.5);
  EXPECT_DOUBLE_EQ(at_half.accuracy, 1.0);
  auto strict = eval::evaluate(probs, labels, {"no", "yes"}, {}, 0.0, 5, 0.9);
  EXPECT_NEAR(strict.accuracy, 2.0 / 3.0, 1e-12);  // 0.7 is no longer "yes"
  EXPECT_EQ(strict.confusion[1][0], 1);
  EXPECT_NEAR(*strict.roc_auc, 1.0, 1e-12) << "the threshold does not move the ROC-AUC";
  EXPECT_EQ(eval::to_json(strict)["threshold"], 0.9);
}

TEST(BinaryHead, OneLogitWhoseCrossEntropyIsBinaryCrossEntropy) {
  config::HeadConfig h;
  h.output = config::HeadOutput::Sigmoid;
  h.hidden = {4};
  model::Head head(h, 6, 2);
  EXPECT_EQ(head->dense[1]->as<torch::nn::Linear>()->weight.size(0), 1) << "the binary head has one output";
  torch::manual_seed(0);
  const auto logits = head->forward(torch::randn({5, 6}));
  ASSERT_EQ(logits.size(1), 2);
  EXPECT_TRUE(torch::equal(logits.select(1, 0), torch::zeros({5})));
  const auto y = torch::tensor({0, 1, 1, 0, 1}, torch::kLong);
  const auto z = logits.select(1, 1).detach().to(torch::kDouble);
  for (double eps : {0.0, 0.2}) {
    train::CrossEntropy ce({}, eps);
    const double ours = (ce.loss_sum(logits.detach().to(torch::kDouble), y).sum / 5.0).item<double>();
    // Keras's binary label smoothing: y * (1 - eps) + eps / 2.
    const auto target = y.to(torch::kDouble) * (1 - eps) + eps / 2;
    const double bce = torch::binary_cross_entropy_with_logits(z, target).item<double>();
    EXPECT_NEAR(ours, bce, 1e-12) << "smoothing " << eps;
  }
  config::HeadConfig three = h;
  try {
    model::Head bad(three, 6, 3);
    ADD_FAILURE() << "a sigmoid head on 3 classes was built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs exactly 2 classes, the data has 3"), std::string::npos) << e.what();
  }
}

TEST(BinaryHead, TrainsEvaluatesAndExports) {
  test::TempDir dir("binary_head");
  test::write_color_dataset(dir / "train", {"green", "red"}, 16);
  test::write_color_dataset(dir / "val", {"green", "red"}, 6);
  json cfg = {{"seed", 3}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"output", "sigmoid"}, {"threshold", 0.4}}}}},
              {"output_dir", dir / "run"},
              {"stages", {{{"epochs", 6}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.05}}}}}}};
  const auto r = train::fit(config::parse_run_config(cfg, "binary.json"));
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.95) << r.history.dump(1);
  ASSERT_TRUE(r.history.back()["val_roc_auc"].is_number()) << "the log scores the ranking every epoch";
  ASSERT_TRUE(r.history.back()["val_average_precision"].is_number());
  std::ifstream log_csv(dir / "run/log.csv");
  std::string header;
  std::getline(log_csv, header);
  EXPECT_NE(header.find(",val_roc_auc,val_average_precision"), std::string::npos) << header;

  eval::EvalOptions eo;
  eo.checkpoint = r.best_checkpoint;
  eo.threads = 1;
  const auto report = eval::evaluate_checkpoint(eo);
  EXPECT_DOUBLE_EQ(report.threshold, 0.4) << "eval decides at the run's threshold";
  ASSERT_TRUE(report.roc_auc.has_value());
  EXPECT_GE(*report.roc_auc, 0.95);

  ship::ExportOptions xo;
  xo.checkpoint = r.best_checkpoint;
  xo.out = dir / "model.pt";
  const auto summary = ship::export_model(xo);
  EXPECT_EQ(summary.metadata["head"]["output"], "sigmoid");
  auto m = torch::jit::load(xo.out);
  const auto size = summary.metadata["preprocess"]["input_size"];
  const auto x = torch::rand({3, 3, size[0].get<int64_t>(), size[1].get<int64_t>()});
  const auto logits = m.forward({x}).toTensor();
  ASSERT_EQ(logits.size(1), 2);
  EXPECT_TRUE(torch::equal(logits.select(1, 0), torch::zeros({3})));
  const auto p = m.get_method("predict_proba")({x}).toTensor();
  EXPECT_TRUE(torch::allclose(p.select(1, 1), torch::sigmoid(logits.select(1, 1)), 1e-6, 1e-6));
}

TEST(FlattenHead, TrainsOnEveryPositionEvaluatesAndExports) {
  test::TempDir dir("flatten_head");
  test::write_color_dataset(dir / "train", {"green", "red", "blue"}, 8);
  test::write_color_dataset(dir / "val", {"green", "red", "blue"}, 3);
  json cfg = {{"seed", 4}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"pooling", "flatten"}, {"hidden", {4}}}}}},
              {"output_dir", dir / "run"},
              {"stages", {{{"epochs", 4}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.02}}}},
                          {{"epochs", 1}, {"trainable", "all"}, {"feature_cache", false}}}}};
  const auto parsed = config::parse_run_config(cfg, "flatten.json");
  auto backbone = model::load_backbone(test::tiny_backbone());
  const int64_t positions = train::flatten_positions(parsed, backbone);
  EXPECT_GT(positions, 1) << "the tiny backbone's feature map has more than one position";
  const auto r = train::fit(parsed);
  auto ck = checkpoint::load(r.last_checkpoint);
  EXPECT_EQ(ck.head.at("head.dense.0.weight").size(1), backbone.meta.feature_channels * positions) << "Dense on C·H·W inputs";
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.9) << r.history.dump(1);

  eval::EvalOptions eo;
  eo.checkpoint = r.last_checkpoint;
  eo.threads = 1;
  EXPECT_NEAR(eval::evaluate_checkpoint(eo).accuracy, r.history.back()["val_accuracy"].get<double>(), 1e-9);
  ship::ExportOptions xo;
  xo.checkpoint = r.last_checkpoint;
  xo.out = dir / "model.pt";
  EXPECT_EQ(ship::export_model(xo).metadata["head"]["pooling"], "flatten");  // the export's own self-check compares logits

  config::HeadConfig wide;
  wide.pooling = config::Pooling::Flatten;
  try {
    model::Head head(wide, 1280, 2, 900);  // 1,152,000 features
    ADD_FAILURE() << "an oversized flatten head was built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1280 channels x 900 positions"), std::string::npos) << e.what();
  }
}
