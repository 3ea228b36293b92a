#pragma once
// Feature cache for stages whose backbone is frozen: the backbone runs once per image (and per
// augmented view), the head trains on the pooled features.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "tltrain/data/loader.h"
#include "tltrain/dist/context.h"
#include "tltrain/model/classifier.h"
#include "tltrain/train/distill.h"

namespace tltrain::train {

/// Where a cache may grow: in RAM up to BUDGET_BYTES, beyond that in a file in DIR mapped into
/// memory (CPU only; a GPU cache stays on its device). Values are the same either way.
struct CacheMemory {
  int64_t budget_bytes = -1;  ///< < 0: no limit
  std::string dir;            ///< the spill file's folder (the run's output folder)
};

/// The budget of config key feature_cache_memory_mb (BUDGET_MB; 0: a quarter of physical memory), spilling into DIR.
CacheMemory cache_memory(double budget_mb, const std::string& dir);

/// ROWS×COLS zeros of float for a cache on DEVICE: in RAM, or (CPU, over MEMORY's budget) in an
/// unlinked file in MEMORY.dir mapped shared, whose space goes back when the tensor is freed.
/// WHAT names the cache in the log line and in an Io error when the file cannot be made.
torch::Tensor cache_rows(int64_t rows, int64_t cols, torch::Device device, const CacheMemory& memory, const std::string& what);

struct FeatureCache {
  torch::Tensor stacked;              ///< every view's M rows, one view after another (V·M × C')
  std::vector<torch::Tensor> views;   ///< each M×C' on the model's device: slices of stacked
  torch::Tensor labels;               ///< M targets, as data::targets gives them
  std::vector<int64_t> sample_index;  ///< row → dataset sample index
  std::vector<data::BadImage> bad;    ///< samples left out because they failed to decode (this rank's share)
  std::vector<torch::Tensor> teacher; ///< with a teacher: its logits M×C per view, rows as in views
};

/// > 0 (the number of classes) when M's head is multi-label: its targets are multi-hot.
int64_t multi_hot_classes(model::Classifier& m);

/// Pooled backbone features of every sample: VIEWS augmented views drawn as loader epochs
/// EPOCH_BASE + v, or one un-augmented view when VIEWS is 0. Samples that failed to decode in
/// any view are left out (listed in bad). A Data error when the features do not vary across images
/// (model::constant_rows): a head cannot learn from them. Throws Interrupted when a stop was requested. With GROUP each rank runs
/// the backbone on its shard only and the ranks sum their rows, so every rank holds the full cache.
/// With a TEACHER its logits of the same views are cached beside them: it runs once per image and view.
FeatureCache build_cache(model::Classifier& m, const std::vector<data::Sample>& samples, const data::Preprocess& pre,
                         const config::AugmentConfig& aug, int64_t views, uint64_t seed, int64_t epoch_base,
                         int64_t batch_size, int64_t threads, int64_t micro, const std::function<bool()>& stop_requested,
                         dist::ProcessGroup* group = nullptr, Teacher* teacher = nullptr, const CacheMemory& memory = {});

/// Images × views the backbone has run on in build_cache since the process started (this
/// rank's share): what the tests count to see a cache shared instead of recomputed.
int64_t cached_image_views();

/// How a stage asks for its cache: build_cache's arguments but the model and the samples.
struct CacheRequest {
  data::Preprocess pre;
  config::AugmentConfig aug;
  int64_t views = 0;
  uint64_t seed = 0;
  int64_t epoch_base = 0;
  int64_t batch_size = 32, threads = 0, micro = 0;
  std::function<bool()> stop_requested;
  dist::ProcessGroup* group = nullptr;
  Teacher* teacher = nullptr;  ///< distillation: cache its logits too
  CacheMemory memory;
};

/// Where a run's caches come from while its backbone is the one it started with. The default
/// computes them (build_cache); `tltrain cv` passes one whose rows come from a cache over every
/// fold's images, computed once (features do not depend on the fold).
class FeatureSource {
 public:
  virtual ~FeatureSource() = default;
  virtual FeatureCache features(model::Classifier& m, const std::vector<data::Sample>& samples, const CacheRequest& r);
};

}  // namespace tltrain::train
