#pragma once
// The callbacks every fit runs. Their order is part of their meaning: early stopping marks the
// stage over before the checkpoints look at it, and restores the best weights before the
// stage's last.pt is written. Rank 0 writes files; every rank takes part in the stop vote.
#include <map>
#include <memory>
#include <vector>

#include "tltrain/train/callback.h"
#include "tltrain/train/event_file.h"
#include "tltrain/train/run_log.h"
#include "tltrain/train/trainer.h"

namespace tltrain::train {

/// NanGuard, ProgressBar, DebugKill (when asked for), RankSync, EarlyStopping, EpochSummary,
/// Checkpoints, EpochLogs, SkippedReport, ModelDiagram, TensorBoard (with opts.tensorboard).
std::vector<std::unique_ptr<Callback>> default_callbacks(const FitOptions& opts);

/// Stops the run with the step's figures and the last good checkpoint when the loss is NaN or infinite.
class NanGuard final : public Callback {
 public:
  void on_step_end(Run& run, const StepEnd& e) override;
};

/// The terminal's rewritten progress line, one per epoch.
class ProgressBar final : public Callback {
 public:
  void on_epoch_begin(Run& run) override;
  void on_step_end(Run& run, const StepEnd& e) override;
  void on_epoch_end(Run& run, EpochEnd& e) override;

 private:
  void finish();
  std::unique_ptr<Progress> bar_;  ///< null once finished
};

/// Ranks agree on a stop (Ctrl-C on one ends every rank at the same step) and tell the group
/// they are alive; a requested stop ends the run as Interrupted, resumable from last.pt.
class RankSync final : public Callback {
 public:
  void on_step_end(Run& run, const StepEnd& e) override;
};

/// The resume and dead-rank tests' kill -9 at a chosen global step (and rank), from
/// TLTRAIN_DEBUG_KILL_AFTER_STEPS / TLTRAIN_DEBUG_KILL_RANK.
class DebugKill final : public Callback {
 public:
  DebugKill(int64_t step, int64_t rank) : step_(step), rank_(rank) {}
  void on_step_end(Run& run, const StepEnd& e) override;

 private:
  int64_t step_, rank_;  ///< rank -1: every rank
};

/// Keras's EarlyStopping within a stage: stops after `patience` epochs without improvement and
/// (restore_best) ends the stage with the weights of its best epoch, kept in stage_best.pt
/// so that a resumed stage can still restore them.
class EarlyStopping final : public Callback {
 public:
  void on_stage_begin(Run& run) override;
  void on_epoch_end(Run& run, EpochEnd& e) override;
  void on_stage_end(Run& run) override;
  void on_run_end(Run& run) override;

 private:
  std::map<std::string, torch::Tensor> best_weights_;
};

/// One log line per epoch: losses, accuracies, rate, speed, and the other callbacks' notes.
class EpochSummary final : public Callback {
 public:
  void on_epoch_end(Run& run, EpochEnd& e) override;
};

/// best.pt when the run's monitored metric improves; last.pt after every epoch (with the
/// optimizer's state) and at the end of each stage (pointing at the next stage's start).
class Checkpoints final : public Callback {
 public:
  void on_stage_begin(Run& run) override;
  void on_epoch_end(Run& run, EpochEnd& e) override;
  void on_stage_end(Run& run) override;

 private:
  bool stage_saved_ = false;  ///< this stage has a saved epoch (a 0-epoch stage writes nothing)
};

/// log.csv and log.jsonl, rewritten from the history after every epoch.
class EpochLogs final : public Callback {
 public:
  void on_epoch_end(Run& run, EpochEnd& e) override;
};

/// Warns about files left out as they are met and keeps RUN_DIR/skipped.json current.
class SkippedReport final : public Callback {
 public:
  void on_run_begin(Run& run) override { report(run); }
  void on_stage_begin(Run& run) override { report(run); }
  void on_epoch_end(Run& run, EpochEnd&) override { report(run); }

 private:
  void report(Run& run);
  size_t reported_ = 0;
};

/// RUN_DIR/model.svg (model.dot without Graphviz) when a run starts: the backbone's blocks, the
/// head and what each stage freezes and trains (train/diagram.h); report.html embeds it.
class ModelDiagram final : public Callback {
 public:
  void on_run_begin(Run& run) override;
};

/// Per-epoch scalars in RUN_DIR/tb/: a new event file per fit call (TensorBoard merges the folder).
class TensorBoard final : public Callback {
 public:
  void on_run_begin(Run& run) override;
  void on_epoch_end(Run& run, EpochEnd& e) override;

 private:
  std::unique_ptr<EventFileWriter> writer_;
};

}  // namespace tltrain::train
