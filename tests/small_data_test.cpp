// Issue 14's heads and loop semantics with the tiny backbone: the hinge loss against a hand
// computation, LBFGS solving a head full-batch to its optimum, steps_per_epoch as an endless
// stream that resumes exactly, validation_steps, and the model diagram.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "test_util.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/error.h"
#include "tltrain/data/preprocess.h"
#include "tltrain/model/backbone_meta.h"
#include "tltrain/model/inference.h"
#include "tltrain/train/callbacks.h"
#include "tltrain/train/diagram.h"
#include "tltrain/train/objective.h"
#include "tltrain/train/run.h"
#include "tltrain/train/step.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

json small_config(const test::TempDir& dir, const json& stages, int per_class = 7) {
  test::write_color_dataset(dir / "train", {"green", "red"}, per_class);
  test::write_color_dataset(dir / "val", {"green", "red"}, 3);
  return {{"seed", 9}, {"device", "cpu"}, {"threads", {{"intra_op", 1}, {"loader", 1}}},
          {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 4}}},
          {"model", {{"backbone", test::tiny_backbone()}}}, {"output_dir", dir / "run"}, {"stages", stages}};
}

std::map<std::string, torch::Tensor> weights_of(const std::string& checkpoint) {
  auto ck = checkpoint::load(checkpoint);
  auto w = ck.head;
  for (const auto& p : ck.backbone.module.named_parameters(true)) w["backbone." + p.name] = p.value;
  return w;
}

/// Keeps how many validation rows each epoch measured.
class ValRows final : public train::Callback {
 public:
  std::vector<int64_t> rows;
  std::vector<std::vector<std::string>> paths;
  void on_epoch_end(train::Run& run, train::EpochEnd& e) override {
    rows.push_back(e.val ? e.val->logits.size(0) : -1);
    paths.emplace_back();
    if (e.val)
      for (int64_t i : e.val->indices) paths.back().push_back(run.validation_samples()[static_cast<size_t>(i)].path);
  }
};

}  // namespace

TEST(HingeLoss, IsCrammerSingersMarginAsKerasCategoricalHinge) {
  auto z = torch::tensor({{2.0, 0.5, 1.5}, {0.0, 3.0, -1.0}, {1.0, 1.0, 1.0}});
  auto y = torch::tensor({0, 2, 1}, torch::kLong);
  // max(0, 1 + best wrong - right): 1 + 1.5 - 2 = 0.5; 1 + 3 - (-1) = 5; 1 + 1 - 1 = 1.
  train::Hinge h({});
  auto [sum, weight] = h.loss_sum(z, y);
  EXPECT_NEAR(sum.item<double>(), 6.5, 1e-9);
  EXPECT_EQ(weight.item<double>(), 3.0);
  auto [val_loss, acc] = h.validate(z, y);
  EXPECT_NEAR(val_loss, 6.5 / 3, 1e-9);
  EXPECT_NEAR(acc, 1.0 / 3, 1e-9);  // only row 0's top score is right (row 2 ties: argmax takes class 0)
  train::Hinge weighted(torch::tensor({2.0f, 1.0f, 0.5f}));
  EXPECT_NEAR(weighted.loss_sum(z, y).sum.item<double>(), 2 * 0.5 + 0.5 * 5 + 1 * 1, 1e-6);
  // A margin above 1 costs nothing: the SVM stops pushing.
  EXPECT_EQ(h.loss_sum(torch::tensor({{3.0, 1.0}}), torch::tensor({0}, torch::kLong)).sum.item<double>(), 0.0);
}

TEST(HingeLoss, AHingeStageTrainsALinearSvmHead) {
  test::TempDir dir("hinge");
  const json stages = json::parse(R"([{"epochs": 15, "trainable": "head", "loss": "hinge",
                                       "optimizer": {"name": "adam", "lr": 0.05, "weight_decay": 0.0001}}])");
  const auto r = train::fit(config::parse_run_config(small_config(dir, stages), "hinge.json"));
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.99) << r.history.dump();
  EXPECT_LT(r.history.back()["loss"].get<double>(), r.history.front()["loss"].get<double>());
  auto bad = small_config(dir, stages);
  bad["model"]["head"] = {{"output", "sigmoid"}};
  EXPECT_THROW(config::parse_run_config(bad, "bad.json"), Error) << "hinge needs one score per class";
}

