// Mixed precision: the autocast guard, bf16 training of ReLU6 nets on LibTorch 1.13's CPU,
// loss scaling (a forced overflow skips the step and halves the scale; a clean scaled step
// equals the unscaled one; growth after growth_interval), bf16 runs that train and a scaled run
// that resumes exactly, and the config's refusals.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/error.h"
#include "tltrain/train/precision.h"
#include "tltrain/train/step.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;
using config::Precision;

namespace {

config::LossScaleConfig scaling(double init, int64_t growth_interval = 2000) {
  config::LossScaleConfig c;
  c.mode = config::LossScaleConfig::Mode::On;
  c.init = init;
  c.growth_interval = growth_interval;
  return c;
}

/// A seeded linear model with SGD, and one batch for it.
struct Toy {
  torch::nn::Linear lin{torch::nn::Linear(4, 3)};
  std::unique_ptr<torch::optim::SGD> opt;
  train::CrossEntropy ce{torch::Tensor(), 0.0};
  torch::Tensor x, y;
  explicit Toy(double input_scale = 1.0) {
    torch::manual_seed(7);
    lin = torch::nn::Linear(4, 3);
    opt = std::make_unique<torch::optim::SGD>(lin->parameters(), torch::optim::SGDOptions(0.1));
    x = torch::randn({6, 4}) * input_scale;
    y = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong);
  }
  train::StepStats step(train::LossScaler* scaler) {
    const auto fwd = [&](const torch::Tensor& t) { return lin->forward(t); };
    return train::gradient_step(fwd, x, y, *opt, ce, {0, nullptr, {}, scaler});
  }
  torch::Tensor weight() const { return lin->weight.detach().clone(); }
};

}  // namespace

TEST(Autocast, GuardComputesInBf16InsideAndRestoresOutside) {
  auto a = torch::randn({4, 4}), b = torch::randn({4, 4});
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  {
    train::Autocast on(Precision::Bf16, torch::kCPU);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      train::Autocast inner(Precision::Bf16, torch::kCPU);
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16) << "the inner guard switched the outer one off";
  }
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  {
    train::Autocast off(Precision::Fp32, torch::kCPU);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  }
}

TEST(Autocast, ForwardReturnsFp32AndStaysCloseToTheFp32Forward) {
  torch::manual_seed(1);
  torch::nn::Linear lin(16, 5);
  auto x = torch::randn({8, 16});
  const train::Forward f = [&](const torch::Tensor& t) { return lin->forward(t); };
  auto low = train::autocast_forward(f, Precision::Bf16, torch::kCPU)(x);
  auto full = f(x);
  EXPECT_EQ(low.scalar_type(), torch::kFloat);
  EXPECT_FALSE(torch::equal(low, full)) << "bf16 autocast computed in fp32";
  EXPECT_LT((low - full).abs().max().item<double>(), 0.05 * full.abs().max().item<double>());
}

TEST(Autocast, Bf16Relu6TrainsWithTheFp32Gradient) {
  // MobileNet's ReLU6 is hardtanh, whose bf16 backward LibTorch 1.13's CPU lacks.
  torch::manual_seed(2);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 3).padding(1));
  auto x = torch::randn({2, 3, 8, 8}) * 3;
  const auto net = [&](const torch::Tensor& t) { return torch::nn::functional::hardtanh(conv->forward(t), torch::nn::functional::HardtanhFuncOptions().min_val(0).max_val(6)); };
  auto loss_low = train::autocast_forward(net, Precision::Bf16, torch::kCPU)(x).square().mean();
  loss_low.backward();
  auto g_low = conv->weight.grad().clone();
  conv->weight.mutable_grad().zero_();
  net(x).square().mean().backward();
  auto g_full = conv->weight.grad().clone();
  EXPECT_LT((g_low - g_full).abs().max().item<double>(), 0.05 * g_full.abs().max().item<double>());
}

