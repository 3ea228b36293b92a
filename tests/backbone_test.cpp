// Backbone files: the tiny backbone's round trip, each kind of bad file, and freeze cut points.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/model/backbone.h"
#include "tltrain/model/freeze_plan.h"
#include "tltrain/model/inspect.h"

using namespace tltrain;

namespace {

/// The Data error message that loading PATH raises.
std::string load_error(const std::string& path) {
  try {
    model::load_backbone(path);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    return e.what();
  }
  ADD_FAILURE() << "loaded " << path;
  return "";
}

/// Metadata with BLOCKS and one layer per block, as metadata without a layer list reads.
model::BackboneMeta meta_of(const std::vector<model::BlockInfo>& blocks) {
  model::BackboneMeta m;
  m.blocks = blocks;
  for (size_t i = 0; i < blocks.size(); ++i)
    m.layers.push_back({blocks[i].name, "block", blocks[i].params, blocks[i].batchnorms > 0, {}, static_cast<int>(i)});
  return m;
}

config::TrainableSpec spec_fraction(double f) {
  config::TrainableSpec s;
  s.kind = config::TrainableSpec::Kind::Fraction;
  s.fraction = f;
  return s;
}

}  // namespace

TEST(Backbone, TinyRoundTripsMetadataAndRunsForward) {
  auto bb = model::load_backbone(test::tiny_backbone());
  EXPECT_EQ(bb.meta.arch, "tiny");
  ASSERT_EQ(bb.meta.blocks.size(), 4u);
  EXPECT_EQ(bb.meta.blocks[0].name, "block0");
  EXPECT_EQ(bb.meta.blocks[3].batchnorms, 1);
  int64_t params = 0;
  for (const auto& p : bb.module.parameters()) params += p.numel();
  EXPECT_EQ(params, bb.meta.total_params());
  torch::NoGradGuard no_grad;
  auto y = bb.module.forward({torch::randn({2, 3, 32, 32})}).toTensor();
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, bb.meta.feature_channels, bb.meta.feature_size[0], bb.meta.feature_size[1]}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  int bns = 0;
  for (const auto& m : bb.module.modules()) bns += model::is_batchnorm(m);
  EXPECT_EQ(bns, 4);
}

TEST(Backbone, TinyIsDeterministicPerSeed) {
  test::TempDir dir;
  model::write_tiny_backbone(dir / "a.pt", 7);
  model::write_tiny_backbone(dir / "b.pt", 7);
  model::write_tiny_backbone(dir / "c.pt", 8);
  auto a = model::load_backbone(dir / "a.pt"), b = model::load_backbone(dir / "b.pt"), c = model::load_backbone(dir / "c.pt");
  auto wa = a.module.attr("block0").toModule().attr("conv").toModule().attr("weight").toTensor();
  auto wb = b.module.attr("block0").toModule().attr("conv").toModule().attr("weight").toTensor();
  auto wc = c.module.attr("block0").toModule().attr("conv").toModule().attr("weight").toTensor();
  EXPECT_TRUE(torch::equal(wa, wb));
  EXPECT_FALSE(torch::equal(wa, wc));
}

