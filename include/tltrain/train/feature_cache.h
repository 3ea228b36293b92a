#pragma once
// Feature cache for stages whose backbone is frozen: the backbone runs once per image (and per
// augmented view), the head trains on the pooled features.
#include <torch/torch.h>

#include <vector>

#include "tltrain/data/loader.h"
#include "tltrain/dist/context.h"
#include "tltrain/model/classifier.h"

namespace tltrain::train {

struct FeatureCache {
  std::vector<torch::Tensor> views;   ///< each M×C' on the model's device
  torch::Tensor labels;               ///< M targets, as data::targets gives them
  std::vector<int64_t> sample_index;  ///< row → dataset sample index
  std::vector<data::BadImage> bad;    ///< samples left out because they failed to decode (this rank's share)
};

/// > 0 (the number of classes) when M's head is multi-label: its targets are multi-hot.
int64_t multi_hot_classes(model::Classifier& m);

/// Pooled backbone features of every sample: VIEWS augmented views drawn as loader epochs
/// EPOCH_BASE + v, or one un-augmented view when VIEWS is 0. Samples that failed to decode in
/// any view are left out (listed in bad). A Data error when the features do not vary across images
/// (model::constant_rows): a head cannot learn from them. Throws Interrupted when a stop was requested. With GROUP each rank runs
/// the backbone on its shard only and the ranks sum their rows, so every rank holds the full cache.
FeatureCache build_cache(model::Classifier& m, const std::vector<data::Sample>& samples, const data::Preprocess& pre,
                         const config::AugmentConfig& aug, int64_t views, uint64_t seed, int64_t epoch_base,
                         int64_t batch_size, int64_t threads, int64_t micro, const std::function<bool()>& stop_requested,
                         dist::ProcessGroup* group = nullptr);

}  // namespace tltrain::train
