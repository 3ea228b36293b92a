// Issue 14's checks on real data: ants vs bees with the shared ImageNet MobileNetV2 (the export
// fixture makes it). Linear SVM and logistic-regression heads on the cached features, and a
// 5-fold cv that prints every metric's mean ± std.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

json hymenoptera(const std::string& out, const json& stage) {
  const std::string data = test::shared_dir() + "/data/hymenoptera";
  return {{"seed", 3}, {"device", "cpu"}, {"threads", {{"intra_op", 2}, {"loader", 2}}},
          {"data", {{"train", data + "/train"}, {"val", data + "/val"}, {"batch_size", 32}}},
          {"model", {{"backbone", std::string(TLTRAIN_EXPORT_DIR) + "/mobilenet_v2_imagenet.pt"}, {"head", {{"hidden", json::array()}}}}},
          {"output_dir", out}, {"stages", json::array({stage})}};
}

}  // namespace

TEST(ExportedSmallData, SvmAndLogisticHeadsOnCachedFeaturesReach94PercentOnHymenoptera) {
  if (test::shared_dir().empty()) GTEST_SKIP() << "../shared is absent: no ImageNet weights or hymenoptera";
  test::TempDir dir("hym_svm");
  const json svm = json::parse(R"({"epochs": 30, "trainable": "head", "loss": "hinge", "optimizer": {"name": "adam", "lr": 0.001, "weight_decay": 0.0001}})");
  const json logistic = json::parse(R"({"epochs": 5, "trainable": "head", "optimizer": {"name": "lbfgs", "weight_decay": 0.001}})");
  for (const auto& [name, stage] : {std::pair{"svm", svm}, std::pair{"logistic", logistic}}) {
    const auto r = train::fit(config::parse_run_config(hymenoptera(dir / name, stage), std::string(name) + ".json"));
    EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.94) << name << ": " << r.history.dump(1);
  }
}

TEST(ExportedSmallData, FiveFoldCvOfTheHeadPrintsMeanAndStdOnHymenoptera) {
  if (test::shared_dir().empty()) GTEST_SKIP() << "../shared is absent: no ImageNet weights or hymenoptera";
  test::TempDir dir("hym_cv");
  const json stage = json::parse(R"({"epochs": 10, "trainable": "head", "optimizer": {"name": "adam", "lr": 0.001}})");
  test::write_text(dir / "cv.json", hymenoptera(dir / "cv", stage).dump());
  const auto r = test::run_tltrain("cv --folds 5 --config " + (dir / "cv.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // "val_accuracy: 0.9622 ± 0.0171 (95% interval 0.9410 to 0.9834)"
  const size_t at = r.output.find("val_accuracy: ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const double mean = std::stod(r.output.substr(at + 14, 6));
  EXPECT_GE(mean, 0.9) << r.output;
  EXPECT_NE(r.output.find(" ± ", at), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("out-of-fold accuracy: "), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "cv/cv_report.html"));
  EXPECT_TRUE(fs::exists(dir / "cv/fold5/oof.json"));
}