TEST(Backbone, MissingFileNamesTheFileAndTheExporter) {
  std::string msg = load_error("/nonexistent/backbone.pt");
  EXPECT_NE(msg.find("'/nonexistent/backbone.pt' does not exist"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scripts/export_backbone.py"), std::string::npos) << msg;
}

TEST(Backbone, CorruptAndEmptyFilesAreNotTorchScript) {
  test::TempDir dir;
  test::write_text(dir / "empty.pt", "");
  test::write_text(dir / "text.pt", "this is not a model\n");
  EXPECT_NE(load_error(dir / "empty.pt").find("is not a TorchScript file"), std::string::npos);
  EXPECT_NE(load_error(dir / "text.pt").find("is not a TorchScript file"), std::string::npos);
  // A truncated real backbone: the zip directory at its end is gone.
  std::string full;
  {
    std::ifstream in(test::tiny_backbone(), std::ios::binary);
    full.assign(std::istreambuf_iterator<char>(in), {});
  }
  test::write_text(dir / "truncated.pt", full.substr(0, full.size() / 2));
  EXPECT_NE(load_error(dir / "truncated.pt").find("is not a TorchScript file"), std::string::npos);
}

TEST(Backbone, PlainStateDictIsRecognisedAndTheConversionNamed) {
  test::TempDir dir;
  // pickle_save writes Python's torch.save zip layout: data.pkl and tensors, no code/.
  c10::Dict<std::string, at::Tensor> state;
  state.insert("features.0.0.weight", torch::ones({3}));
  std::vector<char> bytes = torch::pickle_save(state);
  test::write_text(dir / "weights.pth", std::string(bytes.begin(), bytes.end()));
  std::string msg = load_error(dir / "weights.pth");
  EXPECT_NE(msg.find("plain PyTorch checkpoint or state dict"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--weights " + (dir / "weights.pth")), std::string::npos) << msg;
}

TEST(Backbone, TorchScriptWithoutMetadataIsRefused) {
  test::TempDir dir;
  auto bb = model::load_backbone(test::tiny_backbone());
  bb.module.save(dir / "nometa.pt");
  std::string msg = load_error(dir / "nometa.pt");
  EXPECT_NE(msg.find("without tltrain metadata"), std::string::npos) << msg;
}

TEST(Backbone, MetadataThatDisagreesWithTheWeightsIsRefused) {
  test::TempDir dir;
  auto bb = model::load_backbone(test::tiny_backbone());
  auto meta = bb.meta.raw;
  meta["blocks"][1]["params"] = 99;
  model::save_backbone(bb.module, meta, dir / "lying.pt");
  std::string msg = load_error(dir / "lying.pt");
  EXPECT_NE(msg.find("block 'block1' has 1184 parameters"), std::string::npos) << msg;

  meta = bb.meta.raw;
  meta["blocks"].erase(3);
  model::save_backbone(bb.module, meta, dir / "missing_block.pt");
  msg = load_error(dir / "missing_block.pt");
  EXPECT_NE(msg.find("belongs to no block"), std::string::npos) << msg;

  meta = bb.meta.raw;
  meta["format_version"] = 7;
  meta.erase("feature_channels");
  model::save_backbone(bb.module, meta, dir / "bad_meta.pt");
  msg = load_error(dir / "bad_meta.pt");
  EXPECT_NE(msg.find("format_version: this tltrain reads version 1, got 7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("feature_channels"), std::string::npos) << msg;
}

TEST(FreezePlan, FractionCountAndNameSelectTopBlocks) {
  std::vector<model::BlockInfo> blocks;
  for (int i = 0; i < 19; ++i) blocks.push_back({"features." + std::to_string(i), 10 * (i + 1), 1});
  const auto meta = meta_of(blocks);
  // ceil(f * 19): 0.2 → 4 blocks (features.15 … 18), 0.1 → 2, 1.0 → all.
  EXPECT_EQ(model::resolve_cut(meta, spec_fraction(0.2)).block, 15u);
  EXPECT_EQ(model::resolve_cut(meta, spec_fraction(0.1)).block, 17u);
  EXPECT_EQ(model::resolve_cut(meta, spec_fraction(1.0)).block, 0u);
  EXPECT_EQ(model::resolve_cut(meta, spec_fraction(0.01)).block, 18u);  // any f > 0 trains a block
  config::TrainableSpec s;
  s.kind = config::TrainableSpec::Kind::Blocks;
  s.blocks = 3;
  EXPECT_EQ(model::resolve_cut(meta, s).block, 16u);
  s.blocks = 0;
  EXPECT_EQ(model::resolve_cut(meta, s).block, 19u);
  s.kind = config::TrainableSpec::Kind::From;
  s.from = "features.14";
  EXPECT_EQ(model::resolve_cut(meta, s).block, 14u);
  s.kind = config::TrainableSpec::Kind::Head;
  EXPECT_EQ(model::resolve_cut(meta, s).block, 19u);
  s.kind = config::TrainableSpec::Kind::All;
  EXPECT_EQ(model::resolve_cut(meta, s).block, 0u);
  EXPECT_EQ(model::trainable_params(meta, model::block_cut(meta, 17)), 180 + 190);
  // Exact tenths must not round up through floating-point noise: 0.2 * 10 blocks = 2.
  const auto ten = meta_of({blocks.begin(), blocks.begin() + 10});
  EXPECT_EQ(model::resolve_cut(ten, spec_fraction(0.2)).block, 8u);
  EXPECT_EQ(model::resolve_cut(ten, spec_fraction(0.3)).block, 7u);
}

TEST(FreezePlan, BadNamesAndCountsAreUsageErrors) {
  const auto blocks = meta_of({{"features.0", 1, 0}, {"features.1", 1, 0}, {"features.14", 1, 0}});
  config::TrainableSpec s;
  s.kind = config::TrainableSpec::Kind::From;
  s.from = "feature.14";
  try {
    model::resolve_cut(blocks, s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("did you mean \"features.14\""), std::string::npos) << e.what();
  }
  s.kind = config::TrainableSpec::Kind::Blocks;
  s.blocks = 4;
  EXPECT_THROW(model::resolve_cut(blocks, s), Error);
}

TEST(Inspect, CutPointsMatchTheFreezePlan) {
  auto r = model::inspect_backbone(test::tiny_backbone());
  ASSERT_EQ(r["blocks"].size(), 4u);
  EXPECT_EQ(r["total_params"], 8424);
  // Tiny has 4 blocks: --unfreeze 0.2 → ceil(0.8) = 1 block (block3), 0.5 → 2 (block2), 0.8 → 4.
  auto at = [&](double f) {
    for (const auto& e : r["unfreeze_fractions"])
      if (std::abs(e["unfreeze"].get<double>() - f) < 1e-9) return e;
    return config::json();
  };
  EXPECT_EQ(at(0.2)["from"], "block3");
  EXPECT_EQ(at(0.5)["from"], "block2");
  EXPECT_EQ(at(0.5)["trainable_params"], 2336 + 4672);
  EXPECT_EQ(at(0.8)["from"], "block0");
  EXPECT_EQ(r["blocks"][1]["unfreeze_blocks"], 3);
  EXPECT_EQ(r["blocks"][1]["trainable_params"], 1184 + 2336 + 4672);
  std::string text = model::format_inspect(r);
  EXPECT_NE(text.find("--unfreeze 0.2  = --unfreeze-blocks 1   = --unfreeze-from block3"), std::string::npos) << text;
}
