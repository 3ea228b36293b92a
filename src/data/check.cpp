// data check and the config loading every data command shares. No torch: decoding is OpenCV.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/threads.h"
#include "tltrain/core/log.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/stats.h"
#include "tltrain/data/tools.h"

namespace fs = std::filesystem;

namespace tltrain::data {

DataSetup load_data_setup(const std::string& config_path, const std::vector<std::string>& overrides,
                          const ImageSpecReader& read_spec) {
  DataSetup s;
  s.cfg = config::load_run_config(config_path, overrides, {/*data_only=*/true});
  for (const auto& w : s.cfg.warnings) log::warn(config_path + ": " + w.path + ": " + w.message);
  ImageSpec spec;  // defaults: 224×224, resize 256, ImageNet mean/std
  const std::string& bb = s.cfg.model.backbone;
  if (bb.empty()) {
    s.note = "model.backbone is not set: using 224x224 ImageNet defaults";
  } else if (!fs::exists(bb)) {
    s.note = "backbone '" + bb + "' does not exist (yet): using 224x224 ImageNet defaults";
  } else {
    try {
      spec = read_spec(bb);
      s.note = "from the metadata of " + bb;
    } catch (const Error& e) {
      s.note = std::string("backbone cannot be read (") + e.what() + "): using 224x224 ImageNet defaults";
    }
  }
  if (s.cfg.data.normalization == config::Normalization::Dataset && !s.cfg.data.normalization_stats) {
    // What fit will compute: the previews and benchmarks then see the run's own pixels.
    const Datasets ds = load_datasets(s.cfg.data, static_cast<uint64_t>(s.cfg.seed));
    s.cfg = with_dataset_stats(s.cfg, ds.train.samples, spec, 0);
  }
  s.pre = resolve_preprocess(s.cfg.data, spec);
  return s;
}

bool CheckReport::usable() const {
  return std::all_of(splits.begin(), splits.end(), [](const SplitReport& s) { return s.images > 0; });
}

namespace {

SplitReport make_split(const std::string& name, const Dataset& d) {
  SplitReport r;
  r.name = name;
  r.source = d.source;
  r.classes = d.classes;
  r.skipped = d.skipped;
  return r;
}

/// Decodes every sample on THREADS threads; returns the failures by sample position.
std::vector<std::string> decode_all(const std::vector<const Sample*>& samples, const DecodeOptions& opts, int64_t threads) {
  std::vector<std::string> reasons(samples.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < samples.size();) {
      DecodeResult r = decode_file(samples[i]->path, opts);
      if (!r.ok()) reasons[i] = r.reason();
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  return reasons;
}

std::string plural(size_t n, const std::string& word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : word.back() == 's' ? "es" : "s");
}

void list_grouped(std::ostringstream& out, const std::map<std::string, std::vector<std::string>>& by_reason) {
  for (const auto& [reason, paths] : by_reason) {
    out << "    " << reason << ": " << paths.size() << "\n";
    for (size_t i = 0; i < paths.size() && i < 10; ++i) out << "      " << paths[i] << "\n";
    if (paths.size() > 10) out << "      ... and " << paths.size() - 10 << " more\n";
  }
}

}  // namespace

CheckReport check_data(const DataSetup& setup, const CheckOptions& opts) {
  Datasets ds = load_datasets(setup.cfg.data, static_cast<uint64_t>(setup.cfg.seed));
  CheckReport report;
  std::vector<const Dataset*> sets{&ds.train};
  report.splits.push_back(make_split("train", ds.train));
  if (ds.has_val) {
    sets.push_back(&ds.val);
    report.splits.push_back(make_split("val", ds.val));
  }
  std::vector<const Sample*> all;
  for (const auto* d : sets)
    for (const auto& s : d->samples) all.push_back(&s);
  std::vector<std::string> reasons(all.size());
  if (opts.decode) {
    DecodeOptions dopt;
    dopt.max_pixels = setup.cfg.data.max_pixels;
    const int64_t threads = threads_or_cores(opts.threads);
    reasons = decode_all(all, dopt, threads);
    report.decoded = true;
  }
  size_t at = 0;
  for (size_t k = 0; k < sets.size(); ++k) {
    SplitReport& r = report.splits[k];
    r.counts.assign(r.classes.size(), 0);
    for (const auto& s : sets[k]->samples) {
      const std::string& why = reasons[at++];
      if (!why.empty()) {
        r.bad.push_back({s.path, why});
        continue;
      }
      for (int64_t c : s.labels) r.counts[static_cast<size_t>(c)]++;  // multi-label: every class it has
      if (s.labels.empty() && s.label >= 0) r.counts[static_cast<size_t>(s.label)]++;
      r.images++;
    }
    auto [lo, hi] = std::minmax_element(r.counts.begin(), r.counts.end());
    if (*lo == 0) {
      report.warnings.push_back(r.name + ": class '" + r.classes[static_cast<size_t>(lo - r.counts.begin())] + "' has no usable images");
    } else if (static_cast<double>(*hi) / static_cast<double>(*lo) > 1.5) {
      std::ostringstream w;
      w.precision(2);
      w << std::fixed << r.name << ": class imbalance, largest/smallest = " << static_cast<double>(*hi) / static_cast<double>(*lo)
        << " (" << r.classes[static_cast<size_t>(hi - r.counts.begin())] << " " << *hi << ", "
        << r.classes[static_cast<size_t>(lo - r.counts.begin())] << " " << *lo
        << ") > 1.5: consider \"class_weights\": \"auto\" in the stages, and watch per-class accuracy";
      report.warnings.push_back(w.str());
    }
  }
  return report;
}

std::string format_check(const CheckReport& report) {
  std::ostringstream out;
  for (const auto& r : report.splits) {
    out << r.name << ": " << plural(static_cast<size_t>(r.images), "image") << " in " << plural(r.classes.size(), "class")
        << "  (" << r.source << ")\n";
    size_t width = 0;
    for (const auto& c : r.classes) width = std::max(width, c.size());
    for (size_t c = 0; c < r.classes.size(); ++c)
      out << "  " << r.classes[c] << std::string(width - r.classes[c].size() + 2, ' ') << r.counts[c] << "\n";
    if (r.skipped.count() > 0) {
      out << "  skipped " << plural(r.skipped.count(), "file") << ":\n";
      list_grouped(out, r.skipped.by_reason);
    }
    if (!r.bad.empty()) {
      std::map<std::string, std::vector<std::string>> by_reason;
      for (const auto& b : r.bad) by_reason[b.reason].push_back(b.path);
      out << "  bad images (cannot be decoded, left out): " << r.bad.size() << "\n";
      list_grouped(out, by_reason);
    } else if (report.decoded) {
      out << "  every image decodes\n";
    }
  }
  if (!report.decoded) out << "(images not decoded: --no-decode)\n";
  for (const auto& w : report.warnings) out << "warning: " << w << "\n";
  return out.str();
}

}  // namespace tltrain::data
