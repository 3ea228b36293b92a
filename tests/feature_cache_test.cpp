// Inference chunks side by side (concurrently, core/side_by_side.h) and feature caches over their memory
// budget (a memory-mapped file): the same numbers as in turn and in RAM, and what each promises.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "test_util.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/error.h"
#include "tltrain/core/side_by_side.h"
#include "tltrain/model/inference.h"
#include "tltrain/train/feature_cache.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

/// Lines of /proc/self/maps naming a feature cache's spill file.
int spill_mappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find(".feature-cache-") != std::string::npos) ++n;
  return n;
}

/// Restores the intra-op thread count a test changed.
struct Threads {
  int before = torch::get_num_threads();
  explicit Threads(int n) { set_intra_op_threads(n); }
  ~Threads() { set_intra_op_threads(before); }
};

}  // namespace

TEST(Concurrently, ChunksOnTwoThreadsGiveTheRowsOfOneThreadInOrder) {
  torch::jit::Module m = torch::jit::load(test::tiny_backbone());
  m.eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({37, 3, 32, 32}, torch::TensorOptions().dtype(torch::kFloat).device(torch::kCPU));
  torch::Tensor one;
  {
    Threads t(1);
    one = model::in_chunks(x, 8, [&](const torch::Tensor& c) { return m.forward({c}).toTensor(); });
  }
  Threads t(2);
  std::mutex mu;
  std::set<std::thread::id> ran_on;
  std::vector<int> intra;
  bool grad_seen = false;
  const auto two = model::in_chunks(x, 8, [&](const torch::Tensor& c) {
    {
      std::lock_guard<std::mutex> lk(mu);
      ran_on.insert(std::this_thread::get_id());
      intra.push_back(torch::get_num_threads());
      grad_seen = grad_seen || torch::GradMode::is_enabled();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // so that both workers take chunks
    return m.forward({c}).toTensor();
  });
  EXPECT_TRUE(torch::equal(one, two));  // bit for bit: each chunk runs on one thread either way
  EXPECT_EQ(ran_on.size(), 2u);
  for (int n : intra) EXPECT_EQ(n, 1);
  EXPECT_FALSE(grad_seen);                    // the caller's no-grad reached the worker
  EXPECT_EQ(torch::get_num_threads(), 2);     // the caller's own count is back
}

TEST(Concurrently, AChunksErrorReachesTheCallerAndThePoolStillWorks) {
  Threads t(2);
  test::expect_error(
      [] {
        concurrently(6, true, [](int64_t i) -> torch::Tensor {
          if (i == 3) TLTRAIN_FAIL(ErrorKind::Data, "chunk 3 failed");
          return torch::full({1}, static_cast<double>(i));
        });
      },
      ErrorKind::Data, "chunk 3 failed");
  const auto parts = concurrently(5, true, [](int64_t i) { return torch::full({1}, static_cast<double>(i)); });
  ASSERT_EQ(parts.size(), 5u);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(parts[static_cast<size_t>(i)].item<double>(), static_cast<double>(i));
}

TEST(FeatureCacheMemory, OverBudgetTheRowsLiveInAnUnlinkedMappedFileThatGoesWithThem) {
  test::TempDir dir("spill");
  const int before = spill_mappings();
  {
    train::CacheMemory mem{1000, dir.path()};
    const auto small = train::cache_rows(10, 10, torch::kCPU, mem, "test cache");  // 400 bytes: RAM
    EXPECT_EQ(spill_mappings(), before);
    auto big = train::cache_rows(100, 10, torch::kCPU, mem, "test cache");  // 4000 bytes: the file
    EXPECT_EQ(spill_mappings(), before + 1);
    EXPECT_EQ(big.sum().item<double>(), 0.0);  // zeros, as in RAM
    big[7].fill_(2.5);
    EXPECT_EQ(big.sum().item<double>(), 25.0);
    EXPECT_TRUE(fs::is_empty(dir.path()));  // unlinked at once: nothing is left behind, even by a crash
  }
  EXPECT_EQ(spill_mappings(), before);  // unmapped with the tensor
  train::CacheMemory nowhere{0, "/proc/no-such-folder"};
  test::expect_error([&] { train::cache_rows(10, 10, torch::kCPU, nowhere, "test cache"); }, ErrorKind::Runtime,
                     "cannot create the test cache's spill file in '/proc/no-such-folder'");
}

TEST(FeatureCacheMemory, ARunOverItsBudgetTrainsTheSameWeightsAsInRam) {
  test::TempDir dir("spillrun");
  test::write_color_dataset(dir / "train", {"green", "red"}, 12);
  test::write_color_dataset(dir / "val", {"green", "red"}, 4);
  const auto cfg = [&](const std::string& out, double budget_mb) {
    json c = {{"seed", 3}, {"device", "cpu"}, {"threads", {{"intra_op", 2}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8},
                        {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}}}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}},
              {"output_dir", dir / out},
              {"stages", json::array({{{"name", "head"}, {"epochs", 3}, {"trainable", "head"},
                                       {"optimizer", {{"name", "adam"}, {"lr", 0.01}}}, {"feature_cache", {{"views", 3}}}}})}};
    if (budget_mb > 0) c["feature_cache_memory_mb"] = budget_mb;
    test::write_text(dir / (out + ".json"), c.dump(2));
    return dir / (out + ".json");
  };
  const auto ram = test::run_tltrain("fit --config " + cfg("ram", 0));
  ASSERT_EQ(ram.exit_code, 0) << ram.output;
  EXPECT_EQ(ram.output.find("memory-mapped file"), std::string::npos) << ram.output;
  const auto mapped = test::run_tltrain("fit --config " + cfg("mapped", 1e-4));  // 105 bytes: every cache spills
  ASSERT_EQ(mapped.exit_code, 0) << mapped.output;
  EXPECT_NE(mapped.output.find("kept in a memory-mapped file in " + dir / "mapped"), std::string::npos) << mapped.output;
  const auto weights = [&](const std::string& out) {
    return checkpoint::classifier_from(checkpoint::load(dir / (out + "/checkpoints/last.pt")), torch::kCPU).snapshot();
  };
  const auto a = weights("ram"), b = weights("mapped");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, t] : a) EXPECT_TRUE(torch::equal(t, b.at(k))) << k;
}

