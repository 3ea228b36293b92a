#pragma once
// Staged training, the library call behind `fit` and `finetune`: train::fit runs a train::Run
// (train/run.h) with the default callbacks (train/callbacks.h).
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "tltrain/config/run_config.h"
#include "tltrain/dist/context.h"

namespace tltrain::data {
struct Datasets;
}

namespace tltrain::train {

class FeatureSource;

struct FitOptions {
  bool resume = false;          ///< continue the run in cfg.output_dir from its checkpoints/last.pt
  std::string init_checkpoint;  ///< start from this checkpoint's weights (finetune)
  bool tensorboard = false;     ///< also write per-epoch scalars to RUN_DIR/tb/ (TensorBoard event file)
  dist::ProcessGroup* group = nullptr;  ///< data-parallel over these ranks (rank 0 writes); null: one process
  /// These train and validation sets instead of the config's (a cv fold; the run's split.json records them).
  const data::Datasets* datasets = nullptr;
  /// Feature caches for the stages before the backbone first trains; null: computed by the run.
  FeatureSource* features = nullptr;
};

struct FitResult {
  std::string run_dir;
  std::string best_checkpoint, last_checkpoint;
  std::string monitor;
  double best_value = 0;
  config::json history;  ///< one entry per epoch, as in log.jsonl
};

/// Trains every stage of CFG into cfg.output_dir. Usage error when that directory already holds
/// a run and RESUME is off; Interrupted after Ctrl-C (the last epoch's checkpoint stays valid).
FitResult fit(const config::RunConfig& cfg, const FitOptions& opts = {});

/// The resolved config of the run in RUN_DIR (its config.json), for --resume.
config::RunConfig load_run_dir_config(const std::string& run_dir);

/// Asks a running fit to stop after the current batch (signal-safe).
void request_stop();
/// Whether a stop was asked for since the current fit began.
bool stop_requested();

/// The c10d group of CTX's ranks training on DEVICE: NCCL on CUDA when the build has it, else Gloo
/// (dist::choose_backend); a Usage error when this build has no Gloo.
std::unique_ptr<dist::ProcessGroup> start_process_group(const dist::DistContext& ctx, double dist_timeout,
                                                        const c10::Device& device);

/// train::fit on the ranks the environment describes (torchrun, SLURM, tltrain launch; none: one
/// process): sets the output rank, starts the process group, and tells the others if this rank fails.
FitResult fit_on_ranks(const config::RunConfig& cfg, FitOptions opts, double dist_timeout = 60);

}  // namespace tltrain::train
