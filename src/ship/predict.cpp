#include "tltrain/ship/predict.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/core/threads.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/model/inference.h"
#include "tltrain/checkpoint/model_file.h"

namespace fs = std::filesystem;

namespace tltrain::ship {

std::vector<std::string> collect_images(const std::vector<std::string>& inputs, data::SkipReport* skipped) {
  TLTRAIN_CHECK(!inputs.empty(), ErrorKind::Usage, "give at least one image file or folder");
  std::vector<std::string> out;
  data::SkipReport local;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> found = data::list_images(in, skipped ? *skipped : local);
      TLTRAIN_CHECK(!found.empty(), ErrorKind::Data, "folder '" + in + "' holds no images (jpg jpeg png bmp webp tif tiff)");
      out.insert(out.end(), found.begin(), found.end());
    } else {
      // A named file is kept even when unreadable: it gets an error row, not a silent skip.
      TLTRAIN_CHECK(fs::exists(in, ec), ErrorKind::Data, "'" + in + "' does not exist");
      out.push_back(in);
    }
  }
  return out;
}

std::vector<PredictRow> predict_images(const PredictOptions& o) {
  TLTRAIN_CHECK(o.topk >= 1, ErrorKind::Usage, "--topk must be >= 1");
  TLTRAIN_CHECK(o.batch_size >= 1, ErrorKind::Usage, "--batch-size must be >= 1");
  data::SkipReport skipped;
  auto files = collect_images(o.inputs, &skipped);
  auto mf = checkpoint::load_model_file(o.model);
  if (o.optimize && !mf.is_onnx()) {
    // Measured 2.3x on MobileNetV2 (docs/benchmarks.md, Deploy); a module LibTorch cannot freeze runs as saved.
    std::string why;
    torch::InferenceMode guard;
    mf.module = model::optimized_for_inference(mf.module, {std::max<int64_t>(2, o.micro), 3, mf.info.preprocess.height, mf.info.preprocess.width}, &why);
    if (!why.empty()) log::debug("predict runs the model file as saved: " + why);
  }
  std::vector<data::Sample> samples;
  for (const auto& f : files) samples.push_back({f, 0, {}});
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.threads = threads_or_cores(o.threads);
  data::Preprocess pre = mf.info.preprocess;
  pre.skip_bad_images = true;
  data::Loader loader(samples, pre, config::AugmentConfig{}, data::Mode::Eval, lo);

  std::vector<PredictRow> rows(files.size());
  for (size_t i = 0; i < files.size(); ++i) rows[i].path = files[i];
  const int64_t k = std::min<int64_t>(o.topk, static_cast<int64_t>(mf.info.classes.size()));
  torch::InferenceMode guard;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    auto logits = model::in_chunks(batch->images, o.micro,
                                   [&](const torch::Tensor& x) { return mf.logits(x); });
    const auto probs = checkpoint::probabilities(mf.info, logits).contiguous();
    auto [p, idx] = probs.topk(k, 1);
    auto pa = p.accessor<float, 2>();
    auto ia = idx.accessor<int64_t, 2>();
    const size_t classes = mf.info.classes.size();
    for (size_t r = 0; r < batch->indices.size(); ++r) {
      auto& row = rows[static_cast<size_t>(batch->indices[r])];
      const float* pr = probs.data_ptr<float>() + r * classes;
      for (int64_t c : checkpoint::decided_classes(mf.info, pr, classes)) row.decided.push_back({c, mf.info.classes[static_cast<size_t>(c)], pr[c]});
      for (int64_t j = 0; j < k; ++j)
        row.top.push_back({ia[static_cast<int64_t>(r)][j], mf.info.classes[static_cast<size_t>(ia[static_cast<int64_t>(r)][j])],
                           pa[static_cast<int64_t>(r)][j]});
    }
  }
  for (const auto& bad : loader.bad_images())
    for (auto& row : rows)
      if (row.path == bad.path) row.error = bad.reason;
  for (auto& row : rows)
    if (row.top.empty() && row.error.empty()) row.error = "not predicted";  // invariant guard, should not happen
  // What the folders held besides images gets a row too: nothing given is passed over silently.
  for (const auto& [reason, paths] : skipped.by_reason)
    for (const auto& p : paths) rows.push_back({p, {}, {}, reason});
  return rows;
}

namespace {
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
}  // namespace

std::string format_predictions(const std::vector<PredictRow>& rows, const std::string& format) {
  std::ostringstream s;
  if (format == "json") {
    config::json a = config::json::array();
    for (const auto& r : rows) {
      config::json top = config::json::array();
      for (const auto& c : r.top) top.push_back({{"class", c.name}, {"index", c.index}, {"probability", c.probability}});
      config::json decided = config::json::array();
      for (const auto& c : r.decided) decided.push_back(c.name);
      config::json row = {{"path", r.path}, {"labels", decided}, {"top", top}};
      if (!r.error.empty()) row["error"] = r.error;
      a.push_back(row);
    }
    s << a.dump(2) << "\n";
  } else if (format == "csv") {
    s << "path,rank,class,index,probability,decided,error\n";
    for (const auto& r : rows) {
      if (!r.error.empty()) s << csv_field(r.path) << ",,,,,," << csv_field(r.error) << "\n";
      for (size_t j = 0; j < r.top.size(); ++j) {
        bool decided = false;
        for (const auto& d : r.decided) decided = decided || d.index == r.top[j].index;
        s << csv_field(r.path) << "," << j + 1 << "," << csv_field(r.top[j].name) << "," << r.top[j].index << ","
          << std::setprecision(6) << r.top[j].probability << "," << (decided ? 1 : 0) << ",\n";
      }
    }
  } else if (format == "table") {
    size_t w = 4;
    for (const auto& r : rows) w = std::max(w, r.path.size());
    s << std::left << std::setw(static_cast<int>(w)) << "path" << "  decided  |  top predictions\n";
    for (const auto& r : rows) {
      s << std::left << std::setw(static_cast<int>(w)) << r.path << "  ";
      if (!r.error.empty()) s << "ERROR: " << r.error;
      for (size_t j = 0; j < r.decided.size(); ++j) s << (j ? ";" : "") << r.decided[j].name;
      if (r.error.empty()) s << (r.decided.empty() ? "(none)" : "") << "  |  ";
      for (size_t j = 0; j < r.top.size(); ++j)
        s << (j ? "  " : "") << r.top[j].name << " " << std::fixed << std::setprecision(3) << r.top[j].probability;
      s << "\n";
    }
  } else {
    TLTRAIN_FAIL(ErrorKind::Usage, "--format must be table, json or csv, got '" + format + "'");
  }
  return s.str();
}

}  // namespace tltrain::ship
