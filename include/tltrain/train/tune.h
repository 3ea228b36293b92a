#pragma once
// `tltrain tune`: searches the transfer recipe around a run config within a time budget. The
// recipe is the two stages the tutorials teach, a head on the frozen backbone, then the top of the
// backbone at a low rate; the search space (SearchSpace) is centred on the config's own values.
// Candidates are drawn from the seed and judged by successive halving: every candidate's fine-tune
// stage trains for the first rung's epochs (or its own, when shorter), the best 1/eta go on to the
// next rung's (retrained from their head, so each result is a complete schedule), and so on up to
// the longest fine-tune stage the space allows.
// Candidates with the same head stage share one head run, and head runs share one feature cache.
// Everything is judged on a holdout split of the training images: the validation set the user
// reports is never read. Each run is a directory under DIR; tune.json records where the search
// stands, so --resume continues after a kill. No torch here.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/config/run_config.h"

namespace tltrain::dist {
class ProcessGroup;
}

namespace tltrain::train {

/// "30m", "1.5h", "90s", "45" (seconds) → seconds; a Usage error naming VALUE otherwise.
double parse_duration(const std::string& value);

struct TuneOptions {
  double budget_s = 1800;  ///< no trial starts after this much wall-clock time (resumed runs count what they spent)
  int64_t trials = 9;      ///< candidates at the first rung: the config itself and TRIALS - 1 drawn
  config::Metric metric = config::Metric::ValAccuracy;  ///< on the holdout
  double holdout = 0.2;    ///< share of the training images the search validates on (one stratified fold)
  int64_t eta = 3;         ///< successive halving keeps the best 1/eta at each rung
  bool lr_find = true;     ///< centre the head's rate range on a range test's valley (else on the config's rate)
  bool resume = false;     ///< continue the search in cfg.output_dir/tune
  /// One trial per rank: each rank trains its share of every rung as a one-process fit, and the
  /// ranks, which share the output folder, exchange results through it. Null: one process.
  dist::ProcessGroup* group = nullptr;
};

/// One point of the search space: the values a trial's config takes.
struct Candidate {
  double head_lr = 1e-3;
  int64_t head_epochs = 1;
  /// Share of the backbone's blocks the fine-tune stage trains; 0: the head alone; < 0: the fine-tune
  /// stage's own trainable part (the config itself, whatever way it names it).
  double unfreeze = 0;
  double finetune_lr = 1e-4;
  std::string optimizer = "sgd";  ///< the fine-tune stage's
  double backbone_lr_mult = 1;
  double label_smoothing = 0;   ///< the fine-tune stage's
  double augment = 1;           ///< the config's augmentation ranges scaled by this
  int64_t finetune_epochs = 5;  ///< the fine-tune stage's whole schedule (a rung trains at most this)
  /// The fine-tune epochs at a rung of RUNG_EPOCHS: the rung's, or the candidate's own when shorter.
  int64_t epochs_at(int64_t rung_epochs) const { return std::min(finetune_epochs, rung_epochs); }
  config::json to_json() const;
  static Candidate from_json(const config::json& j);
  /// The config itself as a candidate: the search's first, so that it returns the config when
  /// nothing beats it on the holdout.
  static Candidate of_config(const config::RunConfig& cfg);
};

/// The documented space around a config: log-uniform rates within a factor of 10 either side of
/// their centre, and a few choices for the rest.
struct SearchSpace {
  std::pair<double, double> head_lr, finetune_lr;   ///< log-uniform
  std::vector<int64_t> head_epochs;                 ///< half, as many and twice the config's
  std::vector<double> unfreeze{0, 0.1, 0.2, 0.3, 0.5};
  std::vector<std::string> optimizers;              ///< the config's fine-tune optimizer, adam and sgd
  std::vector<double> backbone_lr_mult{1, 0.3, 0.1};
  std::vector<double> label_smoothing{0, 0.1};
  std::vector<double> augment{0.5, 1, 1.5};
  /// Half, as many, twice and three times the config's fine-tune epochs: the tutorials' schedules
  /// are often too short for data unlike ImageNet, and only a longer candidate can show it.
  std::vector<int64_t> finetune_epochs;
  int64_t longest_finetune() const { return finetune_epochs.empty() ? 1 : finetune_epochs.back(); }
  /// Drawn candidates come in families around one head stage (a tree: several fine-tunings of one
  /// trained head, as a user tries them), which share its run.
  int64_t candidates_per_head = 3;

  /// The space around CFG (stage 0 a head stage; stage 1, when present, the fine-tune template),
  /// its head rate centred on HEAD_LR_CENTRE (0: the config's).
  static SearchSpace around(const config::RunConfig& cfg, double head_lr_centre = 0);
  config::json to_json() const;
  /// N candidates from SEED: the same N for the same seed, whatever else runs (the search adds the
  /// config itself in front of N - 1 of them).
  std::vector<Candidate> sample(int64_t n, uint64_t seed) const;
};

/// The config JSON of candidate C: BASE (a resolved run config) with C's values, its fine-tune
/// stage FINETUNE_EPOCHS long (none when C trains the head alone). Stages after the second are dropped.
config::json candidate_config(const config::json& base, const Candidate& c, int64_t finetune_epochs);

/// The fine-tune epochs of each rung: the last is FINETUNE_EPOCHS (the space's longest), each earlier
/// one eta times fewer (at least 1).
std::vector<int64_t> rung_epochs(int64_t finetune_epochs, int64_t eta, int64_t rungs = 3);

struct TuneResult {
  std::string dir;          ///< cfg.output_dir/tune
  std::string best_config;  ///< DIR/best_config.json: the winner as a plain config (the user's data, output DIR/best)
  config::json summary;     ///< tune.json
};

/// Runs (or with O.resume continues) the search. Usage error for a config whose first stage does not
/// train the head alone, or a directory that already holds a search without --resume.
TuneResult tune(const config::RunConfig& cfg, const TuneOptions& o);

/// tune on the ranks the environment describes (torchrun, SLURM, tltrain launch; as fit_on_ranks):
/// every rank gets the same result; rank 0 writes the search's own files. THEN runs on every rank
/// with the result and the ranks' group (null: one process), while the group lives: what comes
/// after the search (the winner's fit) uses the same rendezvous.
TuneResult tune_on_ranks(const config::RunConfig& cfg, TuneOptions o,
                         const std::function<void(const TuneResult&, dist::ProcessGroup*)>& then = {}, double dist_timeout = 60);

/// The config and options of the search in DIR (its tune.json), for --resume.
std::pair<config::RunConfig, TuneOptions> load_tune_dir(const std::string& dir);

}  // namespace tltrain::train
