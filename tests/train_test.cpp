// Staged training on the tiny backbone and coloured squares: freezing, BatchNorm policy,
// lr=0, early stopping, NaN handling, exact resume after kill -9, and the CLI chain.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/inference.h"
#include "tltrain/train/step.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

/// A project of red/green squares (train 16 + val 6 per class) and a config for it.
struct Project {
  test::TempDir dir{"train"};
  Project() {
    test::write_color_dataset(dir / "train", {"green", "red"}, 16);
    test::write_color_dataset(dir / "val", {"green", "red"}, 6);
  }
  json config(const json& stages, const std::string& out = "run") const {
    return {{"seed", 3},
            {"device", "cpu"},
            {"threads", {{"intra_op", 1}, {"loader", 2}}},
            {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8},
                      {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}}}}},
            {"model", {{"backbone", test::tiny_backbone()}, {"head", {{"hidden", {8}}}}}},
            {"output_dir", dir / out},
            {"stages", stages}};
  }
  std::string write(const json& cfg, const std::string& name = "run.json") const {
    test::write_text(dir / name, cfg.dump(2));
    return dir / name;
  }
  config::RunConfig parsed(const json& cfg) const { return config::parse_run_config(cfg, "test.json"); }
};

json two_stages() {
  return json::array({{{"name", "head"}, {"epochs", 2}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.01}}},
                       {"feature_cache", {{"views", 2}}}},
                      {{"name", "tune"}, {"epochs", 3}, {"trainable", {{"fraction", 0.5}}},
                       {"optimizer", {{"name", "sgd"}, {"lr", 0.01}, {"momentum", 0.9}}}}});
}

std::map<std::string, torch::Tensor> weights_of(const std::string& checkpoint) {
  auto ck = checkpoint::load(checkpoint);
  auto m = checkpoint::classifier_from(ck, torch::kCPU);
  return m.snapshot();
}

double max_abs_diff(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (const auto& [k, t] : a) d = std::max(d, (t - b.at(k)).abs().max().item<double>());
  return d;
}

}  // namespace

TEST(Classifier, FrozenBlocksGetNoGradientAndFrozenBatchNormNeverMoves) {
  auto bb = model::load_backbone(test::tiny_backbone());
  config::HeadConfig head;
  torch::manual_seed(0);
  model::Classifier m(bb, head, 2, torch::kCPU);
  m.set_trainable(model::block_cut(m.meta(), 2));  // block2, block3 train
  auto before = m.snapshot();
  m.set_training(true, config::BatchNormPolicy::Frozen);
  auto loss = m.forward(torch::randn({4, 3, 32, 32}) * 3 + 1).pow(2).mean();
  loss.backward();
  for (const auto& p : m.backbone_module().named_parameters(true)) {
    bool frozen = p.name.rfind("block0.", 0) == 0 || p.name.rfind("block1.", 0) == 0;
    EXPECT_EQ(p.value.requires_grad(), !frozen) << p.name;
    if (frozen) EXPECT_FALSE(p.value.grad().defined()) << p.name;
    else EXPECT_TRUE(p.value.grad().defined() && p.value.grad().abs().sum().item<double>() > 0) << p.name;
  }
  for (const auto& [name, t] : m.state())
    if (name.find("running_") != std::string::npos) EXPECT_TRUE(torch::equal(t, before.at(name))) << name << " moved";
}

TEST(Classifier, TrainPolicyUpdatesOnlyTrainableBlocksBatchNorm) {
  auto bb = model::load_backbone(test::tiny_backbone());
  torch::manual_seed(0);
  model::Classifier m(bb, config::HeadConfig{}, 2, torch::kCPU);
  m.set_trainable(model::block_cut(m.meta(), 3));
  auto before = m.snapshot();
  m.set_training(true, config::BatchNormPolicy::Train);
  { torch::NoGradGuard ng; m.forward(torch::randn({4, 3, 32, 32}) * 3 + 1); }
  auto after = m.state();
  EXPECT_TRUE(torch::equal(after.at("backbone.block0.bn.running_mean"), before.at("backbone.block0.bn.running_mean")));
  EXPECT_FALSE(torch::equal(after.at("backbone.block3.bn.running_mean"), before.at("backbone.block3.bn.running_mean")));
}

TEST(Train, TwoClassSquaresReachNinetyFivePercent) {
  Project p;
  auto cfg = p.parsed(p.config(json::array({{{"epochs", 4}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.02}}}}})));
  auto r = train::fit(cfg);
  ASSERT_EQ(r.history.size(), 4u);
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.95) << r.history.dump();
  EXPECT_TRUE(fs::exists(r.best_checkpoint));
  EXPECT_TRUE(fs::exists(r.run_dir + "/log.csv"));
  EXPECT_TRUE(fs::exists(r.run_dir + "/split.json"));
  std::ifstream csv(r.run_dir + "/log.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header.rfind("stage,stage_name,epoch", 0), 0u) << header;
}