TEST(LossScaler, ForcedOverflowSkipsTheStepAndHalvesTheScale) {
  Toy t(1e6);  // gradients ~1e6 × a scale of 1e38 overflow fp32
  train::LossScaler scaler(scaling(1e38), torch::kCPU);
  const auto before = t.weight();
  auto s = t.step(&scaler);
  EXPECT_EQ(s.skipped, 1);
  EXPECT_TRUE(torch::equal(t.weight(), before)) << "an overflowing step changed the weights";
  EXPECT_FLOAT_EQ(static_cast<float>(scaler.value()), 5e37f);
  EXPECT_EQ(scaler.state().good_steps, 0);
  EXPECT_TRUE(std::isfinite(s.loss_sum)) << "the loss itself is finite: only its gradient overflowed";
}

TEST(LossScaler, ACleanScaledStepEqualsTheUnscaledStep) {
  Toy plain, scaled;
  train::LossScaler scaler(scaling(65536), torch::kCPU);
  for (int i = 0; i < 3; ++i) {
    auto a = plain.step(nullptr);
    auto b = scaled.step(&scaler);
    EXPECT_EQ(b.skipped, 0);
    EXPECT_DOUBLE_EQ(a.loss_sum, b.loss_sum);
  }
  // Powers of two scale exactly: the unscaled gradients are the same bits.
  EXPECT_TRUE(torch::allclose(plain.weight(), scaled.weight(), 1e-6, 1e-7));
  EXPECT_FALSE(torch::equal(plain.weight(), Toy().weight())) << "the steps did not move the weights";
}

TEST(LossScaler, GrowsAfterGrowthIntervalCleanStepsAndStaticNeverChanges) {
  Toy t;
  train::LossScaler scaler(scaling(1024, 3), torch::kCPU);
  t.step(&scaler);
  t.step(&scaler);
  EXPECT_EQ(scaler.value(), 1024);
  EXPECT_EQ(scaler.state().good_steps, 2);
  t.step(&scaler);
  EXPECT_EQ(scaler.value(), 2048);
  EXPECT_EQ(scaler.state().good_steps, 0);

  auto fixed = scaling(1e38);
  fixed.dynamic = false;
  Toy big(1e6);
  train::LossScaler still(fixed, torch::kCPU);
  EXPECT_EQ(big.step(&still).skipped, 1);
  EXPECT_FLOAT_EQ(static_cast<float>(still.value()), 1e38f);
}

TEST(LossScaler, ResumesFromItsSavedState) {
  Toy t;
  train::LossScaler scaler(scaling(1024, 3), torch::kCPU, {256, 2});
  EXPECT_EQ(scaler.value(), 256);
  t.step(&scaler);
  EXPECT_EQ(scaler.value(), 512) << "the saved clean steps did not count";
}

namespace {

struct Project {
  test::TempDir dir{"precision"};
  Project() {
    test::write_color_dataset(dir / "train", {"green", "red"}, 16);
    test::write_color_dataset(dir / "val", {"green", "red"}, 6);
  }
  json config(const std::string& out, const json& extra = json::object()) const {
    json stages = json::array({{{"name", "head"}, {"epochs", 2}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.01}}},
                                {"feature_cache", {{"views", 2}}}},
                               {{"name", "tune"}, {"epochs", 3}, {"trainable", {{"fraction", 0.5}}},
                                {"optimizer", {{"name", "sgd"}, {"lr", 0.01}, {"momentum", 0.9}}}}});
    json c = {{"seed", 3},
              {"device", "cpu"},
              {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8},
                        {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}}}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}},
              {"output_dir", dir / out},
              {"stages", stages}};
    c.merge_patch(extra);
    return c;
  }
  std::string write(const json& cfg, const std::string& name) const {
    test::write_text(dir / name, cfg.dump(2));
    return dir / name;
  }
};

}  // namespace

TEST(MixedPrecision, Bf16RunTrainsTheSquaresAndDiffersFromFp32) {
  Project p;
  auto low = train::fit(config::parse_run_config(p.config("bf16", {{"precision", "bf16"}}), "p.json"));
  auto full = train::fit(config::parse_run_config(p.config("fp32"), "p.json"));
  ASSERT_EQ(low.history.size(), 5u);
  EXPECT_GE(low.history.back()["val_accuracy"].get<double>(), 0.95) << low.history.dump();
  EXPECT_LT(low.history.back()["loss"].get<double>(), low.history.front()["loss"].get<double>());
  EXPECT_NE(low.history.back()["loss"], full.history.back()["loss"]) << "precision bf16 trained exactly as fp32";
  EXPECT_FALSE(low.history.back().contains("loss_scale")) << "bf16 needs no loss scaling by default";
}

