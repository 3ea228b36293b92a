#include "tltrain/train/features.h"

#include <filesystem>
#include <sstream>

#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/core/npy.h"
#include "tltrain/core/threads.h"
#include "tltrain/data/stats.h"
#include "tltrain/train/feature_cache.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;

namespace tltrain::train {

using config::json;

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

/// SPLIT's files from its cache C over SAMPLES.
json write_split(const std::string& out, const std::string& split, const FeatureCache& c, const std::vector<data::Sample>& samples,
                 const std::vector<std::string>& classes) {
  const torch::Tensor f = c.views[0].to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t n = f.size(0), d = f.size(1);
  write_npy(out + "/" + split + "_features.npy", "<f4", {n, d}, f.data_ptr(), static_cast<size_t>(f.numel()) * sizeof(float));
  const torch::Tensor y = c.labels.to(torch::kCPU).contiguous();
  if (y.dim() == 2) {  // multi-hot
    const torch::Tensor u = y.gt(0.5).to(torch::kUInt8).contiguous();
    write_npy(out + "/" + split + "_labels.npy", "|u1", {n, u.size(1)}, u.data_ptr(), static_cast<size_t>(u.numel()));
  } else {
    write_npy(out + "/" + split + "_labels.npy", "<i8", {n}, y.data_ptr(), static_cast<size_t>(n) * sizeof(int64_t));
  }
  std::ostringstream csv;
  csv << "index,path,label,class\n";
  for (int64_t i = 0; i < n; ++i) {
    const data::Sample& s = samples[static_cast<size_t>(c.sample_index[static_cast<size_t>(i)])];
    std::string names;
    std::vector<int64_t> labels = s.labels.empty() && s.label >= 0 ? std::vector<int64_t>{s.label} : s.labels;
    std::string ids;
    for (int64_t l : labels) {
      names += (names.empty() ? "" : ";") + classes[static_cast<size_t>(l)];
      ids += (ids.empty() ? "" : ";") + std::to_string(l);
    }
    csv << i << "," << csv_field(s.path) << "," << ids << "," << csv_field(names) << "\n";
  }
  write_file_atomically(out + "/" + split + ".csv", csv.str());
  json bad = json::array();
  for (const auto& b : c.bad) bad.push_back({{"path", b.path}, {"reason", b.reason}});
  return {{"images", n}, {"dim", d}, {"left_out", bad}};
}

}  // namespace

json export_features(const FeaturesOptions& o) {
  TLTRAIN_CHECK(o.config.empty() != o.checkpoint.empty(), ErrorKind::Usage, "features needs --config FILE or --checkpoint FILE (one of them)");
  TLTRAIN_CHECK(!o.out.empty(), ErrorKind::Usage, "features needs --out DIR");
  TLTRAIN_CHECK(o.overrides.empty() || !o.config.empty(), ErrorKind::Usage, "--set goes with --config; a checkpoint keeps its run's config");
  const torch::Device device = model::resolve_device(o.device);
  const int64_t threads = threads_or_cores(o.threads);
  std::unique_ptr<model::Classifier> m;
  config::RunConfig cfg;
  data::Datasets ds;
  std::string source;
  if (!o.checkpoint.empty()) {
    const checkpoint::Checkpoint ck = checkpoint::load(o.checkpoint, device);
    cfg = ck.config;
    m = std::make_unique<model::Classifier>(checkpoint::classifier_from(ck, device));
    ds = data::load_datasets(cfg.data, static_cast<uint64_t>(cfg.seed));
    TLTRAIN_CHECK(ds.train.classes == ck.classes, ErrorKind::Data,
                  "'" + o.checkpoint + "' was trained on other classes than its data folder has now: " + cfg.data.train);
    source = o.checkpoint;
  } else {
    cfg = config::load_run_config(o.config, o.overrides);
    ds = data::load_datasets(cfg.data, static_cast<uint64_t>(cfg.seed));
    model::Backbone backbone = load_run_backbone(cfg, device);
    const int64_t positions = flatten_positions(cfg, backbone);
    cfg = data::with_dataset_stats(cfg, ds.train.samples, backbone.meta.image_spec(), threads);
    m = std::make_unique<model::Classifier>(std::move(backbone), cfg.model.head, static_cast<int64_t>(ds.train.classes.size()), device,
                                            positions);
    source = cfg.model.backbone;
  }
  const data::Preprocess pre = data::resolve_preprocess(cfg.data, m->meta().image_spec());
  fs::create_directories(o.out);
  json summary = {{"source", source},
                  {"backbone", m->meta().arch},
                  {"features_from", cfg.model.features_from.empty() ? json(nullptr) : json(cfg.model.features_from)},
                  {"pooling", config::name_of(cfg.model.head.pooling)},
                  {"preprocess", pre.describe()},
                  {"classes", ds.train.classes}};
  const auto split = [&](const std::string& name, const std::vector<data::Sample>& samples) {
    const FeatureCache c = build_cache(*m, samples, pre, cfg.data.augment, 0, static_cast<uint64_t>(cfg.seed), 0, cfg.data.batch_size,
                                       threads, device.is_cuda() ? 0 : 8, stop_requested, nullptr, nullptr,
                                       cache_memory(cfg.feature_cache_memory_mb, o.out));
    summary[name] = write_split(o.out, name, c, samples, ds.train.classes);
    log::info(name + ": " + std::to_string(c.labels.size(0)) + " images x " + std::to_string(c.views[0].size(1)) + " features");
  };
  split("train", ds.train.samples);
  if (ds.has_val) split("val", ds.val.samples);
  std::string names;
  for (const auto& c : ds.train.classes) names += c + "\n";
  write_file_atomically(o.out + "/classes.txt", names);
  write_file_atomically(o.out + "/features.json", summary.dump(2) + "\n");
  return summary;
}

}  // namespace tltrain::train
