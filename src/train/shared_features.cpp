#include "tltrain/train/shared_features.h"

#include "tltrain/core/error.h"
#include "tltrain/core/log.h"

namespace tltrain::train {

SharedFeatures::SharedFeatures(const std::vector<data::Sample>& all) : all_(all) {
  for (size_t i = 0; i < all.size(); ++i) index_.emplace(all[i].path, i);
}

FeatureCache SharedFeatures::features(model::Classifier& m, const std::vector<data::Sample>& samples, const CacheRequest& r) {
  const Key key{r.views, r.views == 0 ? 0 : r.epoch_base, r.teacher ? r.teacher->path() : ""};  // un-augmented: no epoch
  auto it = built_.find(key);
  if (it == built_.end()) {
    log::info("one feature cache for every run (" + std::to_string(all_.size()) + " images)");
    it = built_.emplace(key, build(m, r)).first;
  }
  return select(it->second, m, samples, r.memory);
}

SharedFeatures::Built SharedFeatures::build(model::Classifier& m, const CacheRequest& r) {
  Built b;
  b.cache = FeatureSource::features(m, all_, r);
  b.row_of.assign(all_.size(), -1);
  for (size_t row = 0; row < b.cache.sample_index.size(); ++row)
    b.row_of[static_cast<size_t>(b.cache.sample_index[row])] = static_cast<int64_t>(row);
  for (const auto& bad : b.cache.bad) b.bad[bad.path] = bad.reason;
  return b;
}

FeatureCache SharedFeatures::select(const Built& b, model::Classifier& m, const std::vector<data::Sample>& samples,
                                    const CacheMemory& memory) const {
  FeatureCache c;
  std::vector<int64_t> rows;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto it = index_.find(samples[i].path);
    TLTRAIN_ASSERT(it != index_.end(), "a run's image is not among the shared cache's images");
    const int64_t row = b.row_of[it->second];
    if (row < 0) {
      const auto why = b.bad.find(samples[i].path);
      c.bad.push_back({samples[i].path, why != b.bad.end() ? why->second : "did not decode (on another rank)"});
      continue;
    }
    rows.push_back(row);
    c.sample_index.push_back(static_cast<int64_t>(i));
  }
  TLTRAIN_CHECK(!rows.empty(), ErrorKind::Data, "no image of this run's set could be decoded");
  const auto idx = torch::tensor(rows, torch::kLong).to(m.device());
  const auto kept = static_cast<int64_t>(rows.size());
  const auto nviews = static_cast<int64_t>(b.cache.views.size());
  c.stacked = cache_rows(nviews * kept, b.cache.stacked.size(1), m.device(), memory, "this run's feature cache");
  for (int64_t v = 0; v < nviews; ++v) {
    c.views.push_back(c.stacked.narrow(0, v * kept, kept));
    torch::index_select_out(c.views.back(), b.cache.views[static_cast<size_t>(v)], 0, idx);
  }
  for (const auto& t : b.cache.teacher) c.teacher.push_back(t.index_select(0, idx));
  c.labels = data::targets(samples, c.sample_index, multi_hot_classes(m)).to(m.device());
  return c;
}

}  // namespace tltrain::train
