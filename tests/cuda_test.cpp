// CUDA checks (scripts/gpu_check.sh runs them on a GPU machine; without CUDA each skips with a
// message): a training step on CUDA equals the CPU step, fp16 with loss scaling trains, and a
// whole fp16 run on the squares reaches the CPU run's accuracy, and batches copied on the side stream
// (pinned memory, non-blocking) arrive intact while the GPU computes.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>

#include "test_util.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/device_batches.h"
#include "tltrain/data/loader.h"
#include "tltrain/train/objective.h"
#include "tltrain/train/precision.h"
#include "tltrain/train/step.h"
#include "tltrain/train/trainer.h"

using namespace tltrain;
using config::json;

namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA here (this LibTorch has none, or no GPU is visible): scripts/gpu_check.sh runs this on a GPU machine"

/// A small conv net and a batch, seeded: the same weights on any device.
struct Net {
  torch::nn::Sequential seq{nullptr};
  torch::Tensor x, y;
  explicit Net(const torch::Device& d) {
    torch::manual_seed(11);
    seq = torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)), torch::nn::ReLU6(),
                                torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(8, 3));
    x = torch::randn({16, 3, 12, 12});
    y = torch::randint(0, 3, {16}, torch::kLong);
    seq->to(d);
    x = x.to(d);
    y = y.to(d);
  }
};

}  // namespace

TEST(Cuda, AStepOnCudaEqualsTheCpuStep) {
  SKIP_WITHOUT_CUDA();
  train::CrossEntropy ce(torch::Tensor(), 0.0);
  std::vector<torch::Tensor> after;
  for (const torch::Device d : {torch::Device(torch::kCPU), torch::Device(torch::kCUDA)}) {
    Net n(d);
    torch::optim::SGD opt(n.seq->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    for (int i = 0; i < 3; ++i) train::gradient_step([&](const torch::Tensor& t) { return n.seq->forward(t); }, n.x, n.y, opt, ce, {4});
    after.push_back(torch::cat({n.seq->parameters()[0].flatten(), n.seq->parameters().back().flatten()}).to(torch::kCPU));
  }
  EXPECT_LT((after[0] - after[1]).abs().max().item<double>(), 1e-4);
}

TEST(Cuda, Fp16WithLossScalingTrains) {
  SKIP_WITHOUT_CUDA();
  Net n(torch::kCUDA);
  train::CrossEntropy ce(torch::Tensor(), 0.0);
  torch::optim::Adam opt(n.seq->parameters(), torch::optim::AdamOptions(0.01));
  config::LossScaleConfig ls;
  ls.mode = config::LossScaleConfig::Mode::On;
  ls.growth_interval = 5;
  train::LossScaler scaler(ls, torch::kCUDA);
  const auto fwd = train::autocast_forward([&](const torch::Tensor& t) { return n.seq->forward(t); }, config::Precision::Fp16, torch::kCUDA);
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    auto s = train::gradient_step(fwd, n.x, n.y, opt, ce, {0, nullptr, {}, &scaler});
    if (i == 0) first = s.loss_sum / s.weight_sum;
    last = s.loss_sum / s.weight_sum;
  }
  EXPECT_LT(last, 0.5 * first) << "fp16 training did not bring the loss down";
  EXPECT_TRUE(std::isfinite(scaler.value()) && scaler.value() >= 1.0) << scaler.value();
}

TEST(Cuda, Fp16RunOnTheSquaresMatchesTheCpuRun) {
  SKIP_WITHOUT_CUDA();
  test::TempDir dir("cuda");
  test::write_color_dataset(dir / "train", {"green", "red"}, 16);
  test::write_color_dataset(dir / "val", {"green", "red"}, 6);
  json cfg = {{"seed", 3},
              {"device", "cuda"},
              {"precision", "fp16"},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}},
              {"output_dir", dir / "run"},
              {"stages", json::array({{{"epochs", 3}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.02}}}},
                                      {{"epochs", 2}, {"trainable", "all"}, {"optimizer", {{"name", "sgd"}, {"lr", 0.01}}}}})}};
  auto r = train::fit(config::parse_run_config(cfg, "cuda.json"));
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.95) << r.history.dump();
  EXPECT_TRUE(r.history.back().contains("loss_scale")) << "fp16 ran without loss scaling";
}

TEST(Cuda, BatchesCopiedBesideComputeArriveIntact) {
  SKIP_WITHOUT_CUDA();
  test::TempDir dir("cuda");
  test::write_color_dataset(dir / "root", {"a", "b"}, 12, 24);
  const auto samples = data::scan_source(dir / "root").samples;
  data::Preprocess pre;
  pre.height = pre.width = 16;
  pre.resize = 18;
  config::AugmentConfig aug;
  aug.horizontal_flip = true;
  data::LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = true;
  o.seed = 2;
  o.pin_memory = true;
  data::Loader host(samples, pre, aug, data::Mode::Train, o), pinned(samples, pre, aug, data::Mode::Train, o);
  host.start_epoch(0);
  pinned.start_epoch(0);
  data::DeviceBatches batches(pinned, torch::Device(torch::kCUDA, 0));
  EXPECT_TRUE(batches.overlapping());
  int64_t n = 0;
  while (auto b = batches.next()) {
    auto want = host.next();
    ASSERT_TRUE(want.has_value());
    EXPECT_TRUE(b->images.is_cuda());
    // Work on the compute stream while the next batch copies: the values must still be this batch's.
    auto busy = torch::matmul(torch::randn({1024, 1024}, b->images.options()), torch::randn({1024, 1024}, b->images.options()));
    EXPECT_TRUE(torch::equal(b->images.cpu(), want->images)) << "batch " << n;
    EXPECT_TRUE(torch::equal(b->labels.cpu(), want->labels));
    EXPECT_GT(busy.abs().sum().item<double>(), 0);
    ++n;
  }
  EXPECT_FALSE(host.next().has_value());
  EXPECT_EQ(n, 5) << "24 images in batches of 5";
}