TEST(Train, ZeroLearningRateLeavesEveryWeightUnchanged) {
  Project p;
  json stages = json::array({{{"epochs", 2}, {"trainable", "all"}, {"optimizer", {{"name", "sgd"}, {"lr", 0.0}, {"momentum", 0.9}}}}});
  auto r = train::fit(p.parsed(p.config(stages)));
  auto bb = model::load_backbone(test::tiny_backbone());
  auto trained = checkpoint::load(r.last_checkpoint);
  for (const auto& q : bb.module.named_parameters(true)) {
    bool same = false;
    for (const auto& tq : trained.backbone.module.named_parameters(true))
      if (tq.name == q.name) same = torch::equal(tq.value, q.value);
    EXPECT_TRUE(same) << q.name << " changed with lr 0";
  }
  // The same run with lr > 0 does change them: the check above can fail.
  stages[0]["optimizer"]["lr"] = 0.05;
  auto r2 = train::fit(p.parsed(p.config(stages, "run2")));
  auto trained2 = checkpoint::load(r2.last_checkpoint);
  bool any_changed = false;
  for (const auto& q : bb.module.named_parameters(true))
    for (const auto& tq : trained2.backbone.module.named_parameters(true))
      if (tq.name == q.name && !torch::equal(tq.value, q.value)) any_changed = true;
  EXPECT_TRUE(any_changed);
}

TEST(Train, EarlyStoppingStopsAfterPatienceAndRestoresBest) {
  Project p;
  // lr 0: val_loss never improves after the first epoch; patience 2 → stop after epoch 3 (Keras).
  json stages = json::array({{{"epochs", 10}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.0}}},
                              {"early_stopping", {{"monitor", "val_loss"}, {"patience", 2}}}}});
  auto r = train::fit(p.parsed(p.config(stages)));
  EXPECT_EQ(r.history.size(), 3u) << r.history.dump();
  // With a learning rate the loss keeps improving and all epochs run: the stop above was earned.
  stages[0]["optimizer"]["lr"] = 0.01;
  stages[0]["epochs"] = 4;
  auto r2 = train::fit(p.parsed(p.config(stages, "run2")));
  EXPECT_EQ(r2.history.size(), 4u) << r2.history.dump();
}

TEST(Train, ExistingRunIsNotOverwritten) {
  Project p;
  auto cfg = p.parsed(p.config(json::array({{{"epochs", 1}, {"trainable", "head"}}})));
  train::fit(cfg);
  try {
    train::fit(cfg);
    FAIL() << "overwrote a run";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos);
  }
}

TEST(Train, NanLossStopsWithRuntimeErrorAndKeepsLastGoodCheckpoint) {
  Project p;
  json stages = two_stages();
  stages[1]["optimizer"]["lr"] = 1e30;
  auto cfg = p.write(p.config(stages));
  auto r = test::run_tltrain("fit --config " + cfg);
  EXPECT_EQ(r.exit_code, exit_code::runtime) << r.output;
  EXPECT_NE(r.output.find("the loss became"), std::string::npos) << r.output;
  auto ck = checkpoint::load(p.dir / "run/checkpoints/last.pt");
  EXPECT_EQ(ck.info["progress"]["stage"], 1) << "last.pt should be the end of stage 1";
  for (const auto& [k, t] : weights_of(p.dir / "run/checkpoints/last.pt")) EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << k;
}

TEST(Train, ResumeAfterKillNineEqualsAnUninterruptedRun) {
  Project p;
  std::string cfg_a = p.write(p.config(two_stages(), "straight"), "a.json");
  std::string cfg_b = p.write(p.config(two_stages(), "killed"), "b.json");
  auto a = test::run_tltrain("fit --config " + cfg_a);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  // 4 + 4 steps in stage 1 (32 images / 8), kill in the middle of stage 2's second epoch.
  auto killed = test::run_command("TLTRAIN_DEBUG_KILL_AFTER_STEPS=14 " + std::string(TLTRAIN_BIN) + " fit --config " + cfg_b);
  ASSERT_EQ(killed.exit_code, 128 + 9) << killed.output;
  auto resumed = test::run_tltrain("fit --resume " + (p.dir / "killed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming"), std::string::npos) << resumed.output;
  EXPECT_EQ(max_abs_diff(weights_of(p.dir / "straight/checkpoints/last.pt"), weights_of(p.dir / "killed/checkpoints/last.pt")), 0.0);
  auto ha = checkpoint::load(p.dir / "straight/checkpoints/last.pt").info["history"];
  auto hb = checkpoint::load(p.dir / "killed/checkpoints/last.pt").info["history"];
  ASSERT_EQ(ha.size(), 5u);
  ASSERT_EQ(hb.size(), 5u);
  for (size_t i = 0; i < ha.size(); ++i)
    for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy", "step"}) EXPECT_EQ(ha[i][k], hb[i][k]) << "epoch " << i << " " << k;
}

