// The multi-label head (issue 13): CSV lists with several labels per image, one sigmoid per
// class with binary cross-entropy, mAP and micro/macro F1, and predict returning every class
// over the threshold.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <random>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/core/ranking.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/ship/export.h"
#include "tltrain/checkpoint/model_file.h"
#include "tltrain/ship/predict.h"
#include "tltrain/train/objective.h"
#include "tltrain/train/trainer.h"

using namespace tltrain;
using config::json;
namespace fs = std::filesystem;

namespace {

/// Writes IMAGES 32×32 images under DIR: class k ("blue", "green", "red") paints its own vertical
/// third of the image in its colour, each class present with probability 1/2. Returns each
/// image's name and classes.
std::vector<std::pair<std::string, std::vector<std::string>>> write_stripes(const std::string& dir, int images, uint32_t seed) {
  static const char* names[] = {"blue", "green", "red"};
  std::mt19937 rng(seed);
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (int i = 0; i < images; ++i) {
    cv::Mat img(32, 32, CV_8UC3, cv::Scalar(90, 90, 90));
    std::vector<std::string> labels;
    for (int k = 0; k < 3; ++k) {
      if (rng() % 2 == 0) continue;
      labels.push_back(names[k]);
      cv::Scalar colour(k == 0 ? 230 : 20, k == 1 ? 230 : 20, k == 2 ? 230 : 20);  // BGR
      img(cv::Rect(k * 10, 0, 11, 32)).setTo(colour);
    }
    cv::Mat noise(32, 32, CV_8UC3);
    cv::randu(noise, 0, 25);
    img += noise;
    const std::string name = "img" + std::to_string(i) + ".png";
    cv::imwrite(dir + "/" + name, img);
    out.emplace_back(name, labels);
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ";") + x;
  return s;
}

std::string data_error(const std::string& csv) {
  try {
    data::scan_source(csv);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(MultiLabelData, BothCsvFormsGiveEveryImageItsClasses) {
  test::TempDir dir("ml_csv");
  test::write_solid_image(dir / "a.png", 8, 8, 0, 0, 255);
  test::write_solid_image(dir / "b.png", 8, 8, 0, 255, 0);
  test::write_solid_image(dir / "c.png", 8, 8, 255, 0, 0);
  test::write_text(dir / "labels.csv", "path,label\na.png,\"dog;cat\"\nb.png,cat\nc.png,bird\n");
  auto d = data::scan_source(dir / "labels.csv");
  EXPECT_TRUE(d.multi_label);
  EXPECT_EQ(d.classes, (std::vector<std::string>{"bird", "cat", "dog"}));
  std::map<std::string, std::vector<int64_t>> by_file;
  for (const auto& s : d.samples) by_file[s.path.substr(s.path.rfind('/') + 1)] = s.labels;
  EXPECT_EQ(by_file["a.png"], (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(by_file["c.png"], (std::vector<int64_t>{0}));
  EXPECT_EQ(d.class_counts(), (std::vector<int64_t>{1, 2, 1}));

  test::write_text(dir / "columns.csv", "filename,dog,cat,bird\na.png,1,1,0\nb.png,0,1,0\nc.png,0,0,0\n");
  d = data::scan_source(dir / "columns.csv");
  EXPECT_TRUE(d.multi_label);
  EXPECT_EQ(d.classes, (std::vector<std::string>{"bird", "cat", "dog"})) << "classes sorted, whatever the column order";
  for (const auto& s : d.samples) by_file[s.path.substr(s.path.rfind('/') + 1)] = s.labels;
  EXPECT_EQ(by_file["a.png"], (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(by_file["c.png"].empty()) << "an image may have no class";
  const auto t = data::targets(d.samples, {0, 1, 2}, 3);
  EXPECT_EQ(t.sum().item<float>(), 3.0f);

  test::write_text(dir / "single.csv", "a.png,dog\nb.png,cat\n");
  EXPECT_FALSE(data::scan_source(dir / "single.csv").multi_label) << "one label per row is the plain single-label set";

  test::write_text(dir / "bad_value.csv", "path,dog,cat\na.png,1,yes\n");
  EXPECT_NE(data_error(dir / "bad_value.csv").find("bad_value.csv:2: column 'cat' is 'yes'; each class column holds 0 or 1"),
            std::string::npos) << data_error(dir / "bad_value.csv");
  test::write_text(dir / "short_row.csv", "path,dog,cat\na.png,1\n");
  EXPECT_NE(data_error(dir / "short_row.csv").find("short_row.csv:2: 2 columns, the header has 3"), std::string::npos);
  test::write_text(dir / "empty_label.csv", "a.png,dog;;cat\n");
  EXPECT_NE(data_error(dir / "empty_label.csv").find("empty label"), std::string::npos);
}

TEST(MultiLabelMetrics, AsSklearn) {
  // y_true [[1,0],[0,1],[1,1]], scores [[0.9,0.2],[0.4,0.7],[0.6,0.3]] at 0.5:
  // decisions [[1,0],[0,1],[1,0]]: class 0 P=R=F1=1, class 1 P=1 R=0.5 F1=2/3;
  // micro: tp 3, predicted 3, positives 4 → F1 6/7; exact match 2/3; Hamming 1/6;
  // AP class 0 = 1, class 1: scores 0.7(+) 0.3(+) 0.2(-) → 1.
  const std::vector<float> p{0.9f, 0.2f, 0.4f, 0.7f, 0.6f, 0.3f};
  const std::vector<uint8_t> y{1, 0, 0, 1, 1, 1};
  const auto m = ranking::multilabel(p, y, 2, 0.5);
  EXPECT_NEAR(m.f1[1], 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.micro_f1, 6.0 / 7.0, 1e-12);
  EXPECT_NEAR(m.macro_f1, (1.0 + 2.0 / 3.0) / 2, 1e-12);
  EXPECT_NEAR(m.subset_accuracy, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.hamming_loss, 1.0 / 6.0, 1e-12);
  EXPECT_NEAR(*m.mean_average_precision, 1.0, 1e-12);
  const auto worse = ranking::multilabel({0.9f, 0.8f, 0.4f, 0.1f, 0.6f, 0.3f}, y, 2, 0.5);
  EXPECT_NEAR(*worse.average_precision[1], (0.5 * 0.5 + 0.5 * (2.0 / 3.0)), 1e-12) << "0.8(-) 0.3(+) 0.1(+)";
}

TEST(MultiLabelObjective, IsKerasBinaryCrossEntropyAveragedOverClasses) {
  torch::manual_seed(1);
  const auto logits = torch::randn({4, 3}, torch::kDouble);
  const auto y = torch::tensor({1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0}, torch::kDouble).view({4, 3});
  for (double s : {0.0, 0.1}) {
    train::MultiLabelCrossEntropy ce(s, 0.5);
    const double ours = (ce.loss_sum(logits, y).sum / 4.0).item<double>();
    const double keras = torch::binary_cross_entropy_with_logits(logits, y * (1 - s) + s / 2).item<double>();
    EXPECT_NEAR(ours, keras, 1e-12) << "smoothing " << s;
  }
  train::MultiLabelCrossEntropy ce(0.0, 0.5);
  EXPECT_EQ(ce.correct(y * 20 - 10, y), 4) << "every decision right";
  auto one_wrong = y * 20 - 10;
  one_wrong[2][0] = -10;  // row 2 misses its first class
  EXPECT_EQ(ce.correct(one_wrong, y), 3) << "a row is right only when all its decisions are";
}

TEST(MultiLabelHead, TrainsToHighMapEvaluatesExportsAndPredictsEveryClassOverTheThreshold) {
  test::TempDir dir("multilabel");
  fs::create_directories(dir / "img");
  const auto train_rows = write_stripes(dir / "img", 90, 1);
  std::ofstream csv(dir / "train.csv");
  csv << "path,label\n";
  for (const auto& [name, labels] : train_rows) csv << "img/" << name << ",\"" << (labels.empty() ? "none" : joined(labels)) << "\"\n";
  csv.close();
  fs::create_directories(dir / "val");
  const auto val_rows = write_stripes(dir / "val", 40, 2);
  std::ofstream vcsv(dir / "val.csv");
  vcsv << "path,blue,green,none,red\n";  // the other form, same classes
  for (const auto& [name, labels] : val_rows) {
    auto has = [&](const char* c) { return std::find(labels.begin(), labels.end(), c) != labels.end() ? 1 : 0; };
    vcsv << "val/" << name << "," << has("blue") << "," << has("green") << "," << (labels.empty() ? 1 : 0) << "," << has("red") << "\n";
  }
  vcsv.close();

  json cfg = {{"seed", 7}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train.csv"}, {"val", dir / "val.csv"}, {"batch_size", 16}, {"augment", {{"horizontal_flip", false}}}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"output", "multilabel"}}}}},
              {"output_dir", dir / "run"},
              {"stages", {{{"epochs", 30}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.05}}}}}}};
  json softmax = cfg;
  softmax["model"]["head"]["output"] = "softmax";
  softmax["output_dir"] = dir / "softmax";
  try {
    train::fit(config::parse_run_config(softmax, "softmax.json"));
    ADD_FAILURE() << "a multi-label set trained under a softmax head";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set it to \"multilabel\""), std::string::npos) << e.what();
  }

  const auto r = train::fit(config::parse_run_config(cfg, "multilabel.json"));
  const json& last = r.history.back();
  ASSERT_TRUE(last.contains("val_map")) << last.dump();
  EXPECT_GE(last["val_map"].get<double>(), 0.95) << r.history.dump(1);

  eval::EvalOptions eo;
  eo.checkpoint = r.last_checkpoint;
  eo.threads = 1;
  const auto report = eval::evaluate_checkpoint(eo);
  ASSERT_TRUE(report.multilabel.has_value());
  EXPECT_GE(*report.multilabel->mean_average_precision, 0.95);
  EXPECT_NEAR(*report.multilabel->mean_average_precision, last["val_map"].get<double>(), 1e-6) << "eval and the log agree";
  EXPECT_NE(eval::format_report(report).find("mAP"), std::string::npos);
  EXPECT_TRUE(eval::to_json(report).contains("multilabel"));

  ship::ExportOptions xo;
  xo.checkpoint = r.last_checkpoint;
  xo.out = dir / "model.pt";
  EXPECT_EQ(ship::export_model(xo).metadata["head"]["output"], "multilabel");
  // An image with blue and red, not green: predict decides exactly those two.
  cv::Mat img(32, 32, CV_8UC3, cv::Scalar(90, 90, 90));
  img(cv::Rect(0, 0, 11, 32)).setTo(cv::Scalar(230, 20, 20));
  img(cv::Rect(20, 0, 11, 32)).setTo(cv::Scalar(20, 20, 230));
  cv::imwrite(dir / "blue_red.png", img);
  ship::PredictOptions po;
  po.model = xo.out;
  po.inputs = {dir / "blue_red.png"};
  const auto rows = ship::predict_images(po);
  ASSERT_EQ(rows.size(), 1u);
  std::vector<std::string> decided;
  for (const auto& c : rows[0].decided) decided.push_back(c.name);
  EXPECT_EQ(decided, (std::vector<std::string>{"blue", "red"})) << ship::format_predictions(rows, "table");
  EXPECT_NE(ship::format_predictions(rows, "json").find("\"labels\""), std::string::npos);
}

TEST(Decisions, EachHeadDecidesItsOwnWay) {
  checkpoint::ModelInfo info;
  const float two[] = {0.3f, 0.7f};
  EXPECT_EQ(checkpoint::decided_classes(info, two, 2), (std::vector<int64_t>{1})) << "softmax: the top class";
  info.output = "sigmoid";
  info.threshold = 0.8;
  EXPECT_EQ(checkpoint::decided_classes(info, two, 2), (std::vector<int64_t>{0})) << "the binary head's threshold";
  info.output = "multilabel";
  info.threshold = 0.5;
  const float three[] = {0.6f, 0.7f, 0.1f};
  EXPECT_EQ(checkpoint::decided_classes(info, three, 3), (std::vector<int64_t>{0, 1}));
  const float none[] = {0.2f, 0.1f, 0.4f};
  EXPECT_TRUE(checkpoint::decided_classes(info, none, 3).empty());
}
