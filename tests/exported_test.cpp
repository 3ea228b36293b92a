// Real backbones exported by scripts/export_backbone.py (ctest fixture "exported"): metadata
// written by Python reads back identically in C++, each architecture runs, and the shared
// ImageNet MobileNetV2 still recognises a bee.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_util.h"
#include "tltrain/model/backbone.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/inspect.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/trainer.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/ship/export.h"
#include "tltrain/checkpoint/model_file.h"
#include "tltrain/checkpoint/checkpoint.h"

#include <cmath>
#include <map>
#include <set>

namespace fs = std::filesystem;
using namespace tltrain;

namespace {

std::string exported(const std::string& name) { return std::string(TLTRAIN_EXPORT_DIR) + "/" + name; }

class ExportedArch : public ::testing::TestWithParam<std::string> {};

/// ImageNet evaluation preprocessing: shorter side to 256, center crop 224, RGB, mean/std.
torch::Tensor imagenet_input(const std::string& path, const model::BackboneMeta& meta) {
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  EXPECT_FALSE(bgr.empty()) << path;
  double scale = static_cast<double>(meta.resize) / std::min(bgr.cols, bgr.rows);
  cv::Mat resized;
  cv::resize(bgr, resized, cv::Size(), scale, scale, cv::INTER_AREA);
  int h = static_cast<int>(meta.input_size[0]), w = static_cast<int>(meta.input_size[1]);
  cv::Mat crop = resized(cv::Rect((resized.cols - w) / 2, (resized.rows - h) / 2, w, h)).clone();
  cv::cvtColor(crop, crop, cv::COLOR_BGR2RGB);
  auto t = torch::from_blob(crop.data, {h, w, 3}, torch::kUInt8).permute({2, 0, 1}).to(torch::kFloat).div(255.0);
  auto mean = torch::tensor({meta.mean[0], meta.mean[1], meta.mean[2]}, torch::kFloat).view({3, 1, 1});
  auto std = torch::tensor({meta.std[0], meta.std[1], meta.std[2]}, torch::kFloat).view({3, 1, 1});
  return ((t - mean) / std).unsqueeze(0).contiguous();
}

}  // namespace

TEST_P(ExportedArch, MetadataRoundTripsAndForwardMatchesIt) {
  const std::string arch = GetParam();
  ASSERT_TRUE(fs::exists(exported(arch + ".pt"))) << "run through ctest: the export_backbones fixture makes it";
  auto bb = model::load_backbone(exported(arch + ".pt"));
  // What Python embedded is exactly what C++ reads.
  std::ifstream side(exported(arch + ".meta.json"));
  auto written = config::json::parse(side);
  EXPECT_EQ(bb.meta.raw, written);
  EXPECT_EQ(bb.meta.arch, arch);
  EXPECT_EQ(bb.meta.weights_source, "none");
  EXPECT_FALSE(bb.meta.torch_version.empty());
  EXPECT_FALSE(bb.meta.exported_at.empty());

  torch::NoGradGuard no_grad;
  auto x = torch::randn({1, 3, bb.meta.input_size[0], bb.meta.input_size[1]});
  auto y = bb.module.forward({x}).toTensor();
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({1, bb.meta.feature_channels, bb.meta.feature_size[0], bb.meta.feature_size[1]}));

  auto report = model::inspect_backbone(exported(arch + ".pt"));
  EXPECT_EQ(report["blocks"].size(), bb.meta.blocks.size());
  EXPECT_EQ(report["blocks"][0]["name"], bb.meta.blocks.front().name);
}

INSTANTIATE_TEST_SUITE_P(Exported, ExportedArch, ::testing::Values("mobilenet_v2", "efficientnet_b0", "resnet50", "vgg16"));

TEST(ExportedBlocks, EachArchitectureHasTheDocumentedBlocks) {
  struct Expect {
    const char* arch;
    size_t blocks;
    const char* first;
    const char* last;
  };
  for (auto e : {Expect{"mobilenet_v2", 19, "features.0", "features.18"}, Expect{"efficientnet_b0", 18, "features.0", "features.8"},
                 Expect{"resnet50", 17, "stem", "layer4.2"}, Expect{"vgg16", 13, "features.0", "features.28"}}) {
    auto meta = model::read_backbone_meta(exported(std::string(e.arch) + ".pt"));
    EXPECT_EQ(meta.blocks.size(), e.blocks) << e.arch;
    EXPECT_EQ(meta.blocks.front().name, e.first) << e.arch;
    EXPECT_EQ(meta.blocks.back().name, e.last) << e.arch;
  }
}

