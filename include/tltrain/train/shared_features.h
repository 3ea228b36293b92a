#pragma once
// One feature cache for many runs over the same images (cv's folds, tune's trials): while the
// backbone is the loaded one, an image's features do not depend on which run asks for them, so
// they are computed once over every image and each run takes its own rows.
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tltrain/data/dataset.h"
#include "tltrain/train/feature_cache.h"

namespace tltrain::train {

/// One cache over ALL per (views, epoch base, teacher), computed the first time a run asks; a
/// run's samples must be among ALL (kept by reference: ALL outlives this).
class SharedFeatures final : public FeatureSource {
 public:
  explicit SharedFeatures(const std::vector<data::Sample>& all);
  FeatureCache features(model::Classifier& m, const std::vector<data::Sample>& samples, const CacheRequest& r) override;

 private:
  struct Built {
    FeatureCache cache;
    std::vector<int64_t> row_of;  ///< all_ index → cache row, -1 when it failed to decode
    std::map<std::string, std::string> bad;
  };
  Built build(model::Classifier& m, const CacheRequest& r);
  FeatureCache select(const Built& b, model::Classifier& m, const std::vector<data::Sample>& samples, const CacheMemory& memory) const;

  const std::vector<data::Sample>& all_;
  std::map<std::string, size_t> index_;
  using Key = std::tuple<int64_t, int64_t, std::string>;  ///< views, epoch base, teacher
  std::map<Key, Built> built_;
};

}  // namespace tltrain::train
