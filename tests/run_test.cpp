// The training loop's extension points (issue 12): callbacks see every event in order and can
// end a stage; the cross-entropy objective is torch's; best.pt holds the weights of the epoch it
// records.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/train/callbacks.h"
#include "tltrain/train/objective.h"
#include "tltrain/train/run.h"

using namespace tltrain;
using config::json;

namespace {

json small_config(const test::TempDir& dir, const json& stages) {
  test::write_color_dataset(dir / "train", {"green", "red"}, 8);
  test::write_color_dataset(dir / "val", {"green", "red"}, 4);
  return {{"seed", 5}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 1}}},
          {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}}},
          {"model", {{"backbone", test::tiny_backbone()}}}, {"output_dir", dir / "run"}, {"stages", stages}};
}

/// Writes down every event it sees, with the run's position.
class Recorder final : public train::Callback {
 public:
  std::vector<std::string> events;
  void on_run_begin(train::Run&) override { events.push_back("run"); }
  void on_stage_begin(train::Run& r) override { events.push_back("stage" + std::to_string(r.stage_index())); }
  void on_epoch_begin(train::Run& r) override { events.push_back("epoch" + std::to_string(r.epoch())); }
  void on_step_end(train::Run& r, const train::StepEnd& e) override {
    if (e.done == e.total) events.push_back("steps" + std::to_string(e.total));
  }
  void on_epoch_end(train::Run& r, train::EpochEnd& e) override {
    EXPECT_EQ(&e.record, &r.history().back()) << "the epoch's record is in the history when callbacks see it";
    events.push_back("end" + std::to_string(r.epoch()));
  }
  void on_stage_end(train::Run&) override { events.push_back("stage_end"); }
  void on_run_end(train::Run&) override { events.push_back("run_end"); }
};

/// Ends every stage after its first epoch, as an early-stopping rule of the user's would.
class OneEpochPerStage final : public train::Callback {
 public:
  void on_epoch_end(train::Run& r, train::EpochEnd& e) override {
    r.state().stage_state.stopped = true;
    e.notes.push_back("stopped by a test callback");
  }
};

}  // namespace

TEST(RunCallbacks, SeeEveryEventInOrder) {
  test::TempDir dir("run_events");
  json stages = json::parse(R"([{"name": "head", "epochs": 2, "trainable": "head"},
                                {"name": "all", "epochs": 1, "trainable": "all", "feature_cache": false}])");
  const auto cfg = config::parse_run_config(small_config(dir, stages), "events.json");
  auto callbacks = train::default_callbacks({});
  auto recorder = std::make_unique<Recorder>();
  Recorder* seen = recorder.get();
  callbacks.push_back(std::move(recorder));
  train::Run run(cfg, {}, std::move(callbacks));
  const auto r = run.fit();
  // 16 training images, batch 8: two steps per epoch, in both stages.
  const std::vector<std::string> want{"run",   "stage0", "epoch0", "steps2", "end0",      "epoch1", "steps2", "end1",
                                      "stage_end", "stage1", "epoch0", "steps2", "end0", "stage_end", "run_end"};
  EXPECT_EQ(seen->events, want);
  EXPECT_EQ(r.history.size(), 3u);
  EXPECT_EQ(r.history.back()["step"], 6);
}

TEST(RunCallbacks, ACallbackCanEndAStage) {
  test::TempDir dir("run_stop");
  json stages = json::parse(R"([{"name": "head", "epochs": 4, "trainable": "head"},
                                {"name": "more", "epochs": 3, "trainable": "head"}])");
  const auto cfg = config::parse_run_config(small_config(dir, stages), "stop.json");
  auto callbacks = train::default_callbacks({});
  callbacks.push_back(std::make_unique<OneEpochPerStage>());
  train::Run run(cfg, {}, std::move(callbacks));
  const auto r = run.fit();
  ASSERT_EQ(r.history.size(), 2u);
  EXPECT_EQ(r.history[0]["stage"], 1);
  EXPECT_EQ(r.history[1]["stage"], 2);
  // The stage's end still wrote last.pt pointing past the last stage.
  EXPECT_EQ(checkpoint::load(r.last_checkpoint).progress.stage, 2u);
}