TEST(TrainCli, FineTuningRunsTheFrozenBottomAsAnOptimizedCopy) {
  // The stage that trains the top half says so in the debug log; the head stage (cache) does not
  // need it. (Equal numbers with and without the copy: SplitBackbone.*; exact resume: above.)
  Project p;
  auto r = test::run_tltrain("-v fit --config " + p.write(p.config(two_stages())));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto at = r.output.find("frozen blocks run as an optimized copy");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_GT(at, r.output.find("stage 2/2 'tune'")) << r.output;
  EXPECT_EQ(r.output.find("frozen blocks run as saved"), std::string::npos) << r.output;
}

TEST(Train, ResultsDoNotDependOnLoaderThreads) {
  Project p;
  json c1 = p.config(two_stages(), "t1"), c4 = p.config(two_stages(), "t4");
  c1["threads"]["loader"] = 1;
  c4["threads"]["loader"] = 4;
  auto r1 = train::fit(p.parsed(c1));
  auto r4 = train::fit(p.parsed(c4));
  EXPECT_EQ(max_abs_diff(weights_of(r1.last_checkpoint), weights_of(r4.last_checkpoint)), 0.0);
}

TEST(TrainCli, FitFinetuneEvalThroughTheBinary) {
  Project p;
  auto cfg = p.write(p.config(json::array({{{"epochs", 3}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.02}}}}})));
  auto fit = test::run_tltrain("fit --config " + cfg);
  ASSERT_EQ(fit.exit_code, 0) << fit.output;
  EXPECT_NE(fit.output.find("best val_accuracy"), std::string::npos) << fit.output;
  // fit ends by evaluating best.pt on the validation set and writing the report.
  EXPECT_TRUE(fs::exists(p.dir / "run/eval.json")) << fit.output;
  EXPECT_TRUE(fs::exists(p.dir / "run/report.html")) << fit.output;
  std::string best = p.dir / "run/checkpoints/best.pt";
  auto ft = test::run_tltrain("finetune --checkpoint " + best + " --unfreeze 0.5 --epochs 2 --lr 0.001");
  ASSERT_EQ(ft.exit_code, 0) << ft.output;
  EXPECT_TRUE(fs::exists(p.dir / "run-finetune/checkpoints/last.pt"));
  EXPECT_NE(ft.output.find("top 50% of blocks"), std::string::npos) << ft.output;
  auto ev = test::run_tltrain("eval --checkpoint " + (p.dir / "run-finetune/checkpoints/last.pt") + " --topk 1");
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  EXPECT_NE(ev.output.find("green"), std::string::npos) << ev.output;
  EXPECT_TRUE(fs::exists(p.dir / "run-finetune/report.html")) << ft.output;
  auto report = json::parse(std::ifstream(p.dir / "run-finetune/eval.json"));
  EXPECT_NE(report["checkpoint"].get<std::string>().find("run-finetune/checkpoints/last.pt"), std::string::npos);
  EXPECT_EQ(report["samples"], 12);
  EXPECT_GE(report["accuracy"].get<double>(), 0.9);
  // A checkpoint meeting data with other classes is refused, naming both sets.
  test::write_color_dataset(p.dir / "other", {"blue", "red"}, 2);
  auto bad = test::run_tltrain("finetune --checkpoint " + best + " --set data.train=" + (p.dir / "other") +
                               " --set data.val=" + (p.dir / "other") + " --output-dir " + (p.dir / "bad"));
  EXPECT_EQ(bad.exit_code, exit_code::data) << bad.output;
  EXPECT_NE(bad.output.find("trained on classes"), std::string::npos) << bad.output;
}

