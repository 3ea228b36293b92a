#include "tltrain/train/cv.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/core/threads.h"
#include "tltrain/data/stats.h"
#include "tltrain/model/backbone_meta.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/inference.h"
#include "tltrain/train/callbacks.h"
#include "tltrain/train/run.h"
#include "tltrain/train/shared_features.h"

namespace fs = std::filesystem;

namespace tltrain::train {

using config::json;

namespace {

/// Keeps the fold's validation probabilities of its best epoch (the weights of best.pt) in
/// FOLD_DIR/oof.json, written before that epoch's last.pt so that a resumed fold never holds
/// probabilities older than its checkpoint.
class OutOfFold final : public Callback {
 public:
  OutOfFold(std::string path, config::HeadOutput output) : path_(std::move(path)), output_(output) {}

  void on_epoch_end(Run& run, EpochEnd& e) override {
    if (!e.new_best || !e.val) return;
    const auto& samples = run.validation_samples();
    const auto probs = gather(run, *e.val, static_cast<int64_t>(samples.size()));
    if (!log::is_output_rank()) return;
    json rows = json::array();
    const auto acc = probs.accessor<double, 2>();
    const int64_t classes = probs.size(1) - 1;
    for (int64_t i = 0; i < probs.size(0); ++i) {
      if (acc[i][classes] == 0) continue;  // failed to decode
      const data::Sample& s = samples[static_cast<size_t>(i)];
      std::vector<double> p;
      for (int64_t c = 0; c < classes; ++c) p.push_back(acc[i][c] / acc[i][classes]);
      const std::vector<int64_t> labels = !s.labels.empty() ? s.labels : s.label >= 0 ? std::vector<int64_t>{s.label} : std::vector<int64_t>{};
      rows.push_back({{"path", s.path}, {"labels", labels}, {"probs", p}});
    }
    write_file_atomically(path_, json{{"record", e.record}, {"rows", rows}}.dump() + "\n");
  }

 private:
  /// N×(C+1): each image's probabilities summed over the ranks that hold it, and that count last.
  torch::Tensor gather(Run& run, const model::Predictions& val, int64_t n) const {
    const auto p = model::probabilities(output_, val.logits.to(torch::kDouble));
    auto out = torch::zeros({n, p.size(1) + 1}, torch::kDouble);
    const auto idx = torch::tensor(val.indices, torch::kLong);
    out.narrow(1, 0, p.size(1)).index_add_(0, idx, p);
    out.select(1, p.size(1)).index_add_(0, idx, torch::ones({idx.size(0)}, torch::kDouble));
    if (run.group()) {
      std::vector<torch::Tensor> t{out};
      run.group()->all_reduce_sum(t);
    }
    return out;
  }