TEST(ExportedImagenet, SharedMobileNetV2PutsBeeInTop5) {
  if (test::shared_dir().empty()) GTEST_SKIP() << "../shared is absent: no ImageNet weights to check";
  auto bb = model::load_backbone(exported("mobilenet_v2_imagenet.pt"));
  EXPECT_EQ(bb.meta.weights_source, "file");
  EXPECT_EQ(bb.meta.weights_file, "mobilenet_v2_imagenet.pth");
  EXPECT_EQ(bb.meta.weights_sha256.size(), 64u);
  auto classifier = torch::jit::load(exported("mobilenet_v2_classifier.pt"));
  classifier.eval();
  torch::NoGradGuard no_grad;
  const int64_t kBee = 309, kAnt = 310;  // ImageNet indices of "bee" and "ant"
  for (const char* name : {"10870992_eebeeb3a12.jpg", "1181173278_23c36fac71.jpg"}) {
    auto x = imagenet_input(test::shared_dir() + "/data/hymenoptera/val/bees/" + name, bb.meta);
    auto features = bb.module.forward({x}).toTensor();
    auto logits = classifier.forward({features.mean({2, 3})}).toTensor();
    auto top5 = std::get<1>(logits.topk(5, 1)).squeeze(0);
    bool has_bee = (top5 == kBee).any().item<bool>();
    EXPECT_TRUE(has_bee) << name << " top-5: " << top5;
    EXPECT_NE(top5[0].item<int64_t>(), kAnt) << name;
  }
}

TEST(ExportedClassifier, ModesFollowTheFreezePlanInsideNestedContainers) {
  // MobileNetV2's blocks live inside the `features` container: modes must be set per module.
  auto bb = model::load_backbone(exported("mobilenet_v2.pt"));
  model::Classifier m(bb, config::HeadConfig{}, 2, torch::kCPU);
  m.set_trainable(model::block_cut(m.meta(), 15));  // features.15 … features.18
  auto bn_training = [&](const std::string& name) {
    for (const auto& mod : m.backbone_module().named_modules())
      if (mod.name == name) return mod.value.is_training();
    ADD_FAILURE() << "no module " << name;
    return false;
  };
  m.set_training(true, config::BatchNormPolicy::Train);
  EXPECT_TRUE(bn_training("features.18.1"));        // BN of a trainable block trains
  EXPECT_TRUE(bn_training("features.15.conv.0.1"));
  EXPECT_FALSE(bn_training("features.14.conv.0.1"));  // frozen block: inference mode
  EXPECT_FALSE(bn_training("features.0.1"));
  m.set_training(true, config::BatchNormPolicy::Frozen);
  EXPECT_FALSE(bn_training("features.18.1"));
  m.set_training(false, config::BatchNormPolicy::Train);
  EXPECT_FALSE(bn_training("features.18.1"));
}

