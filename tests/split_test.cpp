// Stages that train only the top blocks run the frozen bottom as an optimized copy
// (Classifier::optimize_frozen_blocks): the logits and the top blocks' gradients must be those of
// the model run as saved, on the tiny backbone and on every exported architecture.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/model/backbone.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/inference.h"
#include "tltrain/model/split.h"
#include "tltrain/train/feature_cache.h"

using namespace tltrain;

namespace {

/// Max |a - b| relative to max(1, max |b|).
double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1.0, b.abs().max().item<double>());
}

/// Two classifiers on PATH, one optimized: the same logits in inference mode and the same
/// gradients for every trainable parameter after one training forward/backward.
void expect_same_numbers(const std::string& path, size_t cut, const std::vector<int64_t>& shape) {
  std::vector<std::unique_ptr<model::Classifier>> ms;
  for (int i = 0; i < 2; ++i) {
    torch::manual_seed(3);  // the same head
    ms.push_back(std::make_unique<model::Classifier>(model::load_backbone(path), config::HeadConfig{}, 3, torch::kCPU));
    ms.back()->set_trainable(model::block_cut(ms.back()->meta(), cut));
  }
  model::Classifier &plain = *ms[0], &fast = *ms[1];
  ASSERT_EQ(fast.optimize_frozen_blocks(shape), "") << path;
  ASSERT_TRUE(fast.frozen_blocks_optimized());
  ASSERT_FALSE(plain.frozen_blocks_optimized());

  torch::manual_seed(4);
  auto x = torch::randn(shape), y = torch::randint(0, 3, {shape[0]}, torch::kLong);
  {
    torch::NoGradGuard no_grad;
    plain.set_training(false, config::BatchNormPolicy::Frozen);
    fast.set_training(false, config::BatchNormPolicy::Frozen);
    EXPECT_LT(rel_diff(fast.forward(x), plain.forward(x)), 1e-4) << path;
  }
  for (auto* m : {&plain, &fast}) {
    m->set_training(true, config::BatchNormPolicy::Frozen);
    torch::manual_seed(5);  // stochastic depth / dropout draw alike
    torch::nn::functional::cross_entropy(m->forward(x), y).backward();
  }
  auto pg = plain.trainable_backbone_parameters(), fg = fast.trainable_backbone_parameters();
  ASSERT_EQ(pg.size(), fg.size());
  ASSERT_FALSE(pg.empty());
  for (size_t i = 0; i < pg.size(); ++i) {
    ASSERT_TRUE(fg[i].grad().defined()) << path << " parameter " << i << " got no gradient";
    EXPECT_LT(rel_diff(fg[i].grad(), pg[i].grad()), 1e-4) << path << " parameter " << i;
  }
  // Frozen parameters get none, and the copy goes away when the weights are replaced.
  for (const auto& p : fast.backbone_module().parameters())
    if (!p.requires_grad()) EXPECT_FALSE(p.grad().defined());
  fast.load_state(plain.state(), "the plain model");
  EXPECT_FALSE(fast.frozen_blocks_optimized());
}

}  // namespace

TEST(SplitBackbone, TinyBackboneTrainsTheSameWithAnOptimizedBottom) {
  for (size_t cut : {1u, 2u, 3u}) expect_same_numbers(test::tiny_backbone(), cut, {4, 3, 32, 32});
}

TEST(SplitBackbone, CutsOnlyAtABlockBoundaryOfAChain) {
  auto bb = model::load_backbone(test::tiny_backbone());
  std::string why;
  auto s = model::split_backbone(bb.module, bb.meta, 2, {1, 3, 32, 32}, &why);
  ASSERT_TRUE(s.has_value()) << why;
  EXPECT_EQ(s->bottom.named_children().size(), 2u);
  EXPECT_EQ(s->top.named_children().size(), 2u);
  EXPECT_FALSE(model::split_backbone(bb.module, bb.meta, 0, {1, 3, 32, 32}, &why).has_value());
  EXPECT_FALSE(model::split_backbone(bb.module, bb.meta, 4, {1, 3, 32, 32}, &why).has_value());

  // A forward that is not its children one after another (here a skip connection) is refused.
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module skip(c10::QualifiedName("__torch__.test.Skip"), cu, true);
  skip.register_attribute("training", c10::BoolType::get(), false);
  for (int i = 0; i < 4; ++i) skip.register_module("block" + std::to_string(i), bb.module.attr("block" + std::to_string(i)).toModule());
  skip.define(R"(
def forward(self, x):
    y = self.block1.forward(self.block0.forward(x))
    return self.block3.forward(self.block2.forward(y) + 1.0)
)");
  EXPECT_FALSE(model::split_backbone(skip, bb.meta, 2, {1, 3, 32, 32}, &why).has_value());
  EXPECT_NE(why.find("not a chain"), std::string::npos) << why;
}

