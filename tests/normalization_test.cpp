// The normalisation and augmentation the Keras seeds use (issue 13): data.normalization
// "dataset" (per-channel statistics of the training images, recorded in the run) and
// channel_shift_range.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>

#include "test_util.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/error.h"
#include "tltrain/data/preprocess.h"
#include "tltrain/data/stats.h"
#include "tltrain/data/transforms.h"
#include "tltrain/ship/export.h"
#include "tltrain/train/trainer.h"

using namespace tltrain;
using config::json;

namespace {

/// Two classes of solid images: red (RGB 1,0,0) and blue (0,0,1), N of each.
void write_red_blue(const std::string& root, int n) {
  std::filesystem::create_directories(root + "/red");
  std::filesystem::create_directories(root + "/blue");
  for (int i = 0; i < n; ++i) {
    test::write_solid_image(root + "/red/" + std::to_string(i) + ".png", 20, 20, 0, 0, 255);
    test::write_solid_image(root + "/blue/" + std::to_string(i) + ".png", 20, 20, 255, 0, 0);
  }
}

}  // namespace

TEST(DatasetNormalization, StatisticsArePerChannelOverEveryPixelWhateverTheThreads) {
  test::TempDir dir("dataset_stats");
  write_red_blue(dir / "train", 3);
  config::DataConfig cfg;
  cfg.train = dir / "train";
  const auto ds = data::scan_source(cfg.train);
  data::ImageSpec spec;
  spec.input_size = {16, 16};
  spec.resize = 16;
  const auto one = data::dataset_stats(ds.samples, cfg, spec, 1);
  const auto two = data::dataset_stats(ds.samples, cfg, spec, 2);
  EXPECT_NEAR(one.mean[0], 0.5, 1e-9);  // R: half the pixels are 1
  EXPECT_NEAR(one.mean[1], 0.0, 1e-9);
  EXPECT_NEAR(one.mean[2], 0.5, 1e-9);
  EXPECT_NEAR(one.std[0], 0.5, 1e-5);
  EXPECT_NEAR(one.std[1], 1e-6, 1e-9) << "a constant channel keeps a tiny deviation, as Keras";
  EXPECT_EQ(one.mean, two.mean);
  EXPECT_EQ(one.std, two.std);

  config::DataConfig dataset = cfg;
  dataset.normalization = config::Normalization::Dataset;
  try {
    data::resolve_preprocess(dataset, spec);
    ADD_FAILURE() << "dataset normalization without statistics resolved";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs data.normalization_stats"), std::string::npos) << e.what();
  }
  dataset.normalization_stats = one;
  const auto pre = data::resolve_preprocess(dataset, spec);
  EXPECT_EQ(pre.normalization, "dataset");
  EXPECT_FLOAT_EQ(pre.mean[2], 0.5f);
}

TEST(DatasetNormalization, FitRecordsTheStatisticsAndExportCarriesThem) {
  test::TempDir dir("dataset_norm_run");
  write_red_blue(dir / "train", 4);
  write_red_blue(dir / "val", 1);
  json cfg = {{"seed", 2}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 4}, {"normalization", "dataset"}}},
              {"model", {{"backbone", test::tiny_backbone()}}},
              {"output_dir", dir / "run"},
              {"stages", {{{"epochs", 2}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.05}}}}}}};
  const auto r = train::fit(config::parse_run_config(cfg, "dataset_norm.json"));
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.99) << r.history.dump(1);
  const json saved = config::parse_json_file(dir / "run/config.json");
  ASSERT_TRUE(saved["data"]["normalization_stats"].is_object()) << saved["data"].dump();
  EXPECT_NEAR(saved["data"]["normalization_stats"]["mean"][0].get<double>(), 0.5, 1e-6);
  const auto ck = checkpoint::load(r.last_checkpoint);
  ASSERT_TRUE(ck.config.data.normalization_stats.has_value()) << "the checkpoint's config carries them";
  ship::ExportOptions xo;
  xo.checkpoint = r.last_checkpoint;
  xo.out = dir / "model.pt";
  const auto summary = ship::export_model(xo);
  EXPECT_EQ(summary.metadata["preprocess"]["normalization"], "dataset");
  EXPECT_NEAR(summary.metadata["preprocess"]["mean"][2].get<double>(), 0.5, 1e-6);

  // A flatten head sizes itself before the statistics exist.
  cfg["model"]["head"] = {{"pooling", "flatten"}};
  cfg["output_dir"] = dir / "flatten";
  EXPECT_NO_THROW(train::fit(config::parse_run_config(cfg, "dataset_norm_flatten.json")));
}

TEST(ChannelShift, AddsOneIntensityClippedToTheImagesRange) {
  cv::Mat img(1, 3, CV_8UC3);
  img.at<cv::Vec3b>(0, 0) = {10, 20, 30};
  img.at<cv::Vec3b>(0, 1) = {100, 110, 120};
  img.at<cv::Vec3b>(0, 2) = {200, 190, 180};
  cv::Mat up = img.clone();
  data::apply_channel_shift(up, 50);
  EXPECT_EQ(up.at<cv::Vec3b>(0, 0), (cv::Vec3b{60, 70, 80}));
  EXPECT_EQ(up.at<cv::Vec3b>(0, 2), (cv::Vec3b{200, 200, 200})) << "clipped to the image's maximum, 200";
  cv::Mat down = img.clone();
  data::apply_channel_shift(down, -15);
  EXPECT_EQ(down.at<cv::Vec3b>(0, 0), (cv::Vec3b{10, 10, 15})) << "clipped to the image's minimum, 10";
}

TEST(ChannelShift, LeavesTheOtherStepsDrawsAsTheyWere) {
  cv::Mat img(24, 24, CV_8UC3);  // a ramp: every crop spans a wide range of values
  for (int r = 0; r < 24; ++r)
    for (int c = 0; c < 24; ++c) img.at<cv::Vec3b>(r, c) = cv::Vec3b::all(static_cast<uchar>(5 + 10 * c));
  data::Preprocess pre;
  pre.height = pre.width = pre.resize = 16;
  config::AugmentConfig plain;
  plain.random_resized_crop.enabled = true;
  plain.rotation_range = 20;
  config::AugmentConfig shifted = plain;
  shifted.channel_shift_range = 30;
  data::Transform a(pre, plain, data::Mode::Train), b(pre, shifted, data::Mode::Train);
  int moved = 0;
  for (int i = 0; i < 8; ++i) {
    auto ra = data::SampleRng::for_sample(5, 0, i), rb = data::SampleRng::for_sample(5, 0, i);
    const cv::Mat x = a.apply(img, ra), y = b.apply(img, rb);
    // The same crop and rotation: Y is X shifted by one intensity (within the clipping).
    double lo = 0, hi = 0;
    cv::minMaxLoc(x.reshape(1), &lo, &hi);
    cv::Mat diff;
    cv::subtract(y, x, diff, cv::noArray(), CV_32S);
    double dmin = 0, dmax = 0;
    cv::Mat inner = (x.reshape(1) > lo + 31) & (x.reshape(1) < hi - 31);  // never clipped
    ASSERT_GT(cv::countNonZero(inner), 0) << "sample " << i;
    cv::minMaxLoc(diff.reshape(1), &dmin, &dmax, nullptr, nullptr, inner);
    EXPECT_LE(dmax - dmin, 1.0) << "sample " << i << ": not one shift of the same pixels";
    moved += dmin != 0;
    EXPECT_EQ(ra.next(), rb.next()) << "the generators end in step";
  }
  EXPECT_GE(moved, 6) << "the shift is drawn per sample";
}
