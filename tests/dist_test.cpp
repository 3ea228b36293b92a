// Data-parallel fit on the tiny backbone and coloured squares, through the real binary:
// 2 ranks × batch B end with the weights of 1 process × 2B (loader, feature cache, fine-tune),
// under `tltrain launch` and with torchrun's variables set by hand; a killed rank makes the
// survivor fail within the timeout, naming the rank.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "test_util.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/dist/context.h"
#include "tltrain/model/classifier.h"
#include "tltrain/checkpoint/checkpoint.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// 32 training squares (divisible by 2 × 4 × 2: every step holds the same samples for world 1 and 2).
struct Project {
  test::TempDir dir{"dist"};
  Project() {
    test::write_color_dataset(dir / "train", {"green", "red"}, 16);
    test::write_color_dataset(dir / "val", {"green", "red"}, 5);
  }
  std::string write(const json& stages, const std::string& name, int64_t micro_batch = 0, const std::string& device = "cpu") const {
    json cfg = {{"seed", 5},
                {"micro_batch", micro_batch},
                {"device", device},
                {"threads", {{"intra_op", 1}, {"loader", 1}}},
                {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8},
                          {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}, {"horizontal_flip", true}}}}},
                {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}},
                {"output_dir", dir / "unused"},
                {"stages", stages}};
    test::write_text(dir / name, cfg.dump(2));
    return dir / name;
  }
};

json loader_stages() {
  return json::array({{{"name", "head"}, {"epochs", 1}, {"trainable", "head"}, {"feature_cache", false},
                       {"optimizer", {{"name", "adam"}, {"lr", 0.01}}}},
                      {{"name", "tune"}, {"epochs", 2}, {"trainable", {{"fraction", 0.5}}},
                       {"optimizer", {{"name", "sgd"}, {"lr", 0.02}, {"momentum", 0.9}}}}});
}

json cache_stages() {
  return json::array({{{"name", "head"}, {"epochs", 3}, {"trainable", "head"}, {"feature_cache", {{"views", 2}}},
                       {"optimizer", {{"name", "sgd"}, {"lr", 0.05}, {"momentum", 0.9}}}}});
}

std::map<std::string, torch::Tensor> weights_of(const std::string& checkpoint) {
  auto ck = checkpoint::load(checkpoint);
  return checkpoint::classifier_from(ck, torch::kCPU).snapshot();
}

double max_abs_diff(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (const auto& [k, t] : a) d = std::max(d, (t - b.at(k)).abs().max().item<double>());
  return d;
}

std::string fit_args(const std::string& cfg, const std::string& out, int batch) {
  return "fit --config " + cfg + " --set output_dir=" + out + " --set data.batch_size=" + std::to_string(batch);
}

/// Two ranks started by hand with torchrun's variables; returns both exit codes and outputs.
std::pair<test::CommandResult, test::CommandResult> two_by_hand(const std::string& args, const std::string& extra_env_rank1 = "",
                                                                const std::string& common_env = "") {
  const std::string port = std::to_string(free_port());
  const test::TempDir logs("distlog");
  auto env = [&](int r) {
    return "env RANK=" + std::to_string(r) + " WORLD_SIZE=2 LOCAL_RANK=" + std::to_string(r) +
           " LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " + common_env + " " + (r == 1 ? extra_env_rank1 : "");
  };
  std::string cmd;
  for (int r = 0; r < 2; ++r)
    cmd += "(" + env(r) + " " + TLTRAIN_BIN + " " + args + " > " + (logs / ("out" + std::to_string(r))) + " 2>&1; echo $? > " +
           (logs / ("rc" + std::to_string(r))) + ") & ";
  cmd += "wait";
  test::run_command(cmd);
  std::pair<test::CommandResult, test::CommandResult> r;
  auto read = [&](const std::string& f) { return test::run_command("cat " + (logs / f)).output; };
  r.first = {std::atoi(read("rc0").c_str()), read("out0")};
  r.second = {std::atoi(read("rc1").c_str()), read("out1")};
  return r;
}