TEST(ExportedConfigs, EveryShippedConfigPlansAgainstItsArchitecture) {
  // Block names in configs ("features.24", "layer4.0") must exist in the architecture they name.
  int checked = 0;
  for (const auto& e : fs::recursive_directory_iterator(std::string(TLTRAIN_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".json") continue;
    auto cfg = config::load_run_config(e.path().string());
    std::string arch;
    for (const char* a : {"mobilenet_v2", "efficientnet_b0", "resnet50", "vgg16"})
      if (cfg.model.backbone.find(a) != std::string::npos) arch = a;
    ASSERT_FALSE(arch.empty()) << e.path() << ": no known architecture in " << cfg.model.backbone;
    auto meta = model::read_backbone_meta(exported(arch + ".pt"));
    EXPECT_NO_THROW(train::plan_stages(cfg, meta, 5, meta.feature_channels)) << e.path();
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

// A random-init backbone with inference-mode BatchNorm gives every image the same features
// (measured: ~1e-9 everywhere for MobileNetV2): the feature cache and the first validation stop
// the stage with the cause and the fix instead of training epochs on constants; the from-scratch
// recipe (everything trainable, BatchNorm training) is not stopped.
TEST(ExportedGuard, ConstantFeaturesStopTheStageWithTheFix) {
  const std::string bb = exported("mobilenet_v2.pt");
  ASSERT_TRUE(fs::exists(bb)) << "run through ctest: the export_backbones fixture makes it";
  test::TempDir dir("guard");
  test::write_color_dataset(dir / "train", {"green", "red"}, 8, 32);
  test::write_color_dataset(dir / "val", {"green", "red"}, 4, 32);
  auto run = [&](const config::json& stage, const std::string& out) {
    config::json j = {{"seed", 1}, {"device", "cpu"},
                      {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"image_size", 32}, {"resize", 32}, {"batch_size", 8}}},
                      {"model", {{"backbone", bb}}}, {"output_dir", dir / out}, {"stages", config::json::array({stage})}};
    return train::fit(config::parse_run_config(j, "guard.json"));
  };
  auto expect_stopped = [&](const config::json& stage, const std::string& out, const std::string& what) {
    try {
      run(stage, out);
      ADD_FAILURE() << out << ": trained on constant features";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data);
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--weights imagenet"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("\"batch_norm\": \"train\""), std::string::npos) << e.what();
    }
  };
  expect_stopped({{"trainable", "head"}, {"epochs", 2}}, "cache", "features are the same for every image");
  expect_stopped({{"trainable", "all"}, {"epochs", 2}, {"optimizer", {{"name", "sgd"}, {"lr", 0.01}}}}, "first-val",
                 "outputs are the same for every validation image");
  // Two steps of BN training leave the running statistics near their init, so eval-mode outputs
  // are still nearly constant: not a verdict while they train.
  auto ok = run({{"trainable", "all"}, {"batch_norm", "train"}, {"epochs", 1}}, "scratch");
  EXPECT_EQ(ok.history.size(), 1u);
}

