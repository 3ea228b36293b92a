#pragma once
// One training run: it owns the run directory, the data, the model and the typed run state, and
// drives stages → epochs → steps. Everything around that loop (checkpoints, logs, early
// stopping, the progress line, the NaN guard) is a Callback (train/callbacks.h); what a stage
// minimises is its Objective (train/objective.h).
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/config/run_config.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/data/skipped.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/inference.h"
#include "tltrain/train/callback.h"
#include "tltrain/train/feature_cache.h"
#include "tltrain/train/objective.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/trainer.h"

namespace tltrain::train {

/// Where a run keeps its files.
struct RunPaths {
  explicit RunPaths(const std::string& dir);
  std::string dir, checkpoints, last, best, stage_best, skipped;
};

class Run {
 public:
  /// Loads the data and the model, and either starts CFG's run directory or (opts.resume) reads
  /// where it stands from its last.pt. CALLBACKS are called in this order at every event.
  Run(const config::RunConfig& cfg, const FitOptions& opts, std::vector<std::unique_ptr<Callback>> callbacks);
  ~Run();
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  /// Trains the remaining stages.
  FitResult fit();

  // What callbacks see.
  const config::RunConfig& config() const { return cfg_; }
  const RunPaths& paths() const { return paths_; }
  size_t stage_index() const { return state_.stage; }
  const config::StageConfig& stage() const { return cfg_.stages[state_.stage]; }
  int64_t epoch() const { return state_.epoch; }  ///< 0-based epoch of the stage now running
  int64_t steps_per_epoch() const;
  bool resumed_stage() const { return resumed_stage_; }  ///< this stage continues a saved run
  bool stage_over() const;  ///< after this epoch the stage ends (its last epoch, or stopped early)
  checkpoint::Progress& state() { return state_; }  ///< typed state; callbacks update stage_state
  const config::json& history() const { return history_; }
  model::Classifier& model() { return *model_; }
  torch::optim::Optimizer* optimizer();  ///< the current stage's
  dist::ProcessGroup* group() const { return opts_.group; }
  data::SkippedLog& skipped() { return skipped_; }
  /// The validation images of the stage now running (EpochEnd::val's indices point into them).
  const std::vector<data::Sample>& validation_samples() const;
  /// The JSON record a checkpoint saved now stores, for resuming at (STAGE, EPOCH).
  config::json checkpoint_info(size_t stage, int64_t epoch) const;

 private:
  struct Stage;  // one stage's optimizer, objective and data, built by begin_stage

  void start_or_resume();
  void run_stage();
  void begin_stage();
  void build_stage_data(Stage& s);
  void run_epoch();
  StepStats train_epoch(int64_t epoch_id);
  void after_step(const StepStats& step, StepStats& epoch, int64_t done);
  void set_lr();
  /// val_loss and val_accuracy over every rank's share, and the objective's scores, into RECORD;
  /// returns this rank's predictions.
  model::Predictions validate(config::json& record);
  /// Augmentation epoch ids STAGE uses up (its epochs, or the passes its steps_per_epoch touch).
  int64_t augment_epochs(size_t stage) const;
  /// The backbone is still the loaded one when STAGE begins (no earlier stage trained it).
  bool backbone_as_loaded(size_t stage) const;
  /// A Data error when the model gives the same output for every validation image.
  void check_variation(const model::Predictions& p);
  data::LoaderOptions loader_options(bool train) const;
  template <typename Event>
  void notify(void (Callback::*event)(Run&, Event&), Event& e) {
    for (auto& c : callbacks_) ((*c).*event)(*this, e);
  }
  void notify(void (Callback::*event)(Run&));

  config::RunConfig cfg_;  ///< the config, with normalization "dataset" statistics once computed
  FitOptions opts_;
  RunPaths paths_;
  torch::Device device_;
  int64_t rank_ = 0, world_ = 1, loader_threads_ = 0;
  uint64_t seed_ = 0;
  data::Datasets ds_;
  data::Preprocess pre_;
  std::vector<StagePlan> plan_;
  std::unique_ptr<model::Classifier> model_;
  std::vector<std::unique_ptr<Callback>> callbacks_;
  data::SkippedLog skipped_;
  std::unique_ptr<data::Loader> val_loader_;

  checkpoint::Progress state_;
  config::json history_;
  bool resumed_stage_ = false;
  std::shared_ptr<torch::serialize::InputArchive> resume_optimizer_;
  int64_t epoch_base_ = 0;  ///< augmentation epochs run on across stages, so stage 2 sees new draws
  bool checked_variation_ = false;  ///< the first validation with frozen BatchNorm checks that outputs vary
  std::unique_ptr<Stage> stage_;
};

}  // namespace tltrain::train