/// DEVICE cuda: each rank on its own GPU over NCCL, equal within GPU arithmetic's tolerance.
void expect_same_as_one_process(const json& stages, const std::string& tag, int64_t micro_batch = 0,
                                const std::string& device = "cpu") {
  if (!dist::gloo_available()) GTEST_SKIP() << "this build has no c10d Gloo (install libgloo-dev)";
  const double tol = device == "cpu" ? 1e-5 : 1e-4;
  Project p;
  const std::string cfg = p.write(stages, tag + ".json", micro_batch, device);
  auto one = test::run_tltrain(fit_args(cfg, p.dir / "one", 8));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_EQ(one.output.find("data-parallel"), std::string::npos) << one.output;

  auto launched = test::run_tltrain("launch --nproc 2 -- " + fit_args(cfg, p.dir / "launched", 4));
  ASSERT_EQ(launched.exit_code, 0) << launched.output;
  EXPECT_NE(launched.output.find("data-parallel: 2 ranks"), std::string::npos) << launched.output;
  const std::string backend = device == "cpu" ? "gloo collectives" : "nccl collectives on cuda:";
  EXPECT_NE(launched.output.find(backend), std::string::npos) << launched.output;

  auto [r0, r1] = two_by_hand(fit_args(cfg, p.dir / "by_hand", 4));
  ASSERT_EQ(r0.exit_code, 0) << r0.output;
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  EXPECT_EQ(r1.output.find("epoch"), std::string::npos) << "rank 1 should stay quiet:\n" << r1.output;

  auto w1 = weights_of(p.dir / "one/checkpoints/last.pt");
  EXPECT_LE(max_abs_diff(w1, weights_of(p.dir / "launched/checkpoints/last.pt")), tol);
  EXPECT_LE(max_abs_diff(w1, weights_of(p.dir / "by_hand/checkpoints/last.pt")), tol);
  // The comparison can fail: one process with the per-rank batch ends elsewhere.
  auto half = test::run_tltrain(fit_args(cfg, p.dir / "half", 4));
  ASSERT_EQ(half.exit_code, 0) << half.output;
  EXPECT_GT(max_abs_diff(w1, weights_of(p.dir / "half/checkpoints/last.pt")), 1e-3);
  // Metrics are reduced over both ranks: every epoch's numbers agree with one process.
  auto h1 = checkpoint::load(p.dir / "one/checkpoints/last.pt").info.at("history");
  auto h2 = checkpoint::load(p.dir / "launched/checkpoints/last.pt").info.at("history");
  ASSERT_EQ(h1.size(), h2.size());
  for (size_t e = 0; e < h1.size(); ++e)
    for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy"})
      EXPECT_NEAR(h1[e].at(k).get<double>(), h2[e].at(k).get<double>(), tol) << "epoch " << e << " " << k;
}

}  // namespace

TEST(Distributed, ContextFromEnvironment) {
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("SLURM_PROCID");
  ::unsetenv("SLURM_NTASKS");
  EXPECT_FALSE(dist::context_from_env().distributed());
  ::setenv("SLURM_PROCID", "3", 1);
  ::setenv("SLURM_NTASKS", "4", 1);
  ::setenv("SLURM_LOCALID", "1", 1);
  ::setenv("MASTER_ADDR", "node7", 1);
  auto s = dist::context_from_env();
  EXPECT_EQ(s.source, "slurm");
  EXPECT_EQ(s.rank, 3);
  EXPECT_EQ(s.world, 4);
  EXPECT_EQ(s.local_rank, 1);
  EXPECT_EQ(s.master_addr, "node7");
  ::setenv("RANK", "1", 1);  // torchrun's variables win over SLURM's
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("MASTER_PORT", "1234", 1);
  auto t = dist::context_from_env();
  EXPECT_EQ(t.source, "torchrun");
  EXPECT_EQ(t.rank, 1);
  EXPECT_EQ(t.world, 2);
  EXPECT_EQ(t.master_port, 1234);
  ::setenv("RANK", "2", 1);
  EXPECT_THROW(dist::context_from_env(), Error);
  for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"}) ::unsetenv(v);
}

// Micro-batches of 2: gradients accumulate over chunks before the last backward starts the sums.
TEST(Distributed, TwoRanksMatchOneProcessWithDoubleBatch_LoaderAndFineTune) {
  expect_same_as_one_process(loader_stages(), "loader", 2);
}

TEST(Distributed, TwoRanksMatchOneProcessWithDoubleBatch_FeatureCache) { expect_same_as_one_process(cache_stages(), "cache"); }

TEST(Distributed, TwoRanksOnNcclMatchOneProcessWithDoubleBatch) {
  if (!dist::nccl_available()) GTEST_SKIP() << "this build has no c10d NCCL (scripts/gpu_check.sh builds one with it)";
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "NCCL needs a GPU per rank: " << torch::cuda::device_count() << " visible";
  expect_same_as_one_process(loader_stages(), "nccl", 0, "cuda");
}

