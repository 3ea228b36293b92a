#include "tltrain/train/callbacks.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/train/diagram.h"
#include "tltrain/train/run.h"

namespace fs = std::filesystem;

namespace tltrain::train {

using config::json;

double metric_of(const json& record, const std::string& key) {
  return record.contains(key) && record[key].is_number() ? record[key].get<double>() : 0.0;
}

double metric_of(const json& record, config::Metric metric) { return metric_of(record, config::name_of(metric)); }

bool improved(config::Metric metric, double value, double best, double min_delta, bool have_best) {
  if (!have_best) return true;
  const bool lower_is_better = metric == config::Metric::Loss || metric == config::Metric::ValLoss;
  return lower_is_better ? value < best - min_delta : value > best + min_delta;
}

std::vector<std::unique_ptr<Callback>> default_callbacks(const FitOptions& opts) {
  std::vector<std::unique_ptr<Callback>> c;
  c.push_back(std::make_unique<NanGuard>());
  c.push_back(std::make_unique<ProgressBar>());
  if (const char* step = std::getenv("TLTRAIN_DEBUG_KILL_AFTER_STEPS")) {
    const char* rank = std::getenv("TLTRAIN_DEBUG_KILL_RANK");
    c.push_back(std::make_unique<DebugKill>(std::atoll(step), rank ? std::atoll(rank) : -1));
  }
  c.push_back(std::make_unique<RankSync>());
  c.push_back(std::make_unique<EarlyStopping>());
  c.push_back(std::make_unique<EpochSummary>());
  c.push_back(std::make_unique<Checkpoints>());
  c.push_back(std::make_unique<EpochLogs>());
  c.push_back(std::make_unique<SkippedReport>());
  c.push_back(std::make_unique<ModelDiagram>());
  if (opts.tensorboard) c.push_back(std::make_unique<TensorBoard>());
  return c;
}

void ModelDiagram::on_run_begin(Run& run) {
  if (!log::is_output_rank() || run.resumed_stage()) return;
  try {
    const auto spec = run_diagram(run.config(), run.model().meta(), run.model().head()->in_features, run.model().num_classes());
    write_diagram(diagram_dot(spec), run.paths().dir + "/model.svg");
  } catch (const Error& e) {
    log::warn(std::string("the model diagram was not drawn: ") + e.what());  // the run itself does not depend on it
  }
}

void NanGuard::on_step_end(Run& run, const StepEnd& e) {
  if (e.step.skipped > 0) return;  // loss scaling skipped it: an fp16 overflow, handled by backing off the scale
  const double loss = e.step.loss_sum;
  TLTRAIN_CHECK(std::isfinite(loss), ErrorKind::Runtime,
                "the loss became " + std::string(std::isnan(loss) ? "NaN" : "infinite") + " in stage '" + run.stage().name +
                    "', epoch " + std::to_string(run.epoch() + 1) + ", step " + std::to_string(e.done) + " (lr " +
                    log::fixed(e.lr, 8) + "): lower the learning rate or check the data; the last good checkpoint is " +
                    run.paths().last);
}

void ProgressBar::on_epoch_begin(Run& run) {
  bar_ = std::make_unique<Progress>("stage " + std::to_string(run.stage_index() + 1) + " epoch " + std::to_string(run.epoch() + 1) +
                                        "/" + std::to_string(run.stage().epochs),
                                    run.steps_per_epoch());
}

void ProgressBar::on_step_end(Run&, const StepEnd& e) {
  bar_->update(e.done, e.epoch.loss(), e.epoch.accuracy(), e.epoch.count);
  if (e.done == e.total) finish();  // before validation
}

void ProgressBar::on_epoch_end(Run&, EpochEnd&) { finish(); }  // fewer steps than planned: a batch of only bad images

void ProgressBar::finish() {
  if (bar_) bar_->finish();
  bar_.reset();
}

void RankSync::on_step_end(Run& run, const StepEnd&) {
  if (dist::ProcessGroup* group = run.group()) {
    group->heartbeat(run.state().global_step);
    std::vector<double> votes{stop_requested() ? 1.0 : 0.0};
    group->all_reduce_sum(votes);
    if (votes[0] > 0) request_stop();
  }
  if (stop_requested())
    TLTRAIN_FAIL(ErrorKind::Interrupted, "interrupted in stage '" + run.stage().name + "', epoch " + std::to_string(run.epoch() + 1) +
                                             "; continue with `tltrain fit --resume " + run.paths().dir + "`");
}

void DebugKill::on_step_end(Run& run, const StepEnd&) {
  const int64_t rank = run.group() ? run.group()->rank() : 0;
  if (run.state().global_step == step_ && (rank_ < 0 || rank_ == rank)) std::raise(SIGKILL);
}

void EarlyStopping::on_stage_begin(Run& run) {
  best_weights_.clear();
  const auto& es = run.stage().early_stopping;
  // A resumed stage restores the best weights it had before the interruption.
  if (run.resumed_stage() && run.state().stage_state.have_best && es.enabled && es.restore_best && fs::exists(run.paths().stage_best)) {
    checkpoint::Checkpoint saved = checkpoint::load(run.paths().stage_best, run.model().device());
    best_weights_ = checkpoint::classifier_from(saved, run.model().device()).snapshot();
  }
}

void EarlyStopping::on_epoch_end(Run& run, EpochEnd& e) {
  const auto& es = run.stage().early_stopping;
  if (!es.enabled) return;
  checkpoint::StageProgress& s = run.state().stage_state;
  const double v = metric_of(e.record, es.monitor);
  if (improved(es.monitor, v, s.best, es.min_delta, s.have_best)) {
    s.best = v;
    s.have_best = true;
    s.wait = 0;
    if (es.restore_best) {
      best_weights_ = run.model().snapshot();
      if (log::is_output_rank()) checkpoint::save(run.paths().stage_best, run.model(), nullptr, run.checkpoint_info(run.stage_index(), run.epoch() + 1));
    }
    return;
  }
  // Keras semantics: stop once `patience` epochs in a row brought no improvement.
  if (++s.wait >= std::max<int64_t>(es.patience, 1)) {
    s.stopped = true;
    e.notes.push_back("early stop: " + config::name_of(es.monitor) + " did not improve for " + std::to_string(s.wait) + " epochs");
  }
}

void EarlyStopping::on_stage_end(Run& run) {
  const auto& es = run.stage().early_stopping;
  if (!es.enabled || !es.restore_best || best_weights_.empty()) return;
  run.model().load_state(best_weights_, "the stage's best weights");
  log::info("stage '" + run.stage().name + "': restored the weights of its best epoch (" + config::name_of(es.monitor) + " " +
            log::fixed(run.state().stage_state.best) + ")");
}

void EarlyStopping::on_run_end(Run& run) {
  if (log::is_output_rank() && fs::exists(run.paths().stage_best)) fs::remove(run.paths().stage_best);
}

void EpochSummary::on_epoch_end(Run& run, EpochEnd& e) {
  const json& r = e.record;
  std::string line = "stage " + std::to_string(run.stage_index() + 1) + " epoch " + std::to_string(run.epoch() + 1) + "/" +
                     std::to_string(run.stage().epochs) + ": loss " + log::fixed(metric_of(r, "loss")) + " acc " +
                     log::fixed(metric_of(r, "accuracy"));
  if (r.contains("val_loss"))
    line += "  val_loss " + log::fixed(metric_of(r, "val_loss")) + " val_acc " + log::fixed(metric_of(r, "val_accuracy"));
  for (const auto& item : r.items())  // the objective's scores: val_roc_auc, val_map, ...
    if (item.key().rfind("val_", 0) == 0 && item.key() != "val_loss" && item.key() != "val_accuracy" && item.value().is_number())
      line += " " + item.key() + " " + log::fixed(item.value().get<double>());
  line += "  lr " + log::fixed(metric_of(r, "lr"), 6) + "  " + log::fixed(metric_of(r, "images_per_s"), 1) + " img/s";
  if (r.contains("skipped_steps") && metric_of(r, "skipped_steps") > 0)
    line += "  " + log::fixed(metric_of(r, "skipped_steps"), 0) + " steps skipped (fp16 overflow; loss scale now " +
            log::fixed(metric_of(r, "loss_scale"), 0) + ")";
  if (r.contains("allreduce_ms_per_step")) line += "  all-reduce " + log::fixed(metric_of(r, "allreduce_ms_per_step"), 2) + " ms/step";
  for (const auto& note : e.notes) line += "  (" + note + ")";
  log::info(line + (e.new_best ? "  *best*" : ""));
}

void Checkpoints::on_stage_begin(Run& run) { stage_saved_ = run.epoch() > 0; }

void Checkpoints::on_epoch_end(Run& run, EpochEnd& e) {
  stage_saved_ = true;
  if (!log::is_output_rank()) return;
  const json info = run.checkpoint_info(run.stage_index(), run.epoch() + 1);
  if (e.new_best) checkpoint::save(run.paths().best, run.model(), nullptr, info);
  // Also after the stage's last epoch: a run killed before the stage's end resumes there, and
  // its resume ends the stage (restoring the best weights) without training.
  checkpoint::save(run.paths().last, run.model(), run.optimizer(), info);
}

void Checkpoints::on_stage_end(Run& run) {
  // last.pt points at the next stage's start (after early stopping's restore): no optimizer
  // state, fresh early-stopping counters. A stage that ran no epoch leaves it as it was.
  if (stage_saved_ && log::is_output_rank())
    checkpoint::save(run.paths().last, run.model(), nullptr, run.checkpoint_info(run.stage_index() + 1, 0));
}

void EpochLogs::on_epoch_end(Run& run, EpochEnd&) {
  if (log::is_output_rank()) write_logs(run.paths().dir, run.history());
}

void SkippedReport::report(Run& run) {
  const data::SkippedLog& skipped = run.skipped();
  const std::string& path = run.paths().skipped;
  if (skipped.count() == reported_ && fs::exists(path)) return;
  if (skipped.count() > reported_) log::warn(skipped.warning(reported_, path));
  reported_ = skipped.count();
  if (log::is_output_rank()) write_file_atomically(path, skipped.to_json().dump(1) + "\n");
}

void TensorBoard::on_run_begin(Run& run) {
  if (log::is_output_rank()) writer_ = std::make_unique<EventFileWriter>(run.paths().dir + "/tb");
}

void TensorBoard::on_epoch_end(Run&, EpochEnd& e) {
  if (!writer_) return;
  add_epoch_scalars(*writer_, e.record, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  writer_->flush();
}

}  // namespace tltrain::train