TEST(Train, RestoreBestPutsBackTheBestEpochsWeights) {
  Project p;
  // A too-high rate makes val_loss bounce, so the last epoch is not the best one.
  json cfg = p.config(json::array({{{"epochs", 8}, {"trainable", "head"}, {"optimizer", {{"name", "sgd"}, {"lr", 3.0}}},
                                    {"early_stopping", {{"monitor", "val_loss"}, {"patience", 3}}}}}));
  cfg["monitor"] = "val_loss";
  auto r = train::fit(p.parsed(cfg));
  double best = 1e9;
  for (const auto& e : r.history) best = std::min(best, e["val_loss"].get<double>());
  ASSERT_GT(r.history.back()["val_loss"].get<double>(), best) << "precondition: the last epoch must not be the best\n" << r.history.dump();
  EXPECT_EQ(max_abs_diff(weights_of(r.last_checkpoint), weights_of(r.best_checkpoint)), 0.0);
}

TEST(TrainCli, CtrlCStopsCleanlyWithExit130AndAResumableRun) {
  Project p;
  auto cfg = p.write(p.config(json::array({{{"epochs", 5000}, {"trainable", "all"}, {"feature_cache", false},
                                            {"optimizer", {{"name", "sgd"}, {"lr", 0.001}}}}})));
  // SIGINT once the first epoch is saved (not after a fixed time, which a loaded machine can
  // spend starting up); the shell reports how long the stop took.
  const std::string last = p.dir / "run/checkpoints/last.pt";
  auto r = test::run_command("sh -c '" + std::string(TLTRAIN_BIN) + " fit --config " + cfg + " & pid=$!; " +
                             "for i in $(seq 1200); do [ -f " + last + " ] && break; sleep 0.05; done; " +
                             "t0=$(date +%s%N); kill -INT $pid; wait $pid; rc=$?; t1=$(date +%s%N); " +
                             "echo STOP_MS=$(( (t1 - t0) / 1000000 )); exit $rc'");
  EXPECT_EQ(r.exit_code, exit_code::interrupted) << r.output;
  EXPECT_NE(r.output.find("tltrain fit --resume " + (p.dir / "run")), std::string::npos) << r.output;
  const auto at = r.output.find("STOP_MS=");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_LT(std::stol(r.output.substr(at + 8)), 15000) << "took too long to stop";
  // The checkpoint left behind is complete and names a point inside the stage.
  auto ck = checkpoint::load(last);
  EXPECT_GT(ck.info["progress"]["epoch"].get<int64_t>(), 0);
  EXPECT_LT(ck.info["progress"]["epoch"].get<int64_t>(), 5000);
}

TEST(TrainGuard, ConstantRowsAreNamedAndVaryingOnesPass) {
  EXPECT_EQ(model::constant_rows(torch::randn({8, 16})), "");
  EXPECT_EQ(model::constant_rows(torch::full({1, 16}, 3.0)), "");  // one row says nothing
  auto tiny = torch::rand({8, 16}) * 1e-9;                        // what random-init MobileNetV2 gives
  EXPECT_NE(model::constant_rows(tiny).find("largest spread"), std::string::npos);
  EXPECT_NE(model::constant_rows(torch::full({8, 16}, 250.0)), "");
  auto rows = torch::full({8, 16}, 250.0);
  rows[3][5] = 251.0;  // one feature of one image moves: that is variation
  EXPECT_EQ(model::constant_rows(rows), "");
}

TEST(CheckpointProgress, RoundTripsAndReadsOlderRecords) {
  checkpoint::Progress p{2, 3, 41, true, 0.875, {true, 0.25, 1, false}};
  auto back = checkpoint::progress_from_json(checkpoint::to_json(p), "test");
  EXPECT_EQ(back.stage, 2u);
  EXPECT_EQ(back.epoch, 3);
  EXPECT_EQ(back.global_step, 41);
  EXPECT_TRUE(back.have_best);
  EXPECT_DOUBLE_EQ(back.best_value, 0.875);
  EXPECT_TRUE(back.stage_state.have_best);
  EXPECT_DOUBLE_EQ(back.stage_state.best, 0.25);
  EXPECT_EQ(back.stage_state.wait, 1);
  EXPECT_FALSE(back.stage_state.stopped);
  // Runs saved before the record was typed wrote an empty object at a stage's start.
  json old = {{"stage", 1}, {"epoch", 0}, {"global_step", 9}, {"have_best", false}, {"best_value", 0.0}, {"stage_state", json::object()}};
  auto o = checkpoint::progress_from_json(old, "old");
  EXPECT_EQ(o.stage_state.wait, 0);
  EXPECT_FALSE(o.stage_state.have_best);
  old.erase("global_step");
  try {
    checkpoint::progress_from_json(old, "checkpoint 'x.pt'");
    ADD_FAILURE() << "a damaged record was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("checkpoint 'x.pt': its progress record is damaged"), std::string::npos) << e.what();
  }
}
