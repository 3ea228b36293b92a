// int8 post-training quantisation (tltrain export --quantize int8, scripts/quantize_int8.py) on real
// architectures from the export_backbones fixture: each quantisable family runs through predict
// and serve, the others are refused naming those that have a form, and MobileNetV2 with ImageNet
// weights keeps its hymenoptera accuracy within one point of fp32 in a file a third the size; its
// ONNX file gives the TorchScript file's probabilities on every val image.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tltrain/checkpoint/model_file.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/serve/server.h"
#include "tltrain/ship/predict.h"
#include "tltrain/train/distill.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

std::string exported(const std::string& name) { return std::string(TLTRAIN_EXPORT_DIR) + "/" + name; }

bool python_has_torchvision() { return test::run_command("/usr/bin/python3 -c 'import torch, torchvision, numpy'").exit_code == 0; }

/// One step on coloured squares at 64×64 over BACKBONE (random weights): a checkpoint to ship, in
/// seconds. BatchNorm on batch statistics, as in EveryArch: random weights under inference-mode
/// BatchNorm give features that are the same for every image.
std::string train_step(const test::TempDir& dir, const std::string& backbone) {
  test::write_color_dataset(dir / "train", {"green", "red"}, 4);
  json cfg = {{"seed", 1}, {"device", "cpu"}, {"threads", {{"intra_op", 2}, {"loader", 2}}}, {"monitor", "loss"},
              {"data", {{"train", dir / "train"}, {"batch_size", 8}, {"image_size", {64, 64}}, {"resize", 64}}},
              {"model", {{"backbone", backbone}}}, {"output_dir", dir / "run"},
              {"stages", json::array({{{"epochs", 1}, {"trainable", "all"}, {"feature_cache", false}, {"batch_norm", "train"},
                                       {"optimizer", {{"name", "sgd"}, {"lr", 1e-3}}}}})}};
  return train::fit(config::parse_run_config(cfg, "int8.json")).last_checkpoint;
}

/// Pearson correlation of A and B (same length, A not constant).
double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += (a[i] - ma) * (b[i] - mb), aa += (a[i] - ma) * (a[i] - ma), bb += (b[i] - mb) * (b[i] - mb);
  return ab / std::sqrt(aa * bb + 1e-300);
}

/// Top-1 accuracy of ROWS against the folder each image is in.
double folder_accuracy(const std::vector<ship::PredictRow>& rows) {
  size_t ok = 0;
  for (const auto& r : rows) ok += !r.top.empty() && r.top[0].name == fs::path(r.path).parent_path().filename().string();
  return static_cast<double>(ok) / static_cast<double>(rows.size());
}

}  // namespace

