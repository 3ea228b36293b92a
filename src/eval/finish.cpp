// The evaluation and report that fit, finetune and eval write at their end.
#include <filesystem>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/eval/report.h"

namespace tltrain::eval {

namespace fs = std::filesystem;

void write_eval_json(const std::string& path, const ClassificationReport& report, const std::string& checkpoint,
                     const std::string& data) {
  config::json j = to_json(report);
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
      EvalOptions eo;
      eo.checkpoint = checkpoint;
      eo.device = cfg.device;
      eo.threads = cfg.loader_threads;
      eo.batch_size = cfg.data.batch_size;
      auto report = evaluate_checkpoint(eo);
      write_eval_json(run_dir + "/eval.json", report, checkpoint, "");
      log::info("validation with " + fs::path(checkpoint).filename().string() + ": accuracy " + std::to_string(report.accuracy) +
                " → " + run_dir + "/eval.json");
    }
    return write_report(run_dir);
  } catch (const Error& e) {
    log::warn(std::string("the run is saved, but its evaluation/report failed: ") + e.what() + " — retry with `tltrain eval --checkpoint " +
              checkpoint + "` and `tltrain report " + run_dir + "`");
    return "";
  }
}

}  // namespace tltrain::eval
