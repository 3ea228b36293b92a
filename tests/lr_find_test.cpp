// The learning-rate range test (train::find_lr, `tltrain lr-find`): fastai's suggestions on
// curves whose answer is known, the exponential rates and smoothed losses it records on the tiny
// backbone, the earlier stages trained first, its page and the run report's chart, and its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/eval/report.h"
#include "tltrain/train/lr_find.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

struct Squares {
  test::TempDir dir{"lr_find"};
  Squares() {
    test::write_color_dataset(dir / "train", {"blue", "green", "red"}, 12);
    test::write_color_dataset(dir / "val", {"blue", "green", "red"}, 4);
  }
  config::RunConfig config(const std::string& out, const std::string& second_optimizer = "sgd") const {
    json c = {{"seed", 3},
              {"device", "cpu"},
              {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}, {"image_size", 16}}},
              {"model", {{"backbone", test::tiny_backbone()}}},
              {"output_dir", dir / out},
              {"stages", json::array({{{"name", "head"}, {"epochs", 2}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.01}}}},
                                      {{"name", "tune"}, {"epochs", 1}, {"trainable", "all"},
                                       {"optimizer", {{"name", second_optimizer}, {"lr", 0.001}}}}})}};
    return config::parse_run_config(c, "lr_find.json");
  }
};

std::string read(const std::string& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), {}};
}

}  // namespace

TEST(LrSuggest, FindsTheValleyTheSteepestDropAndTheMinimumOfAKnownCurve) {
  // Flat until 1e-4, falling linearly in log-rate to its lowest at 1e-2, then climbing.
  std::vector<double> lrs, loss;
  for (int i = 0; i <= 60; ++i) {
    const double e = -6 + i * 0.1;  // log10 rate from -6 to 0
    lrs.push_back(std::pow(10.0, e));
    loss.push_back(e < -4 ? 2.0 - 0.001 * (e + 6) : e < -2 ? 1.998 - 0.9 * (e + 4) : 0.198 + 2.0 * (e + 2));
  }
  const auto s = train::suggest_lr(lrs, loss);
  EXPECT_NEAR(std::log10(s.minimum), -3.0, 1e-9) << "a tenth of the rate at the lowest loss (1e-2)";
  EXPECT_GE(std::log10(s.steep), -4.0 - 1e-9);
  EXPECT_LT(std::log10(s.steep), -2.0) << "the steepest fall is in the falling stretch";
  // The whole curve up to 1e-2 only falls (41 points): fastai's valley() takes its start one before
  // (-1) and goes a third plus a sixth of the way along, to point -1 + 13 + 6.
  EXPECT_NEAR(std::log10(s.valley), -6 + 0.1 * 18, 1e-9);
}

TEST(LrFind, RecordsExponentialRatesAndSmoothedLossesAndWritesItsPage) {
  Squares p;
  const auto cfg = p.config("run");
  train::LrFindOptions o;
  o.start_lr = 1e-5;
  o.end_lr = 1;
  o.steps = 30;
  const auto r = train::find_lr(cfg, o);
  EXPECT_EQ(r.dir, p.dir / "run/lr_find/stage0");
  ASSERT_GE(r.lrs.size(), 5u);
  for (size_t k = 0; k < r.lrs.size(); ++k)
    EXPECT_NEAR(r.lrs[k], 1e-5 * std::pow(1e5, static_cast<double>(k) / 29), 1e-9 * r.lrs[k]) << "step " << k;
  EXPECT_DOUBLE_EQ(r.smoothed[0], r.losses[0]) << "the average is debiased: the first point is its loss";
  double avg = 0;
  for (size_t k = 0; k < r.lrs.size(); ++k) {
    avg = 0.98 * avg + 0.02 * r.losses[k];
    EXPECT_NEAR(r.smoothed[k], avg / (1 - std::pow(0.98, static_cast<double>(k + 1))), 1e-6) << "step " << k;
  }
  if (r.diverged) EXPECT_GT(r.smoothed.back(), 4 * *std::min_element(r.smoothed.begin(), r.smoothed.end()));
  // The suggestions are the curve's, over the points that vote: not the first tenth (3 of 30) nor
  // the last five, when the curve is long enough to leave them out.
  const size_t n = r.lrs.size(), from = n > 3 + 7 ? 3 : 0, to = n > 3 + 7 ? n - 5 : n;
  const auto want = train::suggest_lr({r.lrs.begin() + from, r.lrs.begin() + to}, {r.smoothed.begin() + from, r.smoothed.begin() + to});
  EXPECT_DOUBLE_EQ(r.suggestion.valley, want.valley);
  EXPECT_DOUBLE_EQ(r.suggestion.steep, want.steep);
  EXPECT_DOUBLE_EQ(r.suggestion.minimum, want.minimum);
  const json j = config::parse_json_file(r.dir + "/lr_find.json");
  EXPECT_EQ(j.at("points").size(), r.lrs.size());
  EXPECT_EQ(j.at("options").at("steps"), 30);
  EXPECT_DOUBLE_EQ(j.at("suggestion").at("valley").get<double>(), r.suggestion.valley);
  std::ifstream csv(r.dir + "/lr_find.csv");
  size_t lines = 0;
  for (std::string line; std::getline(csv, line);) ++lines;
  EXPECT_EQ(lines, r.lrs.size() + 1);
  const std::string page = read(eval::write_lr_find_page(r.dir));
  EXPECT_NE(page.find("id=\"plot-lr-find\""), std::string::npos);
  EXPECT_NE(page.find("valley"), std::string::npos);
  EXPECT_FALSE(fs::exists(r.dir + "/before")) << "stage 0 has nothing before it to train";

  // The run's own report, once it is fitted, shows the test it holds.
  const auto fitted = train::fit(cfg);
  eval::write_report(fitted.run_dir);
  EXPECT_NE(read(fitted.run_dir + "/report.html").find("id=\"plot-lr-find-stage0\""), std::string::npos);
}

