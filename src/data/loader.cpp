#include "tltrain/data/loader.h"
#include "tltrain/core/side_by_side.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <opencv2/core.hpp>

#include "tltrain/core/error.h"
#include "tltrain/core/threads.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/transforms.h"

namespace tltrain::data {

struct Loader::Impl {
  /// One batch being filled by the workers. Samples land in their final place, so finishing a
  /// batch needs no copy unless a bad image has to be left out.
  struct Slot {
    torch::Tensor images, second;
    std::vector<char> ok;
    std::vector<std::string> reasons;  ///< per position, for failed samples
    std::exception_ptr error;          ///< first non-decode failure (a bug or out of memory)
    int64_t remaining = 0;
  };

  std::vector<Sample> samples;
  Transform transform;
  std::optional<Transform> second;  ///< LoaderOptions::second's pipeline
  Mode mode;
  LoaderOptions opts;
  DecodeOptions decode;
  int64_t threads = 1;

  mutable std::mutex mu;
  std::condition_variable work_cv, ready_cv;
  std::vector<std::thread> workers;
  bool running = false, stopping = false;
  int64_t epoch = 0;
  std::vector<int64_t> order;
  std::vector<int64_t> order_epoch;  ///< a stream's epoch id per position; empty: EPOCH for all
  int64_t total = 0;        ///< positions of order that make batches (drop_last trims)
  int64_t num_batches = 0;
  int64_t next_pos = 0;     ///< next position a worker claims
  int64_t consumed = 0;     ///< batches handed out by next()
  std::map<int64_t, Slot> slots;
  std::exception_ptr fatal;  ///< a worker failed outside any sample
  std::vector<BadImage> bad;
  std::set<std::string> bad_paths;

  Impl(std::vector<Sample> s, const Preprocess& pre, const config::AugmentConfig& aug, Mode m, const LoaderOptions& o)
      : samples(std::move(s)), transform(pre, aug, m), mode(m), opts(o) {
    decode.max_pixels = pre.max_pixels;
    decode.min_short_side = transform.min_decode_side();
    if (opts.second) {
      second.emplace(*opts.second, aug, m);
      decode.min_short_side = std::max(decode.min_short_side, second->min_decode_side());  // one decode serves both
    }
    // The workers are the parallelism: OpenCV's own pool inside each would oversubscribe the cores
    // (on 2 cores the difference was within noise; it matters with many workers).
    if (opts.threads != 1) cv::setNumThreads(1);
    threads = threads_or_cores(opts.threads);
  }

  int64_t batch_len(int64_t b) const { return std::min(opts.batch_size, total - b * opts.batch_size); }

  void allocate(Slot& s, int64_t b) {
    auto options = torch::TensorOptions().dtype(torch::kFloat32);
    if (opts.pin_memory && torch::cuda::is_available()) options = options.pinned_memory(true);
    const auto& pre = transform.preprocess();
    int64_t n = batch_len(b);
    s.images = torch::empty({n, 3, pre.height, pre.width}, options);
    if (second) s.second = torch::empty({n, 3, second->preprocess().height, second->preprocess().width}, options);
    s.ok.assign(static_cast<size_t>(n), 0);
    s.reasons.assign(static_cast<size_t>(n), {});
    s.remaining = n;
  }