// Every architecture in docs/backbones.md: it loads, inspects, trains one step end to end and
// exports a model that the export's own self-check compares with the checkpoint. The fixture
// exports all but the nine giants; each giant test exports its own and removes the files as it
// goes (the largest are 2.5 GB a copy; all nine at once need 10 GB). The lists are written out
// because ctest lists tests before the fixture runs; EveryArchList checks the fixture's files.
namespace {

const std::vector<std::string>& fixture_archs() {
  static const std::vector<std::string> archs{
      "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_64x4d", "resnext101_32x8d",
      "wide_resnet50_2", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "mobilenet_v2",
      "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
      "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m",
      "inception_v3", "googlenet", "densenet121", "densenet169", "densenet201", "densenet161", "regnet_x_400mf",
      "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf", "regnet_y_400mf", "regnet_y_800mf",
      "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "convnext_tiny", "convnext_small", "convnext_base",
      "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "mnasnet0_5", "mnasnet0_75",
      "mnasnet1_0", "mnasnet1_3", "vit_b_16", "vit_b_32", "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b",
      "maxvit_t", "alexnet", "squeezenet1_1", "squeezenet1_0"};
  return archs;
}

// tests/export_fixture.sh leaves these out (its `giants`).
const std::vector<std::string>& giant_archs() {
  static const std::vector<std::string> archs{"regnet_x_32gf", "regnet_y_32gf", "regnet_y_128gf", "wide_resnet101_2",
                                              "efficientnet_v2_l", "convnext_large", "vit_l_16", "vit_l_32", "vit_h_14"};
  return archs;
}

/// The smallest input the test trains at: transformers need the size their position embeddings
/// (ViT) or windows (MaxViT) were exported for; Inception V3 needs 75 pixels; the rest run at 64.
int64_t step_size(const model::BackboneMeta& meta) {
  if (meta.arch.rfind("vit", 0) == 0 || meta.arch.rfind("maxvit", 0) == 0) return meta.input_size[0];
  return meta.arch == "inception_v3" ? 96 : 64;
}

/// The check itself on backbone FILE of ARCH, in DIR. With DROP_FILES the backbone and best.pt
/// are removed once the run no longer needs them (the checkpoint carries the backbone).
void loads_inspects_trains_a_step_and_exports(const std::string& file, const std::string& arch, const test::TempDir& dir,
                                              bool drop_files) {
  const auto report = model::inspect_backbone(file);
  EXPECT_EQ(report["metadata"]["arch"], arch);
  ASSERT_GT(report["layers"].size(), report["blocks"].size()) << "the exporter lists the layers";
  EXPECT_FALSE(report["layers"][0]["output_shape"].is_null()) << "with their output shapes";
  EXPECT_FALSE(model::format_inspect(report, true).empty());

  test::write_color_dataset(dir / "train", {"a", "b"}, 2);
  const int64_t size = step_size(model::read_backbone_meta(file));
  config::json cfg = {{"seed", 1}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 1}}}, {"monitor", "loss"},
                      {"data", {{"train", dir / "train"}, {"batch_size", 4}, {"image_size", {size, size}}, {"resize", size}}},
                      {"model", {{"backbone", file}}},
                      {"output_dir", dir / "run"},
                      {"stages", {{{"epochs", 1}, {"trainable", "all"}, {"feature_cache", false}, {"batch_norm", "train"},
                                   {"optimizer", {{"name", "sgd"}, {"lr", 1e-3}}}}}}};
  // Random weights under inference-mode BatchNorm (running statistics 0 and 1) give huge features
  // in the deepest nets (about 3e7 for resnet152, 7e8 for inception_v3), and one step with them
  // diverges; BatchNorm on batch statistics, as when training from scratch, keeps it finite.
  const auto r = train::fit(config::parse_run_config(cfg, arch + ".json"));
  ASSERT_EQ(r.history.size(), 1u);
  EXPECT_TRUE(std::isfinite(r.history[0]["loss"].get<double>())) << r.history.dump();
  if (drop_files) {
    fs::remove(file);
    fs::remove(dir / "run/checkpoints/best.pt");
  }
  ship::ExportOptions xo;
  xo.checkpoint = r.last_checkpoint;
  xo.out = dir / "model.pt";
  const auto summary = ship::export_model(xo);
  EXPECT_LE(summary.check_max_abs_diff, xo.check_tolerance);
  // The model resizes as torchvision's eval transform for these weights does (bicubic for EfficientNet).
  EXPECT_EQ(config::name_of(checkpoint::load_model_file(xo.out).info.preprocess.interpolation),
            report["metadata"].value("interpolation", "bilinear"));
}

class EveryArch : public ::testing::TestWithParam<std::string> {};
class EveryGiant : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST(ExportedEveryArchList, IsTheFixturesArchitectures) {
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(TLTRAIN_EXPORT_DIR)) {
    const std::string name = e.path().filename().string();
    const std::string tail = ".meta.json";
    if (name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0)
      files.insert(name.substr(0, name.size() - tail.size()));
  }
  EXPECT_EQ(files, std::set<std::string>(fixture_archs().begin(), fixture_archs().end()));
  // The giants the fixture leaves out are exactly the ones EveryGiant exports itself.
  std::ifstream script(std::string(TLTRAIN_SOURCE_DIR) + "/tests/export_fixture.sh");
  std::string line, giants;
  while (std::getline(script, line))
    if (line.rfind("giants=", 0) == 0) giants = line.substr(7);
  std::string expected;
  for (const auto& arch : giant_archs()) expected += (expected.empty() ? "" : ",") + arch;
  EXPECT_EQ(giants, expected) << "tests/export_fixture.sh's giants";
}

TEST_P(EveryArch, LoadsInspectsTrainsAStepAndExports) {
  const std::string arch = GetParam();
  const std::string file = exported(arch + ".pt");
  ASSERT_TRUE(fs::exists(file)) << "run through ctest: the export_backbones fixture makes it";
  test::TempDir dir("every_" + arch);
  loads_inspects_trains_a_step_and_exports(file, arch, dir, false);
}