TEST(ExportedInt8, EachQuantisableFamilyLoadsInPredictAndServe) {
  if (!python_has_torchvision()) GTEST_SKIP() << "/usr/bin/python3 lacks torch, torchvision or numpy (scripts/setup.sh installs them)";
  for (const std::string arch : {"resnet18", "shufflenet_v2_x0_5", "mobilenet_v3_small"}) {
    SCOPED_TRACE(arch);
    ASSERT_TRUE(fs::exists(exported(arch + ".pt"))) << "run through ctest: the export_backbones fixture makes it";
    test::TempDir dir("int8_" + arch);
    const std::string ck = train_step(dir, exported(arch + ".pt"));
    auto r = test::run_tltrain("export --checkpoint " + ck + " --out " + (dir / "int8.pt") + " --quantize int8 --calibration 6");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("int8 weights"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("calibrated on 6 images"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir / "int8.pt.fp32.tmp")) << "an intermediate file is left behind";
    EXPECT_FALSE(fs::exists(dir / "int8.pt.calibration.tmp.npy")) << "an intermediate file is left behind";
    ASSERT_EQ(test::run_tltrain("export --checkpoint " + ck + " --out " + (dir / "fp32.pt")).exit_code, 0);
    EXPECT_LT(fs::file_size(dir / "int8.pt") * 2, fs::file_size(dir / "fp32.pt")) << "int8 weights are a quarter of fp32's";

    auto mf = checkpoint::load_model_file(dir / "int8.pt");
    EXPECT_EQ(mf.info.raw.at("precision"), "int8");
    EXPECT_EQ(mf.info.raw.at("quantization").at("calibration_images"), 6);
    EXPECT_EQ(mf.info.raw.at("quantization").at("source_model"), ck) << "the metadata names the checkpoint, not a temporary file";

    // int8 computes fp32's function: where fp32's probabilities differ between the images, int8's
    // follow them (correlation; random weights answer near 0.5, so a fixed tolerance would pass a
    // constant); where fp32 answers alike for every image, so does int8.
    ship::PredictOptions po;
    po.inputs = {dir / "train"};
    po.topk = 2;
    po.model = dir / "fp32.pt";
    const auto fp32_rows = ship::predict_images(po);
    po.model = dir / "int8.pt";
    const auto int8_rows = ship::predict_images(po);
    ASSERT_EQ(int8_rows.size(), fp32_rows.size());
    const auto p_red = [](const ship::PredictRow& row) { return row.top[0].name == "red" ? row.top[0].probability : row.top[1].probability; };
    std::vector<double> a, b;
    for (size_t i = 0; i < int8_rows.size(); ++i) {
      ASSERT_EQ(int8_rows[i].top.size(), 2u) << int8_rows[i].error;
      ASSERT_EQ(int8_rows[i].path, fp32_rows[i].path);
      a.push_back(p_red(fp32_rows[i]));
      b.push_back(p_red(int8_rows[i]));
    }
    const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
    if (*hi - *lo > 1e-3) {
      EXPECT_GT(correlation(a, b), 0.9) << "fp32's P(red) spans [" << *lo << ", " << *hi << "]";
    } else {
      const auto [lo8, hi8] = std::minmax_element(b.begin(), b.end());
      EXPECT_LT(*hi8 - *lo8, 1e-3);
      EXPECT_NEAR(b[0], a[0], 1e-3);
    }

    // As a distillation teacher: one image alone gets its logits within a batch (the onednn
    // engine cannot take a batch of one after a larger one; ModelFile::logits pads it).
    train::Teacher teacher(dir / "int8.pt", torch::kCPU, {"green", "red"}, 0);
    torch::manual_seed(5);
    const auto x = torch::randn({3, 3, 64, 64});
    const auto batch = teacher.logits(x);
    const auto alone = teacher.logits(x.narrow(0, 1, 1));
    EXPECT_LT((alone[0] - batch[1]).abs().max().item<double>(), 1e-3) << alone << batch;
    auto p = test::run_tltrain("predict --topk 1 --format csv --model " + (dir / "int8.pt") + " " + (dir / "train"));
    ASSERT_EQ(p.exit_code, 0) << p.output;
    EXPECT_NE(p.output.find("/green/0.png,1,"), std::string::npos) << p.output;

    serve::ServeOptions so;
    so.model = dir / "int8.pt";
    so.port = 0;
    serve::Server server(so);
    httplib::Client cli("127.0.0.1", server.start());
    cli.set_read_timeout(60, 0);
    std::ifstream in(dir / "train/red/0.png", std::ios::binary);
    const std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto res = cli.Post("/predict?topk=2", body, "image/png");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(json::parse(res->body).at("predictions").size(), 2u);
    server.stop();
  }
}

