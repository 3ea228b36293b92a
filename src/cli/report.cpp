// tltrain report RUN_DIR, and the evaluation + report that fit, finetune and eval write at their end.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/eval/report.h"

namespace tltrain::cli {

namespace fs = std::filesystem;

void write_eval_json(const std::string& path, const eval::ClassificationReport& report, const std::string& checkpoint,
                     const std::string& data) {
  config::json j = eval::to_json(report);
  // Which weights and images these numbers are about, for the report's caption.
  j["checkpoint"] = fs::absolute(checkpoint).string();
  j["data"] = data.empty() ? "the run's validation set" : data;
  write_file_atomically(path, j.dump(2) + "\n");
}

std::string finish_run(const std::string& run_dir, const std::string& checkpoint, const config::RunConfig& cfg) {
  if (!log::is_output_rank()) return "";
  // The run is trained and saved by now: a failing evaluation or report must not turn it into a
  // failed command, so it is a warning that says how to retry.
  try {
    if (!cfg.data.val.empty() || cfg.data.validation_split > 0) {
      eval::EvalOptions eo;
      eo.checkpoint = checkpoint;
      eo.device = cfg.device;
      eo.threads = cfg.loader_threads;
      eo.batch_size = cfg.data.batch_size;
      auto report = eval::evaluate_checkpoint(eo);
      write_eval_json(run_dir + "/eval.json", report, checkpoint, "");
      log::info("validation with " + fs::path(checkpoint).filename().string() + ": accuracy " + std::to_string(report.accuracy) +
                " → " + run_dir + "/eval.json");
    }
    return eval::write_report(run_dir);
  } catch (const Error& e) {
    log::warn(std::string("the run is saved, but its evaluation/report failed: ") + e.what() + " — retry with `tltrain eval --checkpoint " +
              checkpoint + "` and `tltrain report " + run_dir + "`");
    return "";
  }
}

namespace {
void run_report(const std::string& run_dir) { std::cout << "wrote " << eval::write_report(run_dir) << "\n"; }
}  // namespace

void setup_report(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("report", "Write RUN_DIR/report.html: curves, learning rate, confusion matrix, mistakes, config");
  sub->add_option("run_dir", *dir, "Run directory (holds config.json and log.jsonl; eval.json adds the evaluation)")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->callback([dir] { run_report(*dir); });
}

}  // namespace tltrain::cli