TEST(Lbfgs, SolvesAnL2LogisticRegressionToItsOptimumFullBatch) {
  torch::manual_seed(0);
  auto x = torch::randn({64, 5});
  auto y = (x.select(1, 0) + 0.3 * torch::randn({64}) > 0).to(torch::kLong);
  torch::nn::Linear head(5, 2);
  config::OptimizerConfig oc;
  oc.name = config::Optimizer::Lbfgs;
  oc.lr = 1;
  oc.weight_decay = 0.01;
  auto opt = train::make_optimizer(oc, {{head->parameters(), 1.0}});
  train::CrossEntropy ce({}, 0.0);
  const auto fwd = [&](const torch::Tensor& t) { return head->forward(t); };
  const train::StepLoss extra = train::step_loss(oc, {head->weight});
  ASSERT_TRUE(extra.global);
  double first = 0;
  for (int epoch = 0; epoch < 5; ++epoch) {
    auto s = train::gradient_step(fwd, x, y, *opt, ce, {0, nullptr, extra});
    if (epoch == 0) first = s.loss();
  }
  // At the optimum of mean CE + 0.5 * 0.01 * |W|^2 the gradient vanishes.
  head->zero_grad();
  auto loss = torch::cross_entropy_loss(head->forward(x), y) + 0.5 * 0.01 * head->weight.pow(2).sum();
  loss.backward();
  const double g = std::sqrt(head->weight.grad().pow(2).sum().item<double>() + head->bias.grad().pow(2).sum().item<double>());
  EXPECT_LT(g, 1e-4) << "gradient norm at LBFGS's solution";
  EXPECT_LT(loss.item<double>(), first);
  // Without the L2 term the bias would not matter to it; with it only the weights are decayed.
  EXPECT_EQ(extra.params.size(), 1u);
}

TEST(Lbfgs, IsRefusedWithoutTheFeatureCacheAndRunsOneStepAnEpoch) {
  test::TempDir dir("lbfgs");
  auto cfg = small_config(dir, json::parse(R"([{"epochs": 3, "trainable": "head", "optimizer": {"name": "lbfgs", "weight_decay": 0.001}}])"));
  const auto r = train::fit(config::parse_run_config(cfg, "lbfgs.json"));
  for (const auto& e : r.history) EXPECT_EQ(e["step"].get<int>(), e["epoch"].get<int>()) << "one full-batch step per epoch";
  EXPECT_GE(r.history.back()["val_accuracy"].get<double>(), 0.99);
  // Its state (the curvature history) is in last.pt: killed after epoch 2, the resumed run ends the same.
  cfg["output_dir"] = dir / "killed";
  test::write_text(dir / "cfg.json", cfg.dump());
  EXPECT_NE(test::run_command("TLTRAIN_DEBUG_KILL_AFTER_STEPS=3 " + std::string(TLTRAIN_BIN) + " fit --config " + (dir / "cfg.json")).exit_code, 0);
  ASSERT_EQ(test::run_tltrain("fit --resume " + (dir / "killed")).exit_code, 0);
  const auto a = weights_of(r.last_checkpoint), b = weights_of(dir / "killed/checkpoints/last.pt");
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  cfg["stages"][0]["feature_cache"] = false;
  cfg["stages"][0]["trainable"] = "all";
  try {
    config::parse_run_config(cfg, "bad.json");
    FAIL() << "lbfgs without the cache was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stages[0].optimizer.name"), std::string::npos) << e.what();
  }
}

TEST(StepsPerEpoch, EpochsAreConsecutiveWindowsOfOneEndlessStream) {
  std::vector<int64_t> all_i, all_e, i, e;
  data::stream_window(7, 5, 3, 0, 30, 0, 1, all_i, all_e);
  // Every pass of 7 is a permutation, seeded as an epoch of its own id.
  for (int p = 0; p < 4; ++p) {
    std::set<int64_t> pass(all_i.begin() + p * 7, all_i.begin() + p * 7 + 7);
    EXPECT_EQ(pass.size(), 7u);
    EXPECT_EQ(all_e[static_cast<size_t>(p * 7)], 3 + p);
    EXPECT_EQ(std::vector<int64_t>(all_i.begin() + p * 7, all_i.begin() + p * 7 + 7), data::epoch_order(7, 5, 3 + p, true, 0, 1));
  }
  data::stream_window(7, 5, 3, 12, 9, 0, 1, i, e);  // an epoch of 3 batches of 3, the fifth one
  EXPECT_EQ(i, std::vector<int64_t>(all_i.begin() + 12, all_i.begin() + 21));
  EXPECT_EQ(data::stream_passes(7, 4, 3, 3, 1), 6);  // 36 positions over passes of 7
  EXPECT_EQ(data::stream_passes(7, 4, 0, 3, 1), 4);
}