TEST(SideBySide, ForwardsThatSampleAreFoundInTheirTorchScript) {
  EXPECT_FALSE(model::draws_random_numbers(torch::jit::load(test::tiny_backbone())));
  torch::jit::Module dropout("Dropout");
  dropout.define("def forward(self, x):\n  return torch.dropout(x, 0.5, True)\n");
  EXPECT_TRUE(model::draws_random_numbers(dropout));
  torch::jit::Module depth("StochasticDepth");  // torchvision's: a bernoulli_ inside a branch
  depth.register_attribute("active", c10::BoolType::get(), true);
  depth.define("def forward(self, x):\n  if self.active:\n    keep = torch.empty([x.size(0), 1]).bernoulli_(0.8)\n    return x * keep\n  return x\n");
  EXPECT_TRUE(model::draws_random_numbers(depth));
  torch::jit::Module outer("Outer");
  outer.register_module("inner", depth);
  outer.define("def forward(self, x):\n  return self.inner.forward(x)\n");
  EXPECT_TRUE(model::draws_random_numbers(outer));
}

TEST(SideBySide, TheFineTuneStepGivesTheSameWeightsOnOneAndTwoThreads) {
  // Two micro-batches a step: on two threads they run side by side, each with its own backward,
  // and their gradients are summed in order; on one thread they run in turn. Same bits.
  test::TempDir dir("sidebyside");
  test::write_color_dataset(dir / "train", {"green", "red"}, 12);
  test::write_color_dataset(dir / "val", {"green", "red"}, 4);
  const auto cfg = [&](int threads) {
    json c = {{"seed", 5}, {"device", "cpu"}, {"threads", {{"intra_op", threads}, {"loader", 2}}}, {"micro_batch", 4},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}}},
              {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}},
              {"output_dir", dir / ("t" + std::to_string(threads))},
              {"stages", json::array({{{"name", "tune"}, {"epochs", 2}, {"trainable", {{"fraction", 0.5}}},
                                       {"optimizer", {{"name", "sgd"}, {"lr", 0.05}, {"momentum", 0.9}}}}})}};
    test::write_text(dir / ("t" + std::to_string(threads) + ".json"), c.dump(2));
    const auto r = test::run_tltrain("-v fit --config " + dir / ("t" + std::to_string(threads) + ".json"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    // Two threads did run the micro-batches side by side; one thread ran them in turn.
    EXPECT_EQ(r.output.find("micro-batches run side by side on 2 threads") != std::string::npos, threads == 2) << r.output;
    return checkpoint::classifier_from(checkpoint::load(dir / ("t" + std::to_string(threads) + "/checkpoints/last.pt")), torch::kCPU)
        .snapshot();
  };
  const auto one = cfg(1), two = cfg(2);
  ASSERT_EQ(one.size(), two.size());
  for (const auto& [k, t] : one) EXPECT_TRUE(torch::equal(t, two.at(k))) << k;
}
