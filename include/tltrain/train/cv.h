#pragma once
// `tltrain cv`: k-fold cross-validation of a run config. The folds are stratified and seeded over
// the training data (a separate validation set is merged into it); each fold is a Run in its own
// directory, RUN_DIR/foldK (RUN_DIR/rR_foldK with repeats). Stages before the backbone first trains
// take their feature caches from one cache over every image, computed once for all folds.
#include <string>
#include <utility>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/dist/context.h"

namespace tltrain::train {

struct CvOptions {
  int64_t folds = 5;
  int64_t repeats = 1;                  ///< repeated k-fold: new folds from (seed, repeat)
  bool resume = false;                  ///< continue cfg.output_dir's cv at the fold and epoch where it stopped
  dist::ProcessGroup* group = nullptr;  ///< data-parallel within each fold
};

/// Mean, sample standard deviation and the half-width of the 95% interval of the mean
/// (Student's t with n - 1 degrees of freedom) of some folds' values.
struct Spread {
  double mean = 0, std = 0, ci95 = 0;
};
Spread spread(const std::vector<double>& values);

/// RUN_DIR/cv.json: the options, each fold's best epoch record (by the config's monitor), every
/// val_* metric's Spread over the folds, and the out-of-fold predictions' accuracy and confusion.
/// Also written: cv_config.json (the resolved config), folds.json (each image's fold per repeat)
/// and oof_predictions.csv (each image's probabilities from the fold that held it out).
struct CvResult {
  std::string dir;
  config::json summary;
};

/// Runs every fold of CFG not done yet. Usage error when cfg.output_dir already holds a cv run and
/// RESUME is off; Interrupted after Ctrl-C (resume continues the fold from its last.pt).
CvResult cross_validate(const config::RunConfig& cfg, const CvOptions& o);

/// cross_validate on the ranks the environment describes (as fit_on_ranks).
CvResult cross_validate_on_ranks(const config::RunConfig& cfg, CvOptions o, double dist_timeout = 60);

/// The config and options of the cv run in DIR, for --resume.
std::pair<config::RunConfig, CvOptions> load_cv_dir(const std::string& dir);

}  // namespace tltrain::train