  void work() {
    set_intra_op_threads(1);  // one image at a time: its tensor ops need no team of their own
    const auto& pre = transform.preprocess();
    const int64_t sample_floats = 3 * pre.height * pre.width;
    const int64_t second_floats = second ? 3 * second->preprocess().height * second->preprocess().width : 0;
    std::string bytes;  // reused: one file's bytes at a time per worker
    try {
      for (;;) {
        int64_t pos, k;
        float* dst;
        float* dst2 = nullptr;
        Slot* slot;
        {
          std::unique_lock<std::mutex> lk(mu);
          // Claim a position only inside the prefetch window: memory is bounded by the queue.
          work_cv.wait(lk, [&] {
            return stopping || next_pos >= total || next_pos / opts.batch_size < consumed + opts.prefetch_batches;
          });
          if (stopping || next_pos >= total) return;
          pos = next_pos++;
          int64_t b = pos / opts.batch_size;
          slot = &slots[b];  // std::map nodes stay put while other batches come and go
          if (!slot->images.defined()) allocate(*slot, b);
          k = pos - b * opts.batch_size;
          dst = slot->images.data_ptr<float>() + k * sample_floats;
          if (second) dst2 = slot->second.data_ptr<float>() + k * second_floats;
        }
        const int64_t index = order[static_cast<size_t>(pos)];
        DecodeResult r;
        std::exception_ptr err;
        try {
          const int64_t sample_epoch = order_epoch.empty() ? epoch : order_epoch[static_cast<size_t>(pos)];
          SampleRng rng = SampleRng::for_sample(opts.seed, sample_epoch, index);
          if (!read_bytes(samples[static_cast<size_t>(index)].path, bytes)) {
            r.failure = DecodeFailure::Unreadable;
          } else if (second) {
            // Both views from one decode and the same draws: the same crop, flip and colours.
            r = decode_image(bytes, decode);
            SampleRng rng2 = rng;
            if (r.ok()) {
              transform.normalize_into(transform.apply(r.image, rng), dst);
              second->normalize_into(second->apply(r.image, rng2), dst2);
            }
          } else if (transform.crop_first()) {
            // Decode only what the crop keeps: the same pixels, about half the decoding work.
            r = decode_image_region(bytes, [&](int w, int h) { return transform.draw_crop(w, h, rng); }, decode);
            if (r.ok()) transform.normalize_into(transform.apply_cropped(r.image, rng), dst);
          } else if (mode == Mode::Eval) {
            cv::Mat pixels;
            r = transform.decode_eval(bytes, decode, pixels);
            if (r.ok()) transform.normalize_into(pixels, dst);
          } else {
            r = decode_image(bytes, decode);
            if (r.ok()) transform.normalize_into(transform.apply(r.image, rng), dst);
          }
        } catch (...) {
          err = std::current_exception();
        }
        std::lock_guard<std::mutex> lk(mu);
        slot->ok[static_cast<size_t>(k)] = r.ok() && !err;
        if (!r.ok()) slot->reasons[static_cast<size_t>(k)] = r.reason();
        if (err && !slot->error) slot->error = err;
        if (--slot->remaining == 0) ready_cv.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu);
      if (!fatal) fatal = std::current_exception();
      ready_cv.notify_all();
    }
  }