TEST(StepsPerEpoch, AnEpochIsNBatchesAndAKilledRunResumesExactly) {
  // Cache and loader stages both; 14 images in batches of 4 with 5 steps an epoch: epochs cross passes.
  const json stages = json::parse(R"([{"name": "head", "epochs": 3, "trainable": "head", "steps_per_epoch": 5,
                                        "feature_cache": {"views": 2}, "optimizer": {"name": "adam", "lr": 0.02}},
      {"name": "tune", "epochs": 2, "trainable": {"fraction": 0.5}, "feature_cache": false, "steps_per_epoch": 5,
       "optimizer": {"name": "sgd", "lr": 0.01}}])");
  test::TempDir straight_dir("spe_straight"), killed_dir("spe_killed");
  const auto straight = train::fit(config::parse_run_config(small_config(straight_dir, stages), "s.json"));
  ASSERT_EQ(straight.history.size(), 5u);
  for (size_t k = 0; k < 5; ++k) EXPECT_EQ(straight.history[k]["step"].get<int>(), 5 * static_cast<int>(k + 1));

  const json cfg = small_config(killed_dir, stages);
  test::write_text(killed_dir / "cfg.json", cfg.dump());
  const auto killed = test::run_command("TLTRAIN_DEBUG_KILL_AFTER_STEPS=22 " + std::string(TLTRAIN_BIN) + " fit --config " +
                                        (killed_dir / "cfg.json"));
  EXPECT_NE(killed.exit_code, 0) << killed.output;  // in the fine-tune stage's second epoch
  const auto resumed = test::run_tltrain("fit --resume " + (killed_dir / "run"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  std::ifstream log(killed_dir / "run/log.jsonl");
  std::vector<json> rows;
  for (std::string line; std::getline(log, line);) rows.push_back(json::parse(line));
  ASSERT_EQ(rows.size(), straight.history.size());
  for (size_t k = 0; k < rows.size(); ++k)
    for (const char* key : {"loss", "accuracy", "val_loss"})
      EXPECT_DOUBLE_EQ(rows[k][key].get<double>(), straight.history[k][key].get<double>()) << "epoch " << k << " " << key;
  const auto a = weights_of(straight.last_checkpoint), b = weights_of(killed_dir / "run/checkpoints/last.pt");
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}

TEST(ValidationSteps, MeasureTheSameFirstBatchesOfAShuffledSetEveryEpoch) {
  test::TempDir dir("valsteps");
  for (const bool cache : {true, false}) {
    json stages = json::array({{{"epochs", 2}, {"trainable", cache ? "head" : "all"}, {"feature_cache", cache}, {"validation_steps", 1}}});
    auto cfg = small_config(dir, stages);
    cfg["output_dir"] = dir / (cache ? "cache" : "loader");
    auto callbacks = train::default_callbacks({});
    auto rows = std::make_unique<ValRows>();
    ValRows* seen = rows.get();
    callbacks.push_back(std::move(rows));
    train::Run run(config::parse_run_config(cfg, "v.json"), {}, std::move(callbacks));
    run.fit();
    EXPECT_EQ(seen->rows, (std::vector<int64_t>{4, 4})) << "one batch of 4 of the 6 validation images";
    auto a = seen->paths[0], b = seen->paths[1];
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b) << "the same images every epoch";
    EXPECT_EQ(run.validation_samples().size(), 6u) << "after the stage: the run's whole set";
  }
}

TEST(ModelDiagram, ShowsEveryBlockAndWhatEachStageTrains) {
  const auto meta = model::read_backbone_meta(test::tiny_backbone());
  test::TempDir dir("diagram");
  const json stages = json::parse(R"([{"name": "head", "epochs": 1, "trainable": "head"},
                                       {"name": "top", "epochs": 1, "trainable": {"blocks": 1}, "feature_cache": false}])");
  const auto cfg = config::parse_run_config(small_config(dir, stages), "d.json");
  const auto spec = train::run_diagram(cfg, meta, meta.feature_channels, 2);
  const std::string dot = train::diagram_dot(spec);
  for (const auto& b : meta.blocks) EXPECT_NE(dot.find("<B>" + b.name + "</B>"), std::string::npos) << b.name;
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = dot.find(what); at != std::string::npos; at = dot.find(what, at + 1)) ++n;
    return n;
  };
  // Stage 1 freezes every block, stage 2 trains the last; the head (one Dense) trains in both.
  EXPECT_EQ(count(">frozen<"), 2 * meta.blocks.size() - 1);
  EXPECT_EQ(count(">trains<"), 1 + 2u);
  const std::string svg = train::write_diagram(dot, dir / "m.svg");
  EXPECT_EQ(svg, dir / "m.svg");
  std::ifstream in(svg);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("<svg"), std::string::npos);
  // Without Graphviz on PATH: the dot text, under .dot.
  const std::string path = std::getenv("PATH");
  ::setenv("PATH", "/nonexistent", 1);
  const std::string fallback = train::write_diagram(dot, dir / "n.svg");
  ::setenv("PATH", path.c_str(), 1);
  EXPECT_EQ(fallback, dir / "n.dot");
  EXPECT_TRUE(fs::exists(dir / "n.dot"));
  // A fit draws it and its report embeds it.
  const auto r = train::fit(cfg);
  std::ifstream page(dir / "run/model.svg");
  ASSERT_TRUE(page.good());
  const auto res = test::run_tltrain("report " + (dir / "run"));
  ASSERT_EQ(res.exit_code, 0) << res.output;
  std::ifstream rep(dir / "run/report.html");
  const std::string html((std::istreambuf_iterator<char>(rep)), std::istreambuf_iterator<char>());
  const size_t at = html.find("<section id=\"model\">");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NE(html.find("<svg", at), std::string::npos);
  (void)r;
}