TEST(Objective, CrossEntropyIsTorchsWithSmoothingAndClassWeights) {
  torch::manual_seed(0);
  const auto logits = torch::randn({6, 3}, torch::kDouble);
  const auto y = torch::tensor({0, 2, 1, 1, 0, 2}, torch::kLong);
  const auto w = torch::tensor({0.5, 2.0, 1.0}, torch::kDouble);
  for (double smoothing : {0.0, 0.1}) {
    for (bool weighted : {false, true}) {
      train::CrossEntropy ce(weighted ? w : torch::Tensor(), smoothing);
      // Two chunks add up to the whole batch's mean.
      auto a = ce.loss_sum(logits.narrow(0, 0, 4), y.narrow(0, 0, 4)), b = ce.loss_sum(logits.narrow(0, 4, 2), y.narrow(0, 4, 2));
      const double ours = (a.sum + b.sum).item<double>() / ce.weight(y).item<double>();
      auto opts = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(smoothing);
      if (weighted) opts.weight(w);
      const double torchs = torch::nn::functional::cross_entropy(logits, y, opts).item<double>();
      EXPECT_NEAR(ours, torchs, 1e-9) << "smoothing " << smoothing << (weighted ? ", weighted" : "");
    }
  }
  train::CrossEntropy plain({}, 0.0);
  EXPECT_EQ(plain.correct(torch::tensor({{2.0, 1.0}, {0.0, 3.0}, {5.0, 1.0}}), torch::tensor({0, 1, 1})), 2);
}

TEST(Checkpoints, BestHoldsTheWeightsOfTheEpochItRecords) {
  // Early stopping with an unreachable min_delta keeps the stage's first epoch as its best and
  // restores it at the stage's end; the run's best by val_loss is the stage's last epoch. best.pt
  // must hold that last epoch's weights (it once held the restored ones).
  test::TempDir dir("run_best");
  json stages = json::parse(R"([{"name": "head", "epochs": 1, "trainable": "head", "optimizer": {"name": "adam", "lr": 0.05}},
      {"name": "tune", "epochs": 3, "trainable": "head", "feature_cache": false, "optimizer": {"name": "adam", "lr": 0.02},
       "early_stopping": {"monitor": "val_loss", "patience": 5, "min_delta": 100}}])");
  json j = small_config(dir, stages);
  j["monitor"] = "val_loss";
  const auto r = train::fit(config::parse_run_config(j, "best.json"));
  ASSERT_EQ(r.history.size(), 4u);
  ASSERT_DOUBLE_EQ(r.history.back()["val_loss"].get<double>(), r.best_value)
      << "the case needs the run's best at the stage's last epoch:\n" << r.history.dump(1);
  eval::EvalOptions eo;
  eo.checkpoint = r.best_checkpoint;
  eo.threads = 1;
  const auto report = eval::evaluate_checkpoint(eo);
  EXPECT_NEAR(report.loss, r.best_value, 1e-5) << "best.pt does not reproduce the val_loss it was saved for";
}

namespace {
/// A crash right after the stage's last epoch was saved, before the stage ends.
class CrashAtStageEnd final : public train::Callback {
 public:
  void on_epoch_end(train::Run& r, train::EpochEnd&) override {
    if (r.stage_index() == 0 && r.stage_over()) throw std::runtime_error("simulated crash at the stage's end");
  }
};

std::map<std::string, torch::Tensor> weights_of(const std::string& path) {
  return checkpoint::classifier_from(checkpoint::load(path), torch::kCPU).snapshot();
}
}  // namespace

TEST(RunResume, AKillBetweenAStagesLastEpochAndItsEndResumesExactly) {
  // The stage keeps its first epoch as best (min_delta out of reach) and restores it at its end:
  // the resumed run must restore the same weights and go on exactly as an uninterrupted one.
  json stages = json::parse(R"([{"name": "head", "epochs": 3, "trainable": "head", "optimizer": {"name": "adam", "lr": 0.05},
       "early_stopping": {"monitor": "val_loss", "patience": 5, "min_delta": 100}},
      {"name": "tune", "epochs": 2, "trainable": {"fraction": 0.5}, "feature_cache": false, "optimizer": {"name": "sgd", "lr": 0.01}}])");
  test::TempDir straight_dir("resume_straight"), crashed_dir("resume_crashed");
  const auto straight = train::fit(config::parse_run_config(small_config(straight_dir, stages), "straight.json"));

  const auto cfg = config::parse_run_config(small_config(crashed_dir, stages), "crashed.json");
  {
    auto callbacks = train::default_callbacks({});
    callbacks.push_back(std::make_unique<CrashAtStageEnd>());
    train::Run run(cfg, {}, std::move(callbacks));
    EXPECT_THROW(run.fit(), std::runtime_error);
  }
  EXPECT_EQ(checkpoint::load(crashed_dir / "run/checkpoints/last.pt").progress.epoch, 3) << "last.pt holds the stage's last epoch";
  train::FitOptions resume;
  resume.resume = true;
  const auto resumed = train::fit(cfg, resume);

  ASSERT_EQ(resumed.history.size(), straight.history.size());
  for (size_t i = 0; i < straight.history.size(); ++i)
    for (const char* k : {"loss", "val_loss", "val_accuracy"})
      EXPECT_DOUBLE_EQ(resumed.history[i][k].get<double>(), straight.history[i][k].get<double>()) << "epoch row " << i << " " << k;
  const auto a = weights_of(straight.last_checkpoint), b = weights_of(resumed.last_checkpoint);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}
