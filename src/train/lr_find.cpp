#include "tltrain/train/lr_find.h"

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/data/dataset.h"
#include "tltrain/train/callbacks.h"
#include "tltrain/train/run.h"

namespace fs = std::filesystem;

namespace tltrain::train {

using config::json;

namespace {

/// Thrown by the recorder to end the range test mid-epoch; never leaves find_lr.
struct RangeOver {};

/// Records each step's loss and rate, and ends the test at its last step or on divergence.
class RangeRecorder final : public Callback {
 public:
  RangeRecorder(const LrFindOptions& o, LrFindResult& r) : o_(o), r_(r) {}

  void on_step_end(Run&, const StepEnd& e) override {
    const double loss = e.step.loss();
    avg_ = o_.beta * avg_ + (1 - o_.beta) * loss;
    const double smoothed = avg_ / (1 - std::pow(o_.beta, static_cast<double>(r_.lrs.size() + 1)));
    r_.lrs.push_back(e.lr);
    r_.losses.push_back(loss);
    r_.smoothed.push_back(smoothed);
    // Not while the average warms up (the first tenth, whose points hold a few batches each): a
    // model that starts at a low loss (a trained head) would stop at its first noisy batch, or
    // against a lucky first one. A non-finite loss stops at once.
    const bool warm = static_cast<int64_t>(r_.lrs.size()) > o_.steps / 10;
    if (warm) best_ = std::min(best_, smoothed);
    if (!std::isfinite(smoothed) || (warm && smoothed > o_.diverge * best_)) {
      r_.diverged = true;
      throw RangeOver{};
    }
    if (static_cast<int64_t>(r_.lrs.size()) >= o_.steps) throw RangeOver{};
  }

 private:
  const LrFindOptions& o_;
  LrFindResult& r_;
  double avg_ = 0, best_ = std::numeric_limits<double>::infinity();
};

/// CFG with only its stages [FIRST, LAST) (also in the resolved config the run directory records), into DIR.
config::RunConfig with_stages(const config::RunConfig& cfg, size_t first, size_t last, const std::string& dir) {
  config::RunConfig c = cfg;
  c.stages.assign(cfg.stages.begin() + static_cast<std::ptrdiff_t>(first), cfg.stages.begin() + static_cast<std::ptrdiff_t>(last));
  json stages = json::array();
  for (size_t i = first; i < last; ++i) stages.push_back(cfg.resolved.at("stages").at(i));
  c.resolved["stages"] = stages;
  c.output_dir = dir;
  c.resolved["output_dir"] = dir;
  return c;
}

std::string csv_of(const LrFindResult& r) {
  std::ostringstream s;
  s.precision(9);
  s << "step,lr,loss,smoothed_loss\n";
  for (size_t i = 0; i < r.lrs.size(); ++i) s << i << "," << r.lrs[i] << "," << r.losses[i] << "," << r.smoothed[i] << "\n";
  return s.str();
}

}  // namespace

LrSuggestions suggest_lr(const std::vector<double>& lrs, const std::vector<double>& smoothed) {
  TLTRAIN_ASSERT(lrs.size() == smoothed.size() && lrs.size() >= 2, "suggest_lr needs two points or more");
  const size_t n = lrs.size();
  LrSuggestions s;
  // minimum: fastai's lr_min, a tenth of the rate at the lowest loss (the lowest is already too fast).
  const size_t lowest = static_cast<size_t>(std::min_element(smoothed.begin(), smoothed.end()) - smoothed.begin());
  s.minimum = lrs[lowest] / 10;
  // steep: the most negative slope of loss against log-rate, between neighbouring points.
  size_t steepest = 0;
  double most = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i + 1 < n; ++i) {
    const double slope = (smoothed[i + 1] - smoothed[i]) / (std::log(lrs[i + 1]) - std::log(lrs[i]));
    if (slope < most) most = slope, steepest = i;
  }
  s.steep = lrs[steepest];
  // valley: the longest stretch over which the loss keeps falling (longest decreasing
  // subsequence ending at each point), then a third plus a sixth of the way along it; as fastai's
  // valley() computes it, its start one before the stretch and its update inside the inner loop.
  std::vector<int64_t> run(n, 1);
  int64_t end = 0, start = 0;
  for (size_t i = 1; i < n; ++i)
    for (size_t j = 0; j < i; ++j) {
      if (smoothed[i] < smoothed[j] && run[i] < run[j] + 1) run[i] = run[j] + 1;
      if (run[static_cast<size_t>(end)] < run[i]) end = static_cast<int64_t>(i), start = end - run[static_cast<size_t>(end)];
    }
  const double third = static_cast<double>(end - start) / 3;
  const int64_t at = start + static_cast<int64_t>(third) + static_cast<int64_t>(third / 2);
  s.valley = lrs[static_cast<size_t>(std::clamp<int64_t>(at, 0, static_cast<int64_t>(n) - 1))];
  return s;
}