TEST(ExportedInt8, ArchitecturesWithoutAQuantisableFormAndOtherFormatsAreRefused) {
  if (!python_has_torchvision()) GTEST_SKIP() << "/usr/bin/python3 lacks torch, torchvision or numpy (scripts/setup.sh installs them)";
  test::TempDir dir("int8_refused");
  const std::string ck = train_step(dir, exported("efficientnet_b0.pt"));
  auto r = test::run_tltrain("export --checkpoint " + ck + " --out " + (dir / "int8.pt") + " --quantize int8 --calibration 4");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  EXPECT_NE(r.output.find("backbone efficientnet_b0 has no quantisable form in torchvision"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mobilenet_v2"), std::string::npos) << "the message lists the quantisable architectures: " << r.output;
  EXPECT_FALSE(fs::exists(dir / "int8.pt"));
  EXPECT_FALSE(fs::exists(dir / "int8.pt.fp32.tmp"));
  r = test::run_tltrain("export --checkpoint " + ck + " --out " + (dir / "int8.onnx") + " --quantize int8 --format onnx");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  EXPECT_NE(r.output.find("--quantize int8 quantizes the fp32 TorchScript model"), std::string::npos) << r.output;
  r = test::run_tltrain("export --checkpoint " + ck + " --out " + (dir / "int8.pt") + " --quantize int8 --calibration-data " + (dir / "nowhere"));
  EXPECT_EQ(r.exit_code, exit_code::data) << r.output;
  EXPECT_NE(r.output.find("nowhere"), std::string::npos) << r.output;
}

TEST(ExportedImagenet, Int8KeepsHymenopteraAccuracyWithinOnePointOfFp32) {
  if (test::shared_dir().empty()) GTEST_SKIP() << "../shared is absent: no ImageNet weights or hymenoptera";
  if (!python_has_torchvision()) GTEST_SKIP() << "/usr/bin/python3 lacks torch, torchvision or numpy (scripts/setup.sh installs them)";
  test::TempDir dir("hym_int8");
  const std::string data = test::shared_dir() + "/data/hymenoptera";
  json cfg = {{"seed", 3}, {"device", "cpu"}, {"threads", {{"intra_op", 2}, {"loader", 2}}},
              {"data", {{"train", data + "/train"}, {"val", data + "/val"}, {"batch_size", 32}}},
              {"model", {{"backbone", exported("mobilenet_v2_imagenet.pt")}}}, {"output_dir", dir / "run"},
              {"stages", json::array({{{"epochs", 10}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}}}})}};
  const auto run = train::fit(config::parse_run_config(cfg, "hymenoptera_int8.json"));  // cached features: seconds
  ASSERT_EQ(test::run_tltrain("export --checkpoint " + run.best_checkpoint + " --out " + (dir / "fp32.pt")).exit_code, 0);
  // The default calibration (256) takes every one of the 244 training images.
  auto r = test::run_tltrain("export --checkpoint " + run.best_checkpoint + " --out " + (dir / "int8.pt") + " --quantize int8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("calibrated on 244 images"), std::string::npos) << r.output;

  ship::PredictOptions o;
  o.inputs = {data + "/val"};
  o.topk = 1;
  o.model = dir / "fp32.pt";
  const double fp32 = folder_accuracy(ship::predict_images(o));
  o.model = dir / "int8.pt";
  const double int8 = folder_accuracy(ship::predict_images(o));
  EXPECT_GE(fp32, 0.9) << "the fp32 head is not what a frozen ImageNet MobileNetV2 reaches here";
  EXPECT_LE(std::abs(int8 - fp32), 0.01) << "int8 " << int8 << " vs fp32 " << fp32 << " on 153 val images";
  EXPECT_LT(fs::file_size(dir / "int8.pt") * 3, fs::file_size(dir / "fp32.pt"));

  // The same model as ONNX (MobileNetV2's ReLU6 is the Clip that pins opset 10) through OpenCV DNN:
  // every val image's probabilities as the TorchScript file's, run as saved.
  r = test::run_tltrain("export --checkpoint " + run.best_checkpoint + " --out " + (dir / "model.onnx") + " --format onnx");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  o.topk = 2;
  o.optimize = false;
  o.model = dir / "fp32.pt";
  const auto want = ship::predict_images(o);
  o.model = dir / "model.onnx";
  const auto got = ship::predict_images(o);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].top.size(), 2u) << got[i].path << ": " << got[i].error;
    EXPECT_EQ(got[i].top[0].index, want[i].top[0].index) << got[i].path;
    EXPECT_NEAR(got[i].top[0].probability, want[i].top[0].probability, 1e-4) << got[i].path;
  }
}