TEST(Distributed, KilledRankMakesTheSurvivorFailWithinTheTimeout) {
  if (!dist::gloo_available()) GTEST_SKIP() << "this build has no c10d Gloo (install libgloo-dev)";
  Project p;
  const std::string cfg = p.write(loader_stages(), "kill.json");
  auto t0 = std::chrono::steady_clock::now();
  auto [r0, r1] = two_by_hand(fit_args(cfg, p.dir / "killed", 4), "TLTRAIN_DEBUG_KILL_AFTER_STEPS=2",
                              "TLTRAIN_DIST_TIMEOUT=10");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r1.exit_code, 0) << r1.output;
  EXPECT_NE(r0.exit_code, 0) << r0.output;
  EXPECT_LT(secs, 10 + 20);
  EXPECT_NE(r0.output.find("rank 1"), std::string::npos) << r0.output;

  // Through the launcher: it reports the dead rank and exits non-zero.
  auto l = test::run_command("env TLTRAIN_DEBUG_KILL_AFTER_STEPS=2 TLTRAIN_DEBUG_KILL_RANK=1 TLTRAIN_DIST_TIMEOUT=10 " +
                             std::string(TLTRAIN_BIN) + " launch --nproc 2 -- " + fit_args(cfg, p.dir / "killed2", 4));
  EXPECT_NE(l.exit_code, 0) << l.output;
  EXPECT_NE(l.output.find("rank 1"), std::string::npos) << l.output;
}

TEST(Distributed, KilledRunResumesOnEveryRankToTheSameWeights) {
  if (!dist::gloo_available()) GTEST_SKIP() << "this build has no c10d Gloo (install libgloo-dev)";
  Project p;
  const std::string cfg = p.write(loader_stages(), "resume.json");
  auto one = test::run_tltrain(fit_args(cfg, p.dir / "one", 8));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  // Step 6 is inside stage 2's first epoch: last.pt holds the end of stage 1.
  auto killed = test::run_command("env TLTRAIN_DEBUG_KILL_AFTER_STEPS=6 " + std::string(TLTRAIN_BIN) + " launch --nproc 2 -- " +
                                  fit_args(cfg, p.dir / "two", 4));
  ASSERT_NE(killed.exit_code, 0) << killed.output;
  auto resumed = test::run_tltrain("launch --nproc 2 -- fit --resume " + (p.dir / "two"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming"), std::string::npos) << resumed.output;
  EXPECT_LE(max_abs_diff(weights_of(p.dir / "one/checkpoints/last.pt"), weights_of(p.dir / "two/checkpoints/last.pt")), 1e-5);
}

TEST(Distributed, LaunchNeedsACommand) {
  auto r = test::run_tltrain("launch --nproc 2");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  EXPECT_NE(r.output.find("after --"), std::string::npos) << r.output;
}

// tltrain cv on 2 ranks: each fold is data-parallel (the shared cache built over both ranks'
// shards, validation gathered for the out-of-fold file) and ends as one process with twice the batch.
TEST(Distributed, TwoRankCvMatchesOneProcessWithDoubleBatch) {
  if (!dist::gloo_available()) GTEST_SKIP() << "this build has no c10d Gloo (install libgloo-dev)";
  test::TempDir dir("dist_cv");
  // 48 images in 3 folds: 32 train a fold, which divides into 2 ranks x batch 4 x 4 steps.
  test::write_color_dataset(dir / "train", {"green", "red"}, 16);
  test::write_color_dataset(dir / "val", {"green", "red"}, 8);
  const json stages = json::array({{{"name", "head"}, {"epochs", 2}, {"trainable", "head"}, {"feature_cache", {{"views", 2}}},
                                    {"optimizer", {{"name", "sgd"}, {"lr", 0.05}, {"momentum", 0.9}}}},
                                   {{"name", "tune"}, {"epochs", 1}, {"trainable", {{"fraction", 0.5}}}, {"feature_cache", false},
                                    {"optimizer", {{"name", "sgd"}, {"lr", 0.02}, {"momentum", 0.9}}}}});
  const json cfg = {{"seed", 5}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 1}}},
                    {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8},
                              {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}}}}},
                    {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}}, {"stages", stages}};
  test::write_text(dir / "cv.json", cfg.dump());
  auto args = [&](const std::string& out, int batch) {
    return "cv --folds 3 --config " + (dir / "cv.json") + " --set output_dir=" + (dir / out) + " --set data.batch_size=" + std::to_string(batch);
  };
  const auto one = test::run_tltrain(args("one", 8));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto two = test::run_tltrain("launch --nproc 2 -- " + args("two", 4));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("data-parallel: 2 ranks"), std::string::npos) << two.output;
  const json a = json::parse(std::ifstream(dir / "one/cv.json")), b = json::parse(std::ifstream(dir / "two/cv.json"));
  for (const char* k : {"val_loss", "val_accuracy"})
    for (size_t f = 0; f < 3; ++f)
      EXPECT_NEAR(a["metrics"][k]["values"][f].get<double>(), b["metrics"][k]["values"][f].get<double>(), 1e-5) << k << " fold " << f;
  // The out-of-fold file: the same images with the same probabilities, every image once.
  auto rows = [](const std::string& path) {
    std::map<std::string, double> p;
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      const auto c1 = line.find(',', line.find(',') + 1), c2 = line.find(',', c1 + 1);
      p[line.substr(c1 + 1, c2 - c1 - 1)] = std::stod(line.substr(line.rfind(',') + 1));
    }
    return p;
  };
  const auto pa = rows(dir / "one/oof_predictions.csv"), pb = rows(dir / "two/oof_predictions.csv");
  EXPECT_EQ(pa.size(), 48u);
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& [path, p] : pa) EXPECT_NEAR(p, pb.at(path), 1e-4) << path;
}