  /// Workers for ORDER's first NUM_BATCHES batches.
  void start_workers() {
    const int64_t n = static_cast<int64_t>(order.size());
    total = std::min(n, num_batches * opts.batch_size);
    next_pos = 0;
    consumed = 0;
    fatal = nullptr;
    stopping = false;
    running = true;
    const int64_t spawn = std::min(threads, std::max<int64_t>(1, total));
    for (int64_t t = 0; t < spawn; ++t) workers.emplace_back([this] { work(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stopping = true;
    }
    work_cv.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
    std::lock_guard<std::mutex> lk(mu);
    slots.clear();
    running = false;
  }
};

Loader::Loader(std::vector<Sample> samples, Preprocess pre, config::AugmentConfig augment, Mode mode, LoaderOptions opts) {
  TLTRAIN_CHECK(opts.batch_size >= 1, ErrorKind::Usage, "loader batch_size must be >= 1, got " + std::to_string(opts.batch_size));
  TLTRAIN_CHECK(opts.prefetch_batches >= 1, ErrorKind::Usage,
                "loader prefetch_batches must be >= 1, got " + std::to_string(opts.prefetch_batches));
  TLTRAIN_CHECK(opts.world_size >= 1 && opts.rank >= 0 && opts.rank < opts.world_size, ErrorKind::Usage,
                "loader rank " + std::to_string(opts.rank) + " is outside world_size " + std::to_string(opts.world_size));
  impl_ = std::make_unique<Impl>(std::move(samples), pre, augment, mode, opts);
}

Loader::~Loader() { stop(); }

void Loader::stop() {
  if (impl_) impl_->stop();
}

void Loader::start_epoch(int64_t epoch) {
  Impl& m = *impl_;
  m.stop();
  m.epoch = epoch;
  m.order = epoch_order(static_cast<int64_t>(m.samples.size()), m.opts.seed, epoch, m.opts.shuffle, m.opts.rank, m.opts.world_size,
                        m.opts.pad_shards);
  m.order_epoch.clear();
  const int64_t n = static_cast<int64_t>(m.order.size()), bs = m.opts.batch_size;
  m.num_batches = m.opts.drop_last ? n / bs : (n + bs - 1) / bs;
  m.start_workers();
}

void Loader::start_stream(int64_t epoch0, int64_t first_batch, int64_t steps) {
  Impl& m = *impl_;
  m.stop();
  m.epoch = epoch0;
  const int64_t bs = m.opts.batch_size;
  stream_window(static_cast<int64_t>(m.samples.size()), m.opts.seed, epoch0, first_batch * bs, steps * bs, m.opts.rank,
                m.opts.world_size, m.order, m.order_epoch);
  m.num_batches = static_cast<int64_t>(m.order.size()) / bs;
  m.start_workers();
}

std::optional<Batch> Loader::next() {
  Impl& m = *impl_;
  for (;;) {
    Impl::Slot slot;
    int64_t b;
    {
      std::unique_lock<std::mutex> lk(m.mu);
      if (!m.running || m.consumed >= m.num_batches) return std::nullopt;
      b = m.consumed;
      m.ready_cv.wait(lk, [&] {
        auto it = m.slots.find(b);
        return m.fatal || (it != m.slots.end() && it->second.remaining == 0);
      });
      if (m.fatal) {
        auto e = m.fatal;
        lk.unlock();
        m.stop();
        std::rethrow_exception(e);
      }
      slot = std::move(m.slots[b]);
      m.slots.erase(b);
      m.consumed++;
    }
    m.work_cv.notify_all();
    if (slot.error) {
      m.stop();
      std::rethrow_exception(slot.error);
    }
    const int64_t n = static_cast<int64_t>(slot.ok.size());
    std::vector<int64_t> keep, indices;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t index = m.order[static_cast<size_t>(b * m.opts.batch_size + k)];
      if (slot.ok[static_cast<size_t>(k)]) {
        keep.push_back(k);
        indices.push_back(index);
        continue;
      }
      const std::string& path = m.samples[static_cast<size_t>(index)].path;
      const std::string& reason = slot.reasons[static_cast<size_t>(k)];
      if (!m.transform.preprocess().skip_bad_images) {
        m.stop();
        TLTRAIN_FAIL(ErrorKind::Data, "image '" + path + "' cannot be used: " + reason +
                                          " — replace or remove the file, or set data.on_bad_image to \"skip\"");
      }
      std::lock_guard<std::mutex> lk(m.mu);
      if (m.bad_paths.insert(path).second) m.bad.push_back({path, reason});
    }
    if (keep.empty()) continue;  // every image of this batch was bad: go on with the next
    Batch out;
    out.images = static_cast<int64_t>(keep.size()) == n
                     ? slot.images
                     : slot.images.index_select(0, torch::tensor(keep, torch::kLong));
    out.labels = targets(m.samples, indices, m.opts.multi_hot_classes);
    if (m.second)
      out.second_images = static_cast<int64_t>(keep.size()) == n ? slot.second : slot.second.index_select(0, torch::tensor(keep, torch::kLong));
    out.indices = std::move(indices);
    if (m.opts.pin_memory && out.images.is_pinned() == false && torch::cuda::is_available()) out.images = out.images.pin_memory();
    return out;
  }
}

torch::Tensor targets(const std::vector<Sample>& samples, const std::vector<int64_t>& indices, int64_t multi_hot_classes) {
  const auto n = static_cast<int64_t>(indices.size());
  if (multi_hot_classes > 0) {
    auto t = torch::zeros({n, multi_hot_classes}, torch::kFloat);
    auto acc = t.accessor<float, 2>();
    for (int64_t i = 0; i < n; ++i) {
      const Sample& s = samples[static_cast<size_t>(indices[static_cast<size_t>(i)])];
      for (int64_t c : s.labels) acc[i][c] = 1.0f;
      if (s.labels.empty() && s.label >= 0) acc[i][s.label] = 1.0f;  // a single-label set under a multi-label head
    }
    return t;
  }
  auto t = torch::empty({n}, torch::kLong);
  auto acc = t.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) acc[i] = samples[static_cast<size_t>(indices[static_cast<size_t>(i)])].label;
  return t;
}

int64_t Loader::batches_per_epoch() const {
  const auto& o = impl_->opts;
  const int64_t n = static_cast<int64_t>(impl_->samples.size());
  const int64_t per_rank = o.world_size == 1 || n == 0 ? n
                           : o.pad_shards          ? (n + o.world_size - 1) / o.world_size
                                                   : (n - o.rank + o.world_size - 1) / o.world_size;
  return o.drop_last ? per_rank / o.batch_size : (per_rank + o.batch_size - 1) / o.batch_size;
}

const std::vector<Sample>& Loader::samples() const { return impl_->samples; }

int64_t Loader::pending_batches() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return static_cast<int64_t>(impl_->slots.size());
}

std::vector<BadImage> Loader::bad_images() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->bad;
}

}  // namespace tltrain::data
