#include "tltrain/train/feature_cache.h"

#include <atomic>

#include "tltrain/core/error.h"
#include "tltrain/data/device_batches.h"
#include "tltrain/core/log.h"
#include "tltrain/model/inference.h"

namespace tltrain::train {

namespace {
std::atomic<int64_t> g_cached_image_views{0};
}  // namespace

int64_t cached_image_views() { return g_cached_image_views.load(); }

int64_t multi_hot_classes(model::Classifier& m) {
  return m.head()->cfg.output == config::HeadOutput::MultiLabel ? m.num_classes() : 0;
}

FeatureCache build_cache(model::Classifier& m, const std::vector<data::Sample>& samples, const data::Preprocess& pre,
                         const config::AugmentConfig& aug, int64_t views, uint64_t seed, int64_t epoch_base,
                         int64_t batch_size, int64_t threads, int64_t micro, const std::function<bool()>& stop_requested,
                         dist::ProcessGroup* group, Teacher* teacher) {
  torch::NoGradGuard no_grad;
  m.set_training(false, config::BatchNormPolicy::Frozen);
  FeatureCache c;
  const int64_t n = static_cast<int64_t>(samples.size());
  std::vector<int64_t> seen(static_cast<size_t>(n), 0);  // views in which each sample decoded
  std::vector<torch::Tensor> full, full_teacher;
  // For training and validation sets alike: name the set by its size and first file.
  const std::string none_decoded = "none of the " + std::to_string(n) + " images" +
                                   (samples.empty() ? std::string() : " ('" + samples[0].path + "', ...)") +
                                   " could be decoded; `tltrain data check --config CONFIG` lists the files it cannot read";
  // The backbone is frozen for the whole cache: run its inference-optimized copy.
  std::string why;
  torch::jit::Module fast = model::optimized_for_inference(
      m.backbone_module(), {std::max<int64_t>(1, micro > 0 ? micro : batch_size), 3, pre.height, pre.width}, &why);
  if (!why.empty()) log::debug("feature cache runs the backbone as saved: " + why);
  for (int64_t v = 0; v < std::max<int64_t>(views, 1); ++v) {
    data::LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.threads = threads;
    lo.seed = seed;
    if (teacher) lo.second = teacher->preprocess();
    if (group) {
      lo.rank = group->rank();
      lo.world_size = group->world();
      lo.pad_shards = false;
    }
    data::Loader loader(samples, pre, aug, views == 0 ? data::Mode::Eval : data::Mode::Train, lo);
    loader.start_epoch(epoch_base + v);
    torch::Tensor out, tout;
    data::DeviceBatches batches(loader, m.device());
    while (auto b = batches.next()) {
      if (stop_requested()) TLTRAIN_FAIL(ErrorKind::Interrupted, "interrupted while computing the feature cache");
      const auto& x = b->images;
      auto f = model::in_chunks(x, micro, [&](const torch::Tensor& t) { return m.head()->pool(fast.forward({t}).toTensor()); });
      if (!out.defined()) out = torch::zeros({n, f.size(1)}, f.options());
      auto idx = torch::tensor(b->indices, torch::kLong).to(m.device());
      out.index_copy_(0, idx, f);
      if (teacher) {
        auto t = teacher->logits(b->second_images);
        if (!tout.defined()) tout = torch::zeros({n, t.size(1)}, t.options());
        tout.index_copy_(0, idx, t);
      }
      for (int64_t i : b->indices) seen[static_cast<size_t>(i)]++;
      g_cached_image_views += static_cast<int64_t>(b->indices.size());
    }
    for (auto& bad : loader.bad_images()) c.bad.push_back(std::move(bad));
    if (group) {
      // Each row was filled by exactly one rank (zeros elsewhere): the sum is every rank's rows.
      std::vector<double> dim{out.defined() ? static_cast<double>(out.size(1)) : 0.0, out.defined() ? 1.0 : 0.0};
      group->all_reduce_sum(dim);
      TLTRAIN_CHECK(dim[1] > 0, ErrorKind::Data, none_decoded);
      if (!out.defined())
        out = torch::zeros({n, static_cast<int64_t>(std::llround(dim[0] / dim[1]))}, torch::TensorOptions(m.device()));
      std::vector<torch::Tensor> t{out};
      if (teacher) {
        if (!tout.defined()) tout = torch::zeros({n, m.num_classes()}, out.options());
        t.push_back(tout);
      }
      group->all_reduce_sum(t);
    }
    full.push_back(out);
    if (teacher) full_teacher.push_back(tout);
  }
  if (group) {
    std::vector<double> s(seen.begin(), seen.end());
    group->all_reduce_sum(s);
    for (size_t i = 0; i < s.size(); ++i) seen[i] = static_cast<int64_t>(std::llround(s[i]));
  }
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i)
    if (seen[static_cast<size_t>(i)] == static_cast<int64_t>(full.size())) rows.push_back(i);
  TLTRAIN_CHECK(!rows.empty(), ErrorKind::Data, none_decoded);
  auto idx = torch::tensor(rows, torch::kLong).to(m.device());
  for (auto& f : full) c.views.push_back(f.index_select(0, idx));
  for (auto& t : full_teacher) c.teacher.push_back(t.index_select(0, idx));
  if (const std::string how = model::constant_rows(c.views[0]); !how.empty())
    TLTRAIN_FAIL(ErrorKind::Data, "the backbone's features are the same for every image (" + how + "): " + model::kConstantFeaturesFix);
  c.labels = data::targets(samples, rows, multi_hot_classes(m)).to(m.device());
  c.sample_index = rows;
  return c;
}

FeatureCache FeatureSource::features(model::Classifier& m, const std::vector<data::Sample>& samples, const CacheRequest& r) {
  return build_cache(m, samples, r.pre, r.aug, r.views, r.seed, r.epoch_base, r.batch_size, r.threads, r.micro, r.stop_requested,
                     r.group, r.teacher);
}

}  // namespace tltrain::train
