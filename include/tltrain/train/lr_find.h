#pragma once
// `tltrain lr-find`: the learning-rate range test (Smith 2015; fastai's lr_find). One stage of a
// run config trains for STEPS batches while its rate grows exponentially from START_LR to END_LR;
// the loss of every step is recorded, smoothed as fastai smooths it, and the test stops once the
// smoothed loss passes DIVERGE times its best. The stages before it train first (or a checkpoint
// gives their weights), so the test sees the model the stage would see in a fit. No torch here.
#include <cstdint>
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/config/run_config.h"

namespace tltrain::data {
struct Datasets;
}

namespace tltrain::train {

class FeatureSource;

struct LrFindOptions {
  size_t stage = 0;           ///< which of the config's stages (0-based)
  double start_lr = 1e-7;     ///< fastai's defaults
  double end_lr = 10;
  int64_t steps = 100;
  double diverge = 4;         ///< stop when the smoothed loss exceeds this many times its best
  double beta = 0.98;         ///< smoothing: avg = beta·avg + (1 − beta)·loss, debiased by 1 − beta^(i+1)
  /// Start from this checkpoint's weights instead of training stages 0..stage-1 first.
  std::string checkpoint;
  std::string out_dir;        ///< default: the config's output_dir + "/lr_find/stage<N>"
  const data::Datasets* datasets = nullptr;  ///< these sets instead of the config's (tune's search split)
  FeatureSource* features = nullptr;         ///< a shared feature cache (tune's)
};

/// Where a curve suggests to train (each as fastai defines it).
struct LrSuggestions {
  double valley = 0;   ///< fastai's default: half-way along the longest stretch over which the loss keeps falling
  double steep = 0;    ///< where the smoothed loss falls fastest per log-rate
  double minimum = 0;  ///< a tenth of the rate at the lowest smoothed loss
};

/// The suggestions for a curve: LRS ascending, SMOOTHED its losses (at least 2 points). Pure, for tests.
LrSuggestions suggest_lr(const std::vector<double>& lrs, const std::vector<double>& smoothed);

/// What the test measured: OUT_DIR/lr_find.json holds the same (and lr_find.csv its points).
struct LrFindResult {
  std::string dir;
  std::vector<double> lrs, losses, smoothed;  ///< one per step run
  bool diverged = false;                      ///< stopped before END_LR because the loss diverged
  LrSuggestions suggestion;
  config::json to_json() const;
};

/// Runs the range test on CFG's stage O.stage. Usage error for a stage index out of range, an
/// LBFGS stage (it sets its own rates) or bad rates/steps; Data errors as fit's.
LrFindResult find_lr(const config::RunConfig& cfg, const LrFindOptions& o);

}  // namespace tltrain::train
