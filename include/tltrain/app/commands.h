#pragma once
// The subcommands as library calls: each takes its options struct and writes what the command
// prints to OUT (the CLI passes stdout; logs go to stderr), so the CLI only parses. This box sits at the end of the flow: it may use every other
// box and none uses it.
#include <functional>
#include <ostream>
#include <optional>
#include <string>
#include <vector>

#include "tltrain/data/tools.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/serve/server.h"
#include "tltrain/train/cv.h"
#include "tltrain/train/features.h"
#include "tltrain/train/finetune.h"
#include "tltrain/train/lr_find.h"
#include "tltrain/train/trainer.h"
#include "tltrain/train/tune.h"

namespace tltrain::app {

struct InspectRequest {
  std::string path;      ///< a backbone file or a checkpoint
  bool json = false;     ///< the report as JSON
  bool layers = false;   ///< every layer with the settings that train it
  std::string diagram;   ///< write the model diagram here (.svg with Graphviz, else .dot)
};

/// `inspect`: a backbone's metadata, blocks (with output shapes) and cut points; for a checkpoint
/// also its head and each stage's plan. With a diagram path, the picture of the model.
void inspect(const InspectRequest& request, std::ostream& out);

struct FitRequest {
  std::string config;                  ///< run config file (or resume)
  std::vector<std::string> overrides;  ///< --set a.b=value
  bool dry_run = false;                ///< print the resolved config and plan, train nothing
  std::string resume;                  ///< continue this run directory
  bool tensorboard = false;
  double dist_timeout = 60;  ///< seconds a collective may wait for the other ranks
};

/// `fit`: trains (on the ranks the environment describes), then evaluates the best checkpoint and
/// writes report.html; the summary goes to OUT on rank 0.
void fit(const FitRequest& request, std::ostream& out);

struct DistillRequest {
  FitRequest fit;
  std::string teacher;                 ///< checkpoint or exported model
  std::optional<double> temperature, alpha;  ///< unset: the config's (or the defaults)
};

/// `distill`: fit with every stage distilled from REQUEST's teacher (the config's run-level
/// "distill" set from the options; a stage's own "distill" still wins).
void distill(const DistillRequest& request, std::ostream& out);

struct CvRequest {
  std::string config;
  std::vector<std::string> overrides;
  int64_t folds = 5, repeats = 1;
  std::string resume;        ///< continue this cv directory
  double dist_timeout = 60;
};

/// `cv`: k-fold cross-validation (train::cross_validate), then the cv report; each fold's
/// figures and every metric's mean ± std with its 95% interval go to OUT on rank 0.
void cv(const CvRequest& request, std::ostream& out);

struct LrFindRequest {
  std::string config;
  std::vector<std::string> overrides;
  train::LrFindOptions options;
};

/// `lr-find`: the learning-rate range test (train::find_lr) and its page; the suggested rates
/// and the --set that uses one go to OUT.
void lr_find(const LrFindRequest& request, std::ostream& out);

struct TuneRequest {
  std::string config;
  std::vector<std::string> overrides;
  train::TuneOptions options;
  std::string resume;  ///< continue the search in this tune directory
  std::optional<double> budget_s;  ///< with RESUME: a new budget (the search's own otherwise); else OPTIONS' is used
  bool fit = false;    ///< then train the winner on all the training data (as `fit --config best_config.json`)
};

/// `tune`: the recipe search (train::tune), its ranking to OUT and its page; with FIT, the winner's fit.
void tune(const TuneRequest& request, std::ostream& out);

/// `features`: pooled backbone features as .npy + CSV (train::export_features); what it wrote to OUT.
void features(const train::FeaturesOptions& options, std::ostream& out);

/// `finetune`: one more stage from a checkpoint (train::finetune_config), trained and reported as fit.
void finetune(const train::FinetuneOptions& options, std::ostream& out);

/// `eval`: the report of OPTIONS' checkpoint, written to OUT (default RUN_DIR/eval.json, which
/// also refreshes RUN_DIR/report.html).
void evaluate(const eval::EvalOptions& options, const std::string& json_path, std::ostream& out);

/// `data check`: images per class and split and the files that cannot be used; a Data error
/// after the text when a split has no usable image.
void check_data(const std::string& config, const std::vector<std::string>& overrides, const data::CheckOptions& options,
                std::ostream& out);

/// `data preview`: a PNG grid of N augmented training samples of EPOCH.
void preview_data(const std::string& config, const std::vector<std::string>& overrides, const std::string& png, int64_t n,
                  int64_t epoch, std::ostream& out);

/// `bench data`: steady-state images/s of the training data pipeline.
void bench_data(const std::string& config, const std::vector<std::string>& overrides, const data::BenchOptions& options,
                std::ostream& out);

/// `serve`: answers requests until STOPPED returns true, then finishes those in flight.
void serve(const serve::ServeOptions& options, const std::function<bool()>& stopped, std::ostream& out);

}  // namespace tltrain::app
