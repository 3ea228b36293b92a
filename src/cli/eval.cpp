// tltrain eval --checkpoint best.pt [--data DIR] [--topk 5] [--out eval.json]
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/eval/report.h"

namespace tltrain::cli {

namespace {
struct EvalCliOptions {
  eval::EvalOptions eval;
  std::string out;
};

void run_eval(const EvalCliOptions& o) {
  auto report = eval::evaluate_checkpoint(o.eval);
  std::cout << eval::format_report(report);
  namespace fs = std::filesystem;
  // Default: beside the run's checkpoints folder, as RUN_DIR/eval.json.
  fs::path ck = fs::absolute(o.eval.checkpoint);
  const bool under_checkpoints = ck.parent_path().filename() == "checkpoints";
  const std::string run_dir = (under_checkpoints ? ck.parent_path().parent_path() : ck.parent_path()).string();
  const bool in_run = under_checkpoints && fs::exists(run_dir + "/config.json");
  const std::string default_out = run_dir + "/eval.json";
  const std::string out = o.out.empty() ? default_out : o.out;
  eval::write_eval_json(out, report, o.eval.checkpoint, o.eval.data);
  if (report.skipped.count() > 0) log::warn(report.skipped.warning(0, out));
  std::cout << "\nwrote " << out << "\n";
  // The report reads RUN_DIR/eval.json, so it is refreshed only when that is what was written.
  if (in_run && fs::absolute(out) == fs::absolute(default_out) && fs::exists(run_dir + "/log.jsonl"))
    std::cout << "wrote " << eval::write_report(run_dir) << "\n";
}
}  // namespace

void setup_eval(CLI::App& app) {
  auto o = std::make_shared<EvalCliOptions>();
  auto* sub = app.add_subcommand("eval", "Evaluate a checkpoint: loss, top-1/top-k, per-class P/R/F1, confusion matrix, mistakes");
  sub->add_option("--checkpoint", o->eval.checkpoint, "Checkpoint from fit")->required();
  sub->add_option("--data", o->eval.data, "Labelled images (class folders or CSV); default: the run's validation set");
  sub->add_option("--topk", o->eval.topk, "k for top-k accuracy (default 5)")->check(CLI::PositiveNumber);
  sub->add_option("--out", o->out, "JSON report path (default RUN_DIR/eval.json)");
  sub->add_option("--device", o->eval.device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--threads", o->eval.threads, "Loader threads (default: one per core)");
  sub->add_option("--batch-size", o->eval.batch_size, "Images per batch (default 32)")->check(CLI::PositiveNumber);
  sub->callback([o] { run_eval(*o); });
}

}  // namespace tltrain::cli