TEST(Distributed, EachRankOfAMachineTakesItsOwnGpu) {
  EXPECT_EQ(model::cuda_index(0, 4), 0);
  EXPECT_EQ(model::cuda_index(3, 4), 3);
  EXPECT_EQ(model::cuda_index(5, 4), 1) << "more ranks than GPUs share them round-robin";
  EXPECT_EQ(model::cuda_index(2, 0), 0);
  EXPECT_EQ(model::resolve_device(config::Device::Cpu, 3), torch::Device(torch::kCPU));
}

TEST(Distributed, BackendIsNcclOnCudaWhenBuiltAndTheEnvironmentOverrides) {
  ::unsetenv("TLTRAIN_DIST_BACKEND");
  EXPECT_EQ(dist::choose_backend(false), dist::Backend::Gloo) << "CPU ranks always reduce over Gloo";
  EXPECT_EQ(dist::choose_backend(true), dist::nccl_available() ? dist::Backend::Nccl : dist::Backend::Gloo);
  ::setenv("TLTRAIN_DIST_BACKEND", "gloo", 1);
  EXPECT_EQ(dist::choose_backend(true), dist::Backend::Gloo);
  ::setenv("TLTRAIN_DIST_BACKEND", "mpi", 1);
  test::expect_error([] { dist::choose_backend(true); }, ErrorKind::Usage, "TLTRAIN_DIST_BACKEND='mpi': expected gloo or nccl");
  ::setenv("TLTRAIN_DIST_BACKEND", "nccl", 1);
  test::expect_error([] { dist::choose_backend(false); }, ErrorKind::Usage,
                     dist::nccl_available() ? "needs device cuda" : "this build has no c10d NCCL");
  ::unsetenv("TLTRAIN_DIST_BACKEND");
}

// Two ranks as two threads of this process, each with its own group over one TCPStore: the
// collectives the trainer's metrics use sum and gather tensors where they live and leave them there.
TEST(Distributed, CollectivesSumTensorsInPlaceAndKeepTheirDevice) {
  if (!dist::gloo_available()) GTEST_SKIP() << "this build has no c10d Gloo (install libgloo-dev)";
  const int port = free_port();
  std::vector<torch::Tensor> sums(2), doubles(2), gathered(2);
  std::vector<std::string> failures(2);
  auto rank = [&](int r) {
    try {
      dist::DistContext ctx;
      ctx.rank = r;
      ctx.world = 2;
      ctx.master_port = port;
      dist::GroupOptions o;
      o.timeout = std::chrono::milliseconds(20000);
      auto pg = dist::init_process_group(ctx, o);
      EXPECT_EQ(pg->backend(), dist::Backend::Gloo);
      auto t = torch::tensor({1.0, 2.0}, torch::kDouble) * (r == 0 ? 1 : 10);
      const auto* before = t.data_ptr();
      pg->all_reduce_sum(t);
      EXPECT_EQ(t.data_ptr(), before) << "summed in place, not replaced";
      sums[static_cast<size_t>(r)] = t;
      std::vector<double> v{static_cast<double>(r + 1), 0.5};
      pg->all_reduce_sum(v);
      doubles[static_cast<size_t>(r)] = torch::tensor(v, torch::kDouble);
      gathered[static_cast<size_t>(r)] = pg->all_gather(torch::full({3}, static_cast<float>(r)));
      pg->barrier();
    } catch (const std::exception& e) {
      failures[static_cast<size_t>(r)] = e.what();
    }
  };
  std::thread a(rank, 0), b(rank, 1);
  a.join();
  b.join();
  ASSERT_EQ(failures[0], "");
  ASSERT_EQ(failures[1], "");
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(torch::equal(sums[r], torch::tensor({11.0, 22.0}, torch::kDouble))) << sums[r];
    EXPECT_TRUE(torch::equal(doubles[r], torch::tensor({3.0, 1.0}, torch::kDouble))) << doubles[r];
    EXPECT_TRUE(torch::equal(gathered[r], torch::stack({torch::zeros({3}), torch::ones({3})}))) << gathered[r];
    EXPECT_EQ(gathered[r].device(), torch::Device(torch::kCPU));
  }
}