// Validation keeps the frozen blocks' outputs between epochs in the rows FrozenInputs::storage
// makes (a run: under its feature-cache budget, spilling to a mapped file): asked once, for every
// image, and the later calls' logits are those of the blocks run again.
TEST(SplitBackbone, PredictKeepsTheFrozenOutputsInTheStorageItIsGiven) {
  test::TempDir dir("keep");
  test::write_color_dataset(dir / "val", {"a", "b"}, 5, 32);
  torch::manual_seed(3);
  model::Classifier m(model::load_backbone(test::tiny_backbone()), config::HeadConfig{}, 2, torch::kCPU);
  m.set_trainable(model::block_cut(m.meta(), 2));
  ASSERT_EQ(m.optimize_frozen_blocks({4, 3, 32, 32}), "");
  config::DataConfig dc;
  dc.image_size = std::array<int64_t, 2>{32, 32};
  data::LoaderOptions lo;
  lo.batch_size = 4;  // 10 images: batches of 4, 4, 2
  lo.threads = 1;
  data::Loader loader(data::scan_source(dir / "val").samples, data::resolve_preprocess(dc, m.meta().image_spec()),
                      config::AugmentConfig{}, data::Mode::Eval, lo);
  const auto first = model::predict(m, loader, 2);
  ASSERT_EQ(first.logits.size(0), 10);
  const int64_t cols = m.frozen_features(torch::zeros({1, 3, 32, 32})).numel();

  int asked = 0;
  train::CacheMemory spill{1, dir / "spill"};  // a 1-byte budget: the rows live in a mapped file
  model::FrozenInputs keep;
  keep.storage = [&](int64_t rows, int64_t c) {
    ++asked;
    EXPECT_EQ(rows, 10);
    EXPECT_EQ(c, cols);
    return train::cache_rows(rows, c, torch::kCPU, spill, "test's frozen activations");
  };
  for (int call = 0; call < 3; ++call) {
    auto p = model::predict(m, loader, 2, 0, &keep);
    EXPECT_TRUE(torch::allclose(p.logits, first.logits, 1e-5, 1e-6)) << "call " << call;
    EXPECT_EQ(p.indices, first.indices);
  }
  EXPECT_EQ(asked, 1);
  ASSERT_TRUE(keep.complete);
  EXPECT_EQ(keep.used, 10);
  const auto* begin = static_cast<const char*>(keep.rows.data_ptr());
  int64_t images = 0;
  for (const auto& c : keep.chunks()) {  // as many chunks as the side-by-side workers cut
    const auto* at = static_cast<const char*>(c.data_ptr());
    EXPECT_TRUE(at >= begin && at + c.nbytes() <= begin + keep.rows.nbytes()) << "a kept chunk is not in the storage's rows";
    images += c.size(0);
  }
  EXPECT_EQ(images, 10);
  keep.clear();
  EXPECT_FALSE(keep.rows.defined());
  EXPECT_TRUE(keep.chunks().empty());
  EXPECT_TRUE(keep.storage) << "clearing keeps the storage";

  // A storage that declines (a GPU over its budget) keeps nothing; the blocks run again.
  model::FrozenInputs none;
  none.storage = [](int64_t, int64_t) { return torch::Tensor(); };
  for (int call = 0; call < 2; ++call) {
    auto p = model::predict(m, loader, 2, 0, &none);
    EXPECT_TRUE(torch::allclose(p.logits, first.logits, 1e-5, 1e-6)) << "call " << call;
    EXPECT_FALSE(none.complete);
    EXPECT_FALSE(none.rows.defined());
  }
}

class ExportedSplit : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportedSplit, TopBlocksTrainTheSameWithAnOptimizedBottom) {
  const std::string path = std::string(TLTRAIN_EXPORT_DIR) + "/" + GetParam() + ".pt";
  auto meta = model::read_backbone_meta(path);
  // The top 20% (the shipped configs' fine-tuning stage) and a cut low in the network.
  const size_t n = meta.blocks.size();
  for (size_t cut : {n - (n + 4) / 5, size_t{2}}) expect_same_numbers(path, cut, {2, 3, 64, 64});
}

INSTANTIATE_TEST_SUITE_P(Exported, ExportedSplit, ::testing::Values("mobilenet_v2", "efficientnet_b0", "resnet50", "vgg16"));
