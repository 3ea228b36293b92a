#pragma once
// Callbacks: what happens around the training loop (checkpoints, logs, early stopping, the
// progress line, the NaN guard...) as small objects with one interface, called in the order they
// were given. A new behaviour is a new callback; the loop in run.cpp does not change.
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/config/names.h"
#include "tltrain/train/step.h"

namespace tltrain::model {
struct Predictions;
}

namespace tltrain::train {

class Run;

/// RECORD's number under KEY ("loss", "images_per_s"...); 0 when the epoch has none.
double metric_of(const config::json& record, const std::string& key);
double metric_of(const config::json& record, config::Metric metric);
/// Whether VALUE improves on BEST by more than MIN_DELTA (lower is better for losses); true
/// when there is no best yet.
bool improved(config::Metric metric, double value, double best, double min_delta, bool have_best);

/// After one optimizer step.
struct StepEnd {
  int64_t done = 0;          ///< steps done in this epoch, this one included
  int64_t total = 0;         ///< steps in the epoch
  const StepStats& step;     ///< this step's figures (this rank's share)
  const StepStats& epoch;    ///< the epoch's so far (this rank's share)
  double lr = 0;             ///< the head's learning rate for this step
};

/// After an epoch's training and validation; RECORD is its log.jsonl row, already in the history.
struct EpochEnd {
  const config::json& record;
  bool new_best = false;            ///< the run's monitored metric improved (best.pt)
  std::vector<std::string> notes;   ///< added to the epoch's summary line, e.g. "early stop: ..."
  /// This rank's validation predictions (indices into Run::validation_samples()); null without validation.
  const model::Predictions* val = nullptr;
};

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_run_begin(Run&) {}
  /// The stage's model, optimizer and data are set up (feature cache built).
  virtual void on_stage_begin(Run&) {}
  virtual void on_epoch_begin(Run&) {}
  virtual void on_step_end(Run&, const StepEnd&) {}
  virtual void on_epoch_end(Run&, EpochEnd&) {}
  virtual void on_stage_end(Run&) {}
  virtual void on_run_end(Run&) {}
};

}  // namespace tltrain::train