json LrFindResult::to_json() const {
  json points = json::array();
  for (size_t i = 0; i < lrs.size(); ++i) points.push_back({{"lr", lrs[i]}, {"loss", losses[i]}, {"smoothed", smoothed[i]}});
  return {{"dir", dir},
          {"steps", lrs.size()},
          {"diverged", diverged},
          {"suggestion", {{"valley", suggestion.valley}, {"steep", suggestion.steep}, {"minimum", suggestion.minimum}}},
          {"points", points}};
}

LrFindResult find_lr(const config::RunConfig& cfg, const LrFindOptions& o) {
  TLTRAIN_CHECK(o.stage < cfg.stages.size(), ErrorKind::Usage,
                "--stage " + std::to_string(o.stage) + ": the config has " + std::to_string(cfg.stages.size()) + " stages (0-based)");
  const config::StageConfig& target = cfg.stages[o.stage];
  const std::string where = "stages[" + std::to_string(o.stage) + "]";
  TLTRAIN_CHECK(target.optimizer.name != config::Optimizer::Lbfgs, ErrorKind::Usage,
                where + " uses lbfgs, whose line search sets its own step sizes: a range test means nothing for it");
  TLTRAIN_CHECK(o.start_lr > 0 && o.end_lr > o.start_lr, ErrorKind::Usage,
                "the range must grow: --start-lr " + log::general(o.start_lr) + " must be > 0 and below --end-lr " + log::general(o.end_lr));
  TLTRAIN_CHECK(o.steps >= 5, ErrorKind::Usage, "--steps " + std::to_string(o.steps) + ": a curve needs 5 steps or more (fastai runs 100)");
  TLTRAIN_CHECK(o.diverge > 1, ErrorKind::Usage, "--diverge must be > 1 (fastai stops at 4 times the best loss)");
  LrFindResult r;
  r.dir = o.out_dir.empty() ? cfg.output_dir + "/lr_find/stage" + std::to_string(o.stage) : o.out_dir;
  // A rerun replaces the last test's files, and nothing else: a folder of other files is refused.
  if (fs::exists(r.dir) && !fs::is_empty(r.dir))
    TLTRAIN_CHECK(fs::exists(r.dir + "/lr_find.json"), ErrorKind::Usage,
                  "'" + r.dir + "' holds other files than a range test's: give --out an empty or new folder");
  for (const char* f : {"lr_find.json", "lr_find.csv", "lr_find.html", "range"}) fs::remove_all(r.dir + "/" + f);

  FitOptions fo;
  fo.init_checkpoint = o.checkpoint;
  fo.datasets = o.datasets;
  fo.features = o.features;
  if (o.stage > 0 && o.checkpoint.empty()) {
    log::info("lr-find: training stages 0.." + std::to_string(o.stage - 1) + " first, so the test starts where " + where + " would");
    fs::remove_all(r.dir + "/before");  // the last test's (a --checkpoint in it is not removed: this branch has none)
    fo.init_checkpoint = fit(with_stages(cfg, 0, o.stage, r.dir + "/before"), fo).last_checkpoint;
  }
  config::RunConfig range = with_stages(cfg, o.stage, o.stage + 1, r.dir + "/range");
  config::StageConfig& st = range.stages[0];
  // One epoch of STEPS batches from the endless stream, at start_lr · (end_lr/start_lr)^(k/(steps-1)):
  // the exponential schedule with a growth rate.
  st.epochs = 1;
  st.steps_per_epoch = o.steps;
  st.optimizer.lr = o.start_lr;
  st.schedule = config::ScheduleConfig{};
  st.schedule.name = config::Schedule::Exponential;
  st.schedule.decay_rate = o.end_lr / o.start_lr;
  st.schedule.decay_steps = o.steps - 1;
  st.early_stopping.enabled = false;
  json& rs = range.resolved["stages"][0];
  rs["epochs"] = 1;
  rs["steps_per_epoch"] = o.steps;
  rs["optimizer"]["lr"] = o.start_lr;
  rs["schedule"] = {{"name", "exponential"}, {"decay_rate", st.schedule.decay_rate}, {"decay_steps", st.schedule.decay_steps}};
  rs["early_stopping"]["enabled"] = false;
  // The range run never validates and reads the training images alone: its config says so.
  range.data.val.clear();
  range.resolved["data"]["val"] = nullptr;

  // The test never validates: the range run gets the training images alone (a separate
  // validation set is not read; a validation_split's share stays out of train).
  data::Datasets train_only;
  if (!o.datasets) {
    config::DataConfig d = cfg.data;
    d.val.clear();
    train_only.train = data::load_datasets(d, static_cast<uint64_t>(cfg.seed)).train;
    fo.datasets = &train_only;
  }
  std::vector<std::unique_ptr<Callback>> callbacks;
  callbacks.push_back(std::make_unique<ProgressBar>());
  callbacks.push_back(std::make_unique<RankSync>());  // Ctrl-C ends the test as it ends a fit
  callbacks.push_back(std::make_unique<RangeRecorder>(o, r));
  log::info("lr-find: " + where + " '" + target.name + "', " + std::to_string(o.steps) + " steps from " + log::general(o.start_lr) + " to " + log::general(o.end_lr) +
            " (the stage's own rate and schedule are replaced)");
  try {
    Run(range, fo, std::move(callbacks)).fit();
  } catch (const RangeOver&) {
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Interrupted) throw;
    TLTRAIN_FAIL(ErrorKind::Interrupted, "lr-find interrupted: nothing to resume, run it again");
  }
  // As fastai: the first tenth (the smoothing's warm-up) and the last 5 points (the divergence)
  // do not vote, nor does a non-finite loss.
  const size_t skip_start = static_cast<size_t>(o.steps / 10), n = r.lrs.size();
  std::vector<double> lrs, smoothed;
  for (size_t i = n > skip_start + 5 + 2 ? skip_start : 0; i < (n > skip_start + 5 + 2 ? n - 5 : n); ++i)
    if (std::isfinite(r.smoothed[i])) lrs.push_back(r.lrs[i]), smoothed.push_back(r.smoothed[i]);
  TLTRAIN_CHECK(lrs.size() >= 2, ErrorKind::Data,
                "lr-find ran " + std::to_string(n) + " steps before the loss diverged: too few for a curve; start lower (--start-lr) or " +
                    "run more steps (--steps)");
  r.suggestion = suggest_lr(lrs, smoothed);
  json j = r.to_json();
  j["options"] = {{"stage", o.stage}, {"stage_name", target.name}, {"start_lr", o.start_lr}, {"end_lr", o.end_lr}, {"steps", o.steps},
                  {"diverge", o.diverge}, {"beta", o.beta}, {"checkpoint", o.checkpoint}};
  write_file_atomically(r.dir + "/lr_find.json", j.dump(1) + "\n");
  write_file_atomically(r.dir + "/lr_find.csv", csv_of(r));
  return r;
}

}  // namespace tltrain::train