INSTANTIATE_TEST_SUITE_P(Exported, EveryArch, ::testing::ValuesIn(fixture_archs()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ctest runs these one at a time (RESOURCE_LOCK): regnet_y_128gf's step needs 8 GB of memory.
TEST_P(EveryGiant, ExportsLoadsInspectsTrainsAStepAndExports) {
  const std::string arch = GetParam();
  test::TempDir dir("giant_" + arch);
  const std::string file = dir / (arch + ".pt");
  const auto made = test::run_command("/usr/bin/python3 " + std::string(TLTRAIN_SOURCE_DIR) + "/scripts/export_backbone.py --arch " +
                                      arch + " --weights none --out " + file);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  loads_inspects_trains_a_step_and_exports(file, arch, dir, true);
}

INSTANTIATE_TEST_SUITE_P(Giant, EveryGiant, ::testing::ValuesIn(giant_archs()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// Issue 13's checks on real data: ants vs bees with the shared ImageNet MobileNetV2.
namespace {

config::json hymenoptera_run(const std::string& out, const config::json& model, const config::json& stages) {
  const std::string data = test::shared_dir() + "/data/hymenoptera";
  return {{"seed", 3}, {"device", "cpu"}, {"threads", {{"intra_op", 2}, {"loader", 2}}},
          {"data", {{"train", data + "/train"}, {"val", data + "/val"}, {"batch_size", 32}}},
          {"model", model}, {"output_dir", out}, {"stages", stages}};
}

}  // namespace

TEST(ExportedImagenet, ALayersStageOnHymenopteraTrainsExactlyTheLayersInspectLists) {
  if (test::shared_dir().empty()) GTEST_SKIP() << "../shared is absent: no ImageNet weights or hymenoptera";
  const std::string file = exported("mobilenet_v2_imagenet.pt");
  test::TempDir dir("hym_layers");
  const int64_t n = 20;  // features.16.conv.3 onwards: part of a block, as Keras counts
  const auto cfg = hymenoptera_run(dir / "run", {{"backbone", file}},
                                   {{{"epochs", 1}, {"trainable", {{"layers", n}}}, {"optimizer", {{"name", "sgd"}, {"lr", 1e-3}, {"momentum", 0.9}}}}});
  const auto r = train::fit(config::parse_run_config(cfg, "hymenoptera_layers.json"));
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.85) << r.history.dump(1);
  const config::json report = model::inspect_backbone(file);
  std::set<std::string> listed;
  for (const auto& l : report["layers"])
    if (l["unfreeze_layers"].get<int64_t>() <= n && l["params"].get<int64_t>() > 0) listed.insert(l["name"].get<std::string>());
  auto before = model::load_backbone(file);
  auto after = checkpoint::load(r.last_checkpoint);
  std::map<std::string, torch::Tensor> trained;
  for (const auto& p : after.backbone.module.named_parameters(true)) trained[p.name] = p.value;
  std::set<std::string> changed;
  for (const auto& p : before.module.named_parameters(true))
    if (!torch::equal(p.value, trained.at(p.name))) changed.insert(p.name.substr(0, p.name.rfind('.')));
  EXPECT_EQ(changed, listed) << "the layers whose weights moved are the ones inspect lists for --unfreeze-layers " << n;
}

TEST(ExportedImagenet, FeaturesFromAnInnerBlockTrainsAndExportsOnHymenoptera) {
  if (test::shared_dir().empty()) GTEST_SKIP() << "../shared is absent: no ImageNet weights or hymenoptera";
  test::TempDir dir("hym_features_from");
  const auto cfg = hymenoptera_run(dir / "run", {{"backbone", exported("mobilenet_v2_imagenet.pt")}, {"features_from", "features.13"}},
                                   {{{"epochs", 40}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}}}});
  const auto r = train::fit(config::parse_run_config(cfg, "hymenoptera_features_from.json"));  // cached: 40 epochs in a second
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.8) << r.history.dump(1);
  auto ck = checkpoint::load(r.last_checkpoint);
  EXPECT_EQ(ck.backbone.meta.feature_channels, 96) << "features.13's output";
  ship::ExportOptions xo;
  xo.checkpoint = r.last_checkpoint;
  xo.out = dir / "model.pt";
  EXPECT_EQ(ship::export_model(xo).metadata["backbone"]["features_from"], "features.13");
  const auto cli = test::run_tltrain("predict --topk 1 --format csv --model " + xo.out + " " + test::shared_dir() +
                                     "/data/hymenoptera/val/bees/10870992_eebeeb3a12.jpg");
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find(",1,bees,"), std::string::npos) << cli.output;
}