TEST(LrFind, ALaterStageStartsAfterTheStagesBeforeItOrFromACheckpoint) {
  Squares p;
  const auto cfg = p.config("later");
  train::LrFindOptions o;
  o.stage = 1;
  o.steps = 8;
  o.start_lr = 1e-6;
  o.end_lr = 1e-3;
  const auto r = train::find_lr(cfg, o);
  EXPECT_TRUE(fs::exists(r.dir + "/before/checkpoints/last.pt")) << "stage 0 trained first";
  EXPECT_EQ(r.lrs.size(), 8u);
  EXPECT_EQ(r.dir, p.dir / "later/lr_find/stage1");
  // From a checkpoint instead, even one inside the last test's folder: nothing trains before, the
  // rerun replaces the last test's curve and keeps the checkpoint it starts from.
  o.checkpoint = r.dir + "/before/checkpoints/last.pt";
  const auto before = fs::last_write_time(o.checkpoint);
  const auto again = train::find_lr(cfg, o);
  EXPECT_EQ(again.lrs.size(), 8u);
  ASSERT_TRUE(fs::exists(o.checkpoint));
  EXPECT_EQ(fs::last_write_time(o.checkpoint), before) << "the stages before were trained again";
  EXPECT_EQ(config::parse_json_file(again.dir + "/lr_find.json").at("options").at("checkpoint"), o.checkpoint);
}

TEST(LrFind, RefusesWhatHasNoRangeToTest) {
  Squares p;
  train::LrFindOptions o;
  o.stage = 2;
  test::expect_error([&] { train::find_lr(p.config("bad"), o); }, ErrorKind::Usage, "--stage 2: the config has 2 stages");
  o.stage = 1;
  test::expect_error([&] { train::find_lr(p.config("bad", "lbfgs"), o); }, ErrorKind::Usage, "lbfgs");
  o.stage = 0;
  o.start_lr = 1;
  o.end_lr = 0.1;
  test::expect_error([&] { train::find_lr(p.config("bad"), o); }, ErrorKind::Usage, "the range must grow");
  // --out names a folder of the user's: refused unless empty or a range test's.
  test::write_text(p.dir / "mine/notes.txt", "keep me");
  o.start_lr = 1e-5;
  o.end_lr = 1;
  o.out_dir = p.dir / "mine";
  test::expect_error([&] { train::find_lr(p.config("bad"), o); }, ErrorKind::Usage, "holds other files");
  EXPECT_TRUE(fs::exists(p.dir / "mine/notes.txt"));
  auto cli = test::run_tltrain("lr-find --config " + (p.dir / "missing.json"));
  EXPECT_EQ(cli.exit_code, exit_code::data) << cli.output;
  EXPECT_NE(cli.output.find("missing.json"), std::string::npos) << cli.output;
}
