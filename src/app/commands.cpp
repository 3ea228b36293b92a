#include "tltrain/app/commands.h"
#include "fit_summary.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/dist/context.h"
#include "tltrain/eval/report.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/model/backbone_meta.h"
#include "tltrain/model/inspect.h"
#include "tltrain/train/diagram.h"
#include "tltrain/train/plan.h"

namespace fs = std::filesystem;

namespace tltrain::app {

namespace {

/// Rank 0 after training: evaluates the best checkpoint (else the last) and writes the report.
std::string finish(const train::FitResult& r, const config::RunConfig& cfg) {
  return eval::finish_run(r.run_dir, r.best_checkpoint.empty() ? r.last_checkpoint : r.best_checkpoint, cfg);
}

}  // namespace

void report_fit(const train::FitResult& r, const config::RunConfig& cfg, std::ostream& out) {
  const std::string report = finish(r, cfg);
  out << "run: " << r.run_dir << "\n"
      << "best " << r.monitor << ": " << r.best_value << "  (" << r.best_checkpoint << ")\n"
      << "last checkpoint: " << r.last_checkpoint << "\n"
      << "logs: " << r.run_dir << "/log.csv\n"
      << (report.empty() ? "" : "report: " + report + "\n") << "next: tltrain eval --checkpoint " << r.best_checkpoint << "\n";
}

void inspect(const InspectRequest& o, std::ostream& out) {
  if (!checkpoint::looks_like_checkpoint(o.path)) {
    const auto report = model::inspect_backbone(o.path);
    out << (o.json ? report.dump(2) + "\n" : model::format_inspect(report, o.layers));
    if (o.diagram.empty()) return;
    const model::BackboneMeta meta = model::read_backbone_meta(o.path);
    train::DiagramSpec spec;
    spec.title = meta.arch + " (" + o.path + ")";
    spec.meta = &meta;
    out << "wrote " << train::write_diagram(train::diagram_dot(spec), o.diagram) << "\n";
    return;
  }
  const checkpoint::Checkpoint ck = checkpoint::load(o.path);
  const model::BackboneMeta& meta = ck.backbone.meta;
  const int64_t classes = static_cast<int64_t>(ck.classes.size());
  const int64_t head_in = ck.head.at("head.dense.0.weight").size(1);
  const auto spec = train::run_diagram(ck.config, meta, head_in, classes);
  const int64_t head_params = train::head_params(ck.config.model.head, head_in, classes);
  auto report = model::describe_backbone(meta, o.path);
  report["checkpoint"] = {{"classes", ck.classes}, {"head", ck.config.resolved["model"]["head"]},
                          {"plan", train::plan_to_json(spec.plan, meta, head_params)}};
  if (o.json) out << report.dump(2) << "\n";
  else out << model::format_inspect(report, o.layers) << "\ncheckpoint of " << classes << " classes\n" << train::format_plan(spec.plan, meta, head_params);
  if (!o.diagram.empty()) out << "wrote " << train::write_diagram(train::diagram_dot(spec), o.diagram) << "\n";
}

void fit(const FitRequest& o, std::ostream& out) {
  // torchrun/SLURM/tltrain launch environment; none set: one process, as before.
  log::set_rank(dist::context_from_env().rank);  // before any output: other ranks print errors only
  TLTRAIN_CHECK(!o.config.empty() || !o.resume.empty(), ErrorKind::Usage, "fit needs --config FILE (or --resume RUN_DIR)");
  TLTRAIN_CHECK(o.config.empty() || o.resume.empty(), ErrorKind::Usage,
                "--resume continues a run with its own saved config; leave out --config");
  TLTRAIN_CHECK(o.resume.empty() || o.overrides.empty(), ErrorKind::Usage,
                "--set cannot change a run being resumed: the result would match neither config");
  const config::RunConfig cfg = o.resume.empty() ? config::load_run_config(o.config, o.overrides) : train::load_run_dir_config(o.resume);
  for (const auto& w : cfg.warnings) log::warn(cfg.source + ": " + w.path + ": " + w.message);
  if (o.dry_run) {
    auto d = train::dry_run(cfg);
    out << "Resolved config:\n" << d.resolved_config.dump(2) << "\n\n" << d.text;
    return;
  }
  const auto r = train::fit_on_ranks(cfg, {!o.resume.empty(), "", o.tensorboard, nullptr}, o.dist_timeout);
  if (log::is_output_rank()) report_fit(r, cfg, out);
}

void distill(const DistillRequest& o, std::ostream& out) {
  TLTRAIN_CHECK(!o.teacher.empty(), ErrorKind::Usage, "distill needs --teacher (a checkpoint from tltrain fit or a tltrain export model)");
  TLTRAIN_CHECK(o.fit.resume.empty(), ErrorKind::Usage, "to continue a distillation run use `tltrain fit --resume RUN_DIR`");
  FitRequest f = o.fit;
  // Before the user's --set: those may still change a stage.
  std::vector<std::string> set{"distill.teacher=" + config::json(o.teacher).dump()};
  if (o.temperature) set.push_back("distill.temperature=" + config::json(*o.temperature).dump());
  if (o.alpha) set.push_back("distill.alpha=" + config::json(*o.alpha).dump());
  f.overrides.insert(f.overrides.begin(), set.begin(), set.end());
  fit(f, out);
}

void cv(const CvRequest& o, std::ostream& out) {
  log::set_rank(dist::context_from_env().rank);
  TLTRAIN_CHECK(o.config.empty() != o.resume.empty(), ErrorKind::Usage, "cv needs --config FILE or --resume CV_DIR (one of them)");
  TLTRAIN_CHECK(o.resume.empty() || o.overrides.empty(), ErrorKind::Usage,
                "--set cannot change a cv run being resumed: its folds would match neither config");
  auto [cfg, options] = o.resume.empty() ? std::pair{config::load_run_config(o.config, o.overrides), train::CvOptions{}}
                                         : train::load_cv_dir(o.resume);
  if (o.resume.empty()) {
    options.folds = o.folds;
    options.repeats = o.repeats;
  }
  for (const auto& w : cfg.warnings) log::warn(cfg.source + ": " + w.path + ": " + w.message);
  const auto r = train::cross_validate_on_ranks(cfg, options, o.dist_timeout);
  if (!log::is_output_rank()) return;
  const std::string report = eval::write_cv_report(r.dir);
  const auto& s = r.summary;
  out << "cv: " << r.dir << " (" << options.folds << " folds" << (options.repeats > 1 ? " x " + std::to_string(options.repeats) + " repeats" : "")
      << ", best epoch of each by " << s["options"].value("monitor", "") << ")\n";
  for (const auto& f : s["folds"])
    out << "  " << (options.repeats > 1 ? "repeat " + std::to_string(f.value("repeat", 1)) + " " : "") << "fold " << f.value("fold", 0)
        << ": val_accuracy " << log::fixed(f["best"].value("val_accuracy", 0.0), 4) << ", val_loss " << log::fixed(f["best"].value("val_loss", 0.0), 4)
        << "\n";
  for (const auto& [key, m] : s["metrics"].items()) {
    const double mean = m["mean"].get<double>(), ci = m["ci95"].get<double>();
    out << key << ": " << log::fixed(mean, 4) << " ± " << log::fixed(m["std"].get<double>(), 4) << " (95% interval " << log::fixed(mean - ci, 4)
        << " to " << log::fixed(mean + ci, 4) << ")\n";
  }
  for (const auto& rep : s["out_of_fold"])
    out << "out-of-fold accuracy" << (options.repeats > 1 ? " (repeat " + std::to_string(rep.value("repeat", 1)) + ")" : "") << ": "
        << log::fixed(rep.value("accuracy", 0.0), 4) << " over " << rep.value("images", 0) << " images\n";
  out << "predictions: " << r.dir << "/oof_predictions.csv\nreport: " << report << "\n";
}

void features(const train::FeaturesOptions& o, std::ostream& out) {
  const auto s = train::export_features(o);
  for (const char* split : {"train", "val"}) {
    if (!s.contains(split)) continue;
    out << o.out << "/" << split << "_features.npy: " << s[split]["images"] << " x " << s[split]["dim"] << " float32, labels in " << split
        << "_labels.npy, paths in " << split << ".csv";
    if (!s[split]["left_out"].empty()) out << " (" << s[split]["left_out"].size() << " images left out: see features.json)";
    out << "\n";
  }
  out << "classes: " << o.out << "/classes.txt; read them with numpy.load (docs/user-guide.md shows scikit-learn on them)\n";
}

void finetune(const train::FinetuneOptions& o, std::ostream& out) {
  log::set_rank(dist::context_from_env().rank);
  const config::RunConfig cfg = train::finetune_config(o);
  for (const auto& w : cfg.warnings) log::warn(w.path + ": " + w.message);
  const auto r = train::fit_on_ranks(cfg, {false, o.checkpoint, false, nullptr});
  if (!log::is_output_rank()) return;
  const std::string report = finish(r, cfg);
  out << "run: " << r.run_dir << "\nbest " << r.monitor << ": " << r.best_value << "  (" << r.best_checkpoint << ")\n"
      << (report.empty() ? "" : "report: " + report + "\n");
}

void evaluate(const eval::EvalOptions& o, const std::string& json_path, std::ostream& out) {
  const auto report = eval::evaluate_checkpoint(o);
  out << eval::format_report(report);
  // Default: beside the run's checkpoints folder, as RUN_DIR/eval.json.
  const fs::path ck = fs::absolute(o.checkpoint);
  const bool under_checkpoints = ck.parent_path().filename() == "checkpoints";
  const std::string run_dir = (under_checkpoints ? ck.parent_path().parent_path() : ck.parent_path()).string();
  const bool in_run = under_checkpoints && fs::exists(run_dir + "/config.json");
  const std::string default_path = run_dir + "/eval.json";
  const std::string path = json_path.empty() ? default_path : json_path;
  eval::write_eval_json(path, report, o.checkpoint, o.data);
  if (report.skipped.count() > 0) log::warn(report.skipped.warning(0, path));
  out << "\nwrote " << path << "\n";
  // The report reads RUN_DIR/eval.json, so it is refreshed only when that is what was written.
  if (in_run && fs::absolute(path) == fs::absolute(default_path) && fs::exists(run_dir + "/log.jsonl"))
    out << "wrote " << eval::write_report(run_dir) << "\n";
}

void check_data(const std::string& config, const std::vector<std::string>& overrides, const data::CheckOptions& options,
                std::ostream& out) {
  const auto setup = data::load_data_setup(config, overrides, model::read_image_spec);
  out << "preprocessing: " << setup.pre.describe() << "\n  (" << setup.note << ")\n";
  const auto report = data::check_data(setup, options);
  out << data::format_check(report) << std::flush;
  TLTRAIN_CHECK(report.usable(), ErrorKind::Data, "a split has no usable images (see above): fix or replace the files listed");
}

void preview_data(const std::string& config, const std::vector<std::string>& overrides, const std::string& png, int64_t n,
                  int64_t epoch, std::ostream& out) {
  const auto setup = data::load_data_setup(config, overrides, model::read_image_spec);
  const int64_t tiles = data::write_preview(setup, png, n, epoch);
  out << "wrote " << png << ": " << tiles << " augmented training samples of epoch " << epoch << " (" << setup.pre.height << "x"
      << setup.pre.width << ")\n";
}

void bench_data(const std::string& config, const std::vector<std::string>& overrides, const data::BenchOptions& options,
                std::ostream& out) {
  const auto setup = data::load_data_setup(config, overrides, model::read_image_spec);
  const auto r = data::bench_data(setup, options);
  char line[256];
  std::snprintf(line, sizeof line, "%s: %.1f images/s (%lld images in %.2f s, %lld threads, batch %lld, %lldx%lld)",
                options.decode_only ? "decode only" : "training pipeline", r.images_per_s, static_cast<long long>(r.images),
                r.seconds, static_cast<long long>(r.threads), static_cast<long long>(r.batch_size),
                static_cast<long long>(setup.pre.height), static_cast<long long>(setup.pre.width));
  out << line << "\n";
}

void serve(const serve::ServeOptions& o, const std::function<bool()>& stopped, std::ostream& out) {
  serve::Server server(o);
  const int port = server.start();
  out << "serving " << o.model << " on http://" << o.host << ":" << port << " (POST /predict, GET /health, GET /metadata; max batch "
      << o.max_batch << ", max wait " << o.max_wait_ms << " ms)" << std::endl;
  while (!stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  out << "stopping: finishing requests in flight" << std::endl;
  server.stop();
  out << "stopped; " << server.stats().dump() << std::endl;
}

}  // namespace tltrain::app