TEST(MixedPrecision, ScaledRunSkipsOverflowsLogsThemAndResumesExactly) {
  Project p;
  // Inputs ×1000 (a std of 0.001) make gradients of ~1e3 that overflow a scale near fp32's limit;
  // it backs off, grows every 2 clean steps and overflows again: the resumed run must carry the
  // scale and its clean-step count.
  const json scaled = {{"precision", "bf16"},
                       {"loss_scale", {{"enabled", true}, {"init", 3e38}, {"growth_interval", 2}, {"growth_factor", 8}, {"backoff_factor", 0.01}}},
                       {"data", {{"normalization", "dataset"}, {"normalization_stats", {{"mean", {0.5, 0.5, 0.5}}, {"std", {1e-3, 1e-3, 1e-3}}}}}}};
  const std::string a = p.write(p.config("straight", scaled), "a.json");
  const std::string b = p.write(p.config("killed", scaled), "b.json");
  auto straight = test::run_tltrain("fit --config " + a);
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  EXPECT_NE(straight.output.find("steps skipped"), std::string::npos) << straight.output;
  auto killed = test::run_command("TLTRAIN_DEBUG_KILL_AFTER_STEPS=14 " + std::string(TLTRAIN_BIN) + " fit --config " + b);
  ASSERT_EQ(killed.exit_code, 128 + 9) << killed.output;
  auto resumed = test::run_tltrain("fit --resume " + (p.dir / "killed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  auto ha = checkpoint::load(p.dir / "straight/checkpoints/last.pt").info["history"];
  auto hb = checkpoint::load(p.dir / "killed/checkpoints/last.pt").info["history"];
  ASSERT_EQ(ha.size(), 5u);
  ASSERT_EQ(hb.size(), 5u);
  EXPECT_GT(ha[0]["skipped_steps"].get<int64_t>(), 0) << ha.dump();
  EXPECT_LT(ha[0]["loss_scale"].get<double>(), 3e38);
  for (size_t i = 0; i < ha.size(); ++i)
    for (const char* k : {"loss", "val_loss", "val_accuracy", "loss_scale", "skipped_steps"}) EXPECT_EQ(ha[i][k], hb[i][k]) << "epoch " << i << " " << k;
  // Training went on after the skipped steps (the fine-tune at lr 0.01 on ×1000 inputs then
  // diverges, a matter of these inputs, not of the scaler).
  EXPECT_GE(ha[1]["val_accuracy"].get<double>(), 0.95) << ha.dump();
  std::ifstream csv(p.dir / "straight/log.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_NE(header.find("loss_scale,skipped_steps"), std::string::npos) << header;
}

TEST(MixedPrecision, ConfigRefusesFp16OnCpuScalingWithLbfgsAndBadScales) {
  Project p;
  EXPECT_NE(test::config_error(p.config("r", {{"precision", "fp16"}})).find("stages[0].precision"), std::string::npos);
  EXPECT_NE(test::config_error(p.config("r", {{"precision", "fp16"}})).find("bf16"), std::string::npos);
  json lbfgs = p.config("r", {{"loss_scale", true}});
  lbfgs["stages"][0]["optimizer"] = {{"name", "lbfgs"}, {"lr", 1.0}};
  EXPECT_NE(test::config_error(lbfgs).find("lbfgs"), std::string::npos) << test::config_error(lbfgs);
  EXPECT_NE(test::config_error(p.config("r", {{"loss_scale", {{"backoff_factor", 2}}}})).find("loss_scale.backoff_factor"), std::string::npos);
  EXPECT_NE(test::config_error(p.config("r", {{"loss_scale", "yes"}})).find("loss_scale"), std::string::npos);
  EXPECT_NE(test::config_error(p.config("r", {{"precision", "half"}})).find("precision"), std::string::npos);
  // A stage may differ from the run, and a valid config parses.
  json mixed = p.config("r", {{"precision", "bf16"}});
  mixed["stages"][1]["precision"] = "fp32";
  auto c = config::parse_run_config(mixed, "p.json");
  EXPECT_EQ(c.stages[0].precision, Precision::Bf16);
  EXPECT_EQ(c.stages[1].precision, Precision::Fp32);
}