  std::string path_;
  config::HeadOutput output_;
};

std::string fold_dir(const std::string& dir, int64_t repeats, int64_t r, int64_t f) {
  return dir + "/" + (repeats > 1 ? "r" + std::to_string(r + 1) + "_" : "") + "fold" + std::to_string(f + 1);
}

/// Trains fold F of repeat R (or resumes it) and returns its fold.json record.
json run_fold(const config::RunConfig& cfg, const CvOptions& o, const data::Dataset& all, const std::vector<int64_t>& folds,
              int64_t r, int64_t f, SharedFeatures& shared) {
  const std::string dir = fold_dir(cfg.output_dir, o.repeats, r, f);
  if (fs::exists(dir + "/fold.json")) return config::parse_json_file(dir + "/fold.json");
  if (stop_requested()) TLTRAIN_FAIL(ErrorKind::Interrupted, "interrupted between folds");
  config::RunConfig fc = cfg;
  fc.output_dir = dir;
  fc.resolved["output_dir"] = dir;
  const data::Datasets ds = data::fold_datasets(all, folds, f);
  FitOptions fo;
  fo.resume = fs::exists(dir + "/checkpoints/last.pt");
  fo.group = o.group;
  fo.datasets = &ds;
  fo.features = &shared;
  auto callbacks = default_callbacks(fo);
  auto at = callbacks.begin();
  while (at != callbacks.end() && !dynamic_cast<Checkpoints*>(at->get())) ++at;
  callbacks.insert(at, std::make_unique<OutOfFold>(dir + "/oof.json", cfg.model.head.output));
  log::info("cv: " + std::string(o.repeats > 1 ? "repeat " + std::to_string(r + 1) + ", " : "") + "fold " + std::to_string(f + 1) + "/" +
            std::to_string(o.folds) + ": " + std::to_string(ds.train.samples.size()) + " training, " +
            std::to_string(ds.val.samples.size()) + " validation images" + (fo.resume ? " (resuming)" : ""));
  Run(fc, fo, std::move(callbacks)).fit();
  json oof = log::is_output_rank() ? config::parse_json_file(dir + "/oof.json") : json{{"record", json::object()}};
  json rec = {{"repeat", r + 1}, {"fold", f + 1}, {"dir", dir}, {"train_images", ds.train.samples.size()},
              {"val_images", ds.val.samples.size()}, {"best", oof["record"]}};
  if (log::is_output_rank()) write_file_atomically(dir + "/fold.json", rec.dump(1) + "\n");
  return rec;
}

/// Out-of-fold accuracy (exact match for multi-label) and confusion of every repeat's rows, and
/// the rows as CSV lines.
json out_of_fold(const CvOptions& o, const config::RunConfig& cfg, const std::vector<std::string>& classes, std::string& csv) {
  const size_t n = classes.size();
  std::ostringstream out;
  out << "repeat,fold,path,true,predicted";
  for (const auto& c : classes) out << ",p_" << c;
  out << "\n";
  json repeats = json::array();
  for (int64_t r = 0; r < o.repeats; ++r) {
    std::vector<std::vector<int64_t>> confusion(n, std::vector<int64_t>(n, 0));
    int64_t right = 0, total = 0;
    for (int64_t f = 0; f < o.folds; ++f) {
      const json oof = config::parse_json_file(fold_dir(cfg.output_dir, o.repeats, r, f) + "/oof.json");
      for (const auto& row : oof.at("rows")) {
        const auto truth = row.at("labels").get<std::vector<int64_t>>();
        const auto probs = row.at("probs").get<std::vector<double>>();
        std::vector<float> pf(probs.begin(), probs.end());
        const auto decided = model::decided_classes(cfg.model.head.output, cfg.model.head.threshold, pf.data(), n);
        const bool single = cfg.model.head.output != config::HeadOutput::MultiLabel;
        right += single ? (!truth.empty() && decided[0] == truth[0]) : (decided == truth);
        ++total;
        if (single && !truth.empty()) ++confusion[static_cast<size_t>(truth[0])][static_cast<size_t>(decided[0])];
        auto names = [&](const std::vector<int64_t>& v) {
          std::string s;
          for (int64_t c : v) s += (s.empty() ? "" : ";") + (c >= 0 ? classes[static_cast<size_t>(c)] : std::string());
          return s;
        };
        std::string path = row.at("path").get<std::string>();
        if (path.find_first_of(",\"\n") != std::string::npos) {  // CSV quoting
          std::string q = "\"";
          for (char ch : path) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
          path = q + "\"";
        }
        out << r + 1 << "," << f + 1 << "," << path << "," << names(truth) << "," << names(decided);
        for (double p : probs) out << "," << p;
        out << "\n";
      }
    }
    repeats.push_back({{"repeat", r + 1}, {"accuracy", total > 0 ? static_cast<double>(right) / static_cast<double>(total) : 0.0},
                       {"images", total}, {"confusion", confusion}});
  }
  csv = out.str();
  return repeats;
}

/// Every val_* number that each fold's best record has: its per-fold values and Spread.
json metric_spreads(const json& folds) {
  json out = json::object();
  if (folds.empty()) return out;
  for (const auto& [key, value] : folds[0].at("best").items()) {
    if (key.rfind("val_", 0) != 0 || !value.is_number()) continue;
    std::vector<double> v;
    for (const auto& f : folds)
      if (f.at("best").contains(key) && f.at("best")[key].is_number()) v.push_back(f.at("best")[key].get<double>());
    if (v.size() != folds.size()) continue;
    const Spread s = spread(v);
    out[key] = {{"mean", s.mean}, {"std", s.std}, {"ci95", s.ci95}, {"values", v}};
  }
  return out;
}

}  // namespace

Spread spread(const std::vector<double>& v) {
  Spread s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() < 2) return s;
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  // Student's t, 97.5th percentile, for 1..30 degrees of freedom; beyond, 1.96 + 2.4 / dof is within 0.003.
  static const double t[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
                             2.120,  2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  const size_t dof = v.size() - 1;
  const double q = dof <= 30 ? t[dof - 1] : 1.96 + 2.4 / static_cast<double>(dof);
  s.ci95 = q * s.std / std::sqrt(static_cast<double>(v.size()));
  return s;
}

CvResult cross_validate(const config::RunConfig& cfg_in, const CvOptions& o) {
  const std::string dir = cfg_in.output_dir;
  TLTRAIN_CHECK(o.repeats >= 1, ErrorKind::Usage, "--repeats must be >= 1, got " + std::to_string(o.repeats));
  if (o.resume)
    TLTRAIN_CHECK(fs::exists(dir + "/cv_config.json"), ErrorKind::Data, "nothing to resume: '" + dir + "' holds no cv run (no cv_config.json)");
  else
    TLTRAIN_CHECK(!fs::exists(dir + "/cv_config.json") && !fs::exists(dir + "/checkpoints/last.pt"), ErrorKind::Usage,
                  "'" + dir + "' already holds a run; continue it with `tltrain cv --resume " + dir +
                      "` or choose another output_dir (--set output_dir=...)");
  const uint64_t seed = static_cast<uint64_t>(cfg_in.seed);
  const data::Datasets loaded = data::load_datasets(cfg_in.data, seed);
  const data::Dataset all = data::merge_for_cv(loaded);
  if (loaded.has_val && !loaded.val_is_split)
    log::info("cv: folds over the training and validation images together (" + std::to_string(all.samples.size()) + " images)");
  // The statistics of normalization "dataset" come from every image once: per-fold statistics
  // would give each fold other features and no cache could be shared.
  const config::RunConfig cfg = data::with_dataset_stats(cfg_in, all.samples, model::read_image_spec(cfg_in.model.backbone),
                                                         threads_or_cores(cfg_in.loader_threads));
  const auto classes = all.classes.size();
  std::vector<std::vector<int64_t>> folds;
  for (int64_t r = 0; r < o.repeats; ++r) folds.push_back(data::stratified_folds(all.samples, classes, o.folds, seed, r));
  const json options = {{"folds", o.folds}, {"repeats", o.repeats}, {"seed", cfg.seed}, {"monitor", config::name_of(cfg.monitor)},
                        {"images", all.samples.size()}, {"source", all.source}, {"classes", all.classes}};
  if (log::is_output_rank() && !o.resume) {
    fs::create_directories(dir);
    write_file_atomically(dir + "/cv_config.json", cfg.resolved.dump(2) + "\n");
    json fj = {{"paths", json::array()}, {"folds", folds}};
    for (const auto& s : all.samples) fj["paths"].push_back(s.path);
    write_file_atomically(dir + "/folds.json", fj.dump() + "\n");
    write_file_atomically(dir + "/cv.json", json{{"options", options}, {"status", "running"}}.dump(2) + "\n");
  }
  SharedFeatures shared(all.samples);
  json fold_records = json::array();
  for (int64_t r = 0; r < o.repeats; ++r)
    for (int64_t f = 0; f < o.folds; ++f) fold_records.push_back(run_fold(cfg, o, all, folds[static_cast<size_t>(r)], r, f, shared));
  CvResult res;
  res.dir = dir;
  if (!log::is_output_rank()) return res;
  std::string csv;
  res.summary = {{"options", options},         {"status", "done"},
                 {"folds", fold_records},      {"metrics", metric_spreads(fold_records)},
                 {"out_of_fold", out_of_fold(o, cfg, all.classes, csv)}};
  write_file_atomically(dir + "/oof_predictions.csv", csv);
  write_file_atomically(dir + "/cv.json", res.summary.dump(2) + "\n");
  return res;
}

CvResult cross_validate_on_ranks(const config::RunConfig& cfg, CvOptions o, double dist_timeout) {
  const dist::DistContext ctx = dist::context_from_env();
  log::set_rank(ctx.rank);
  std::unique_ptr<dist::ProcessGroup> group;
  if (ctx.distributed()) group = start_process_group(ctx, dist_timeout, model::resolve_device(cfg.device, ctx.local_rank));
  o.group = group.get();
  try {
    auto r = cross_validate(cfg, o);
    if (group) group->barrier();  // rank 0 hosts the store: it leaves last
    return r;
  } catch (const std::exception& e) {
    if (group) group->report_failure(e.what());
    throw;
  }
}

std::pair<config::RunConfig, CvOptions> load_cv_dir(const std::string& dir) {
  const std::string path = dir + "/cv_config.json";
  TLTRAIN_CHECK(fs::exists(path), ErrorKind::Data, "'" + dir + "' is not a tltrain cv directory (no cv_config.json)");
  const json cv = config::parse_json_file(dir + "/cv.json");
  CvOptions o;
  try {
    o.folds = cv.at("options").at("folds").get<int64_t>();
    o.repeats = cv.at("options").at("repeats").get<int64_t>();
  } catch (const json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + dir + "/cv.json' has no options.folds/repeats (" + e.what() + ")");
  }
  o.resume = true;
  return {config::parse_run_config(config::parse_json_file(path), path), o};
}

}  // namespace tltrain::train
