#include "tltrain/train/feature_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "tltrain/core/error.h"
#include "tltrain/data/device_batches.h"
#include "tltrain/core/log.h"
#include "tltrain/model/inference.h"

namespace tltrain::train {

namespace {
std::atomic<int64_t> g_cached_image_views{0};
}  // namespace

int64_t cached_image_views() { return g_cached_image_views.load(); }

namespace {
std::string mib(double bytes) { return log::fixed(bytes / (1 << 20), 1) + " MiB"; }
}  // namespace

CacheMemory cache_memory(double budget_mb, const std::string& dir) {
  CacheMemory m;
  m.dir = dir;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  m.budget_bytes = budget_mb > 0                ? static_cast<int64_t>(budget_mb * (1 << 20))
                   : pages > 0 && page > 0      ? static_cast<int64_t>(pages) * page / 4
                                                : -1;
  return m;
}

torch::Tensor cache_rows(int64_t rows, int64_t cols, torch::Device device, const CacheMemory& memory, const std::string& what) {
  const int64_t bytes = rows * cols * static_cast<int64_t>(sizeof(float));
  if (!device.is_cpu() || memory.budget_bytes < 0 || bytes <= memory.budget_bytes || bytes == 0)
    return torch::zeros({rows, cols}, torch::TensorOptions(device));
  const std::string fix = "; free space there, or raise feature_cache_memory_mb to keep the cache in RAM";
  std::error_code ec;
  std::filesystem::create_directories(memory.dir, ec);
  std::string name = memory.dir + "/.feature-cache-XXXXXX";
  const int fd = mkstemp(name.data());
  TLTRAIN_CHECK(fd >= 0, ErrorKind::Runtime, "cannot create the " + what + "'s spill file in '" + memory.dir + "': " + std::strerror(errno) + fix);
  unlink(name.c_str());  // the space goes back with the mapping, even when the process dies
  // Reserved now: a full disk is an error here, not a SIGBUS on some later write.
  const int reserved = posix_fallocate(fd, 0, bytes);
  void* p = reserved == 0 ? mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  const int err = reserved != 0 ? reserved : errno;
  close(fd);
  TLTRAIN_CHECK(p != MAP_FAILED, ErrorKind::Runtime, "cannot reserve " + mib(static_cast<double>(bytes)) + " in '" + memory.dir +
                                                    "' for the " + what + ": " + std::strerror(err) + fix);
  log::info(what + ": " + mib(static_cast<double>(bytes)) + ", over the " + mib(static_cast<double>(memory.budget_bytes)) +
            " budget (feature_cache_memory_mb), kept in a memory-mapped file in " + memory.dir);
  const auto size = static_cast<size_t>(bytes);
  return torch::from_blob(p, {rows, cols}, [size](void* q) { munmap(q, size); }, torch::TensorOptions().dtype(torch::kFloat));
}

int64_t multi_hot_classes(model::Classifier& m) {
  return m.head()->cfg.output == config::HeadOutput::MultiLabel ? m.num_classes() : 0;
}

FeatureCache build_cache(model::Classifier& m, const std::vector<data::Sample>& samples, const data::Preprocess& pre,
                         const config::AugmentConfig& aug, int64_t views, uint64_t seed, int64_t epoch_base,
                         int64_t batch_size, int64_t threads, int64_t micro, const std::function<bool()>& stop_requested,
                         dist::ProcessGroup* group, Teacher* teacher, const CacheMemory& memory) {
  torch::NoGradGuard no_grad;
  m.set_training(false, config::BatchNormPolicy::Frozen);
  FeatureCache c;
  const int64_t n = static_cast<int64_t>(samples.size());
  std::vector<int64_t> seen(static_cast<size_t>(n), 0);  // views in which each sample decoded
  std::vector<torch::Tensor> full_teacher;
  // For training and validation sets alike: name the set by its size and first file.
  const std::string none_decoded = "none of the " + std::to_string(n) + " images" +
                                   (samples.empty() ? std::string() : " ('" + samples[0].path + "', ...)") +
                                   " could be decoded; `tltrain data check --config CONFIG` lists the files it cannot read";
  // The backbone is frozen for the whole cache: run its inference-optimized copy.
  std::string why;
  torch::jit::Module fast = model::optimized_for_inference(
      m.backbone_module(), {std::max<int64_t>(1, micro > 0 ? micro : batch_size), 3, pre.height, pre.width}, &why);
  if (!why.empty()) log::debug("feature cache runs the backbone as saved: " + why);
  const int64_t nviews = std::max<int64_t>(views, 1);
  torch::Tensor stacked;  // nviews·n rows: view v's sample i at v·n + i
  const auto view_rows = [&](int64_t v, int64_t cols) {
    if (!stacked.defined()) stacked = cache_rows(nviews * n, cols, m.device(), memory, "feature cache");
    return stacked.narrow(0, v * n, n);
  };
  for (int64_t v = 0; v < nviews; ++v) {
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
      if (!out.defined()) out = view_rows(v, f.size(1));
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
      if (!out.defined()) out = view_rows(v, static_cast<int64_t>(std::llround(dim[0] / dim[1])));
      std::vector<torch::Tensor> t{out};
      if (teacher) {
        if (!tout.defined()) tout = torch::zeros({n, m.num_classes()}, out.options());
        t.push_back(tout);
      }
      group->all_reduce_sum(t);
    }
    if (teacher) full_teacher.push_back(tout);
  }
  if (group) {
    std::vector<double> s(seen.begin(), seen.end());
    group->all_reduce_sum(s);
    for (size_t i = 0; i < s.size(); ++i) seen[i] = static_cast<int64_t>(std::llround(s[i]));
  }
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i)
    if (seen[static_cast<size_t>(i)] == nviews) rows.push_back(i);
  TLTRAIN_CHECK(!rows.empty(), ErrorKind::Data, none_decoded);
  const auto kept = static_cast<int64_t>(rows.size());
  if (kept < n) {
    // Left-out samples' rows go, in place (row v·kept + k comes from v·n + rows[k], never from below it).
    for (int64_t v = 0; v < nviews; ++v)
      for (int64_t k = 0; k < kept; ++k)
        if (v * kept + k != v * n + rows[static_cast<size_t>(k)]) stacked[v * kept + k].copy_(stacked[v * n + rows[static_cast<size_t>(k)]]);
    stacked = stacked.narrow(0, 0, nviews * kept);
  }
  c.stacked = stacked;
  for (int64_t v = 0; v < nviews; ++v) c.views.push_back(stacked.narrow(0, v * kept, kept));
  auto idx = torch::tensor(rows, torch::kLong).to(m.device());
  for (auto& t : full_teacher) c.teacher.push_back(t.index_select(0, idx));
  if (const std::string how = model::constant_rows(c.views[0]); !how.empty())
    TLTRAIN_FAIL(ErrorKind::Data, "the backbone's features are the same for every image (" + how + "): " + model::kConstantFeaturesFix);
  c.labels = data::targets(samples, rows, multi_hot_classes(m)).to(m.device());
  c.sample_index = rows;
  return c;
}

FeatureCache FeatureSource::features(model::Classifier& m, const std::vector<data::Sample>& samples, const CacheRequest& r) {
  return build_cache(m, samples, r.pre, r.aug, r.views, r.seed, r.epoch_base, r.batch_size, r.threads, r.micro, r.stop_requested,
                     r.group, r.teacher, r.memory);
}

}  // namespace tltrain::train
