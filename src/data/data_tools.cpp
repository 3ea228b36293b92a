// data preview and bench data: they run the real Loader, so they show and time what training sees.
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/threads.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/loader.h"
#include "tltrain/data/tools.h"
#include "tltrain/data/transforms.h"

namespace tltrain::data {

namespace {
int64_t resolve_threads(int64_t requested, const config::RunConfig& cfg) {
  return threads_or_cores(requested > 0 ? requested : cfg.loader_threads);
}
}  // namespace

int64_t write_preview(const DataSetup& setup, const std::string& out_png, int64_t n, int64_t epoch) {
  TLTRAIN_CHECK(n >= 1 && n <= 1024, ErrorKind::Usage, "--n must be in [1, 1024], got " + std::to_string(n));
  TLTRAIN_CHECK(epoch >= 0, ErrorKind::Usage, "--epoch must be >= 0, got " + std::to_string(epoch));
  Datasets ds = load_datasets(setup.cfg.data, static_cast<uint64_t>(setup.cfg.seed));
  LoaderOptions lo;
  lo.batch_size = n;
  lo.shuffle = true;
  lo.seed = static_cast<uint64_t>(setup.cfg.seed);
  lo.threads = resolve_threads(0, setup.cfg);
  lo.prefetch_batches = 1;
  Loader loader(ds.train.samples, setup.pre, setup.cfg.data.augment, Mode::Train, lo);
  loader.start_epoch(epoch);
  auto batch = loader.next();
  loader.stop();
  for (const auto& b : loader.bad_images()) log::warn("preview: left out " + b.path + ": " + b.reason);
  TLTRAIN_CHECK(batch.has_value(), ErrorKind::Data, "no training image of '" + setup.cfg.data.train + "' could be decoded");
  Transform t(setup.pre, setup.cfg.data.augment, Mode::Train);
  const int64_t count = batch->images.size(0);
  const int H = static_cast<int>(setup.pre.height), W = static_cast<int>(setup.pre.width), gap = 4;
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(count))));
  const int rows = static_cast<int>((count + cols - 1) / cols);
  cv::Mat grid(rows * H + (rows + 1) * gap, cols * W + (cols + 1) * gap, CV_8UC3, cv::Scalar::all(255));
  torch::Tensor images = batch->images.contiguous();
  const float* data = images.data_ptr<float>();
  for (int64_t i = 0; i < count; ++i) {
    cv::Mat tile = t.denormalize(data + i * 3 * H * W);
    int r = static_cast<int>(i) / cols, c = static_cast<int>(i) % cols;
    tile.copyTo(grid(cv::Rect(gap + c * (W + gap), gap + r * (H + gap), W, H)));
  }
  std::vector<uchar> png;
  TLTRAIN_CHECK(cv::imencode(".png", grid, png), ErrorKind::Runtime, "could not encode the preview grid as PNG");
  write_file_atomically(out_png, std::string(png.begin(), png.end()));
  return count;
}

BenchResult bench_data(const DataSetup& setup, const BenchOptions& opts) {
  TLTRAIN_CHECK(opts.seconds > 0, ErrorKind::Usage, "--seconds must be > 0");
  using clock = std::chrono::steady_clock;
  Datasets ds = load_datasets(setup.cfg.data, static_cast<uint64_t>(setup.cfg.seed));
  BenchResult res;
  res.threads = resolve_threads(opts.threads, setup.cfg);
  res.batch_size = setup.cfg.data.batch_size;
  const auto& samples = ds.train.samples;
  if (opts.decode_only) {
    // The ceiling: read + full decode on the same threads, no transforms, no batches.
    DecodeOptions d;
    d.max_pixels = setup.pre.max_pixels;
    for (const auto& s : samples) (void)decode_file(s.path, d);  // warm the page cache
    std::atomic<int64_t> next{0};
    std::atomic<bool> done{false};
    auto t0 = clock::now();
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < res.threads; ++t)
      pool.emplace_back([&] {
        while (!done) (void)decode_file(samples[static_cast<size_t>(next++ % static_cast<int64_t>(samples.size()))].path, d);
      });
    std::this_thread::sleep_for(std::chrono::duration<double>(opts.seconds));
    done = true;
    for (auto& t : pool) t.join();
    res.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    res.images = next.load();  // each claimed decode finished before the join, inside the timed span
    res.images_per_s = static_cast<double>(res.images) / res.seconds;
    return res;
  }
  LoaderOptions lo;
  lo.batch_size = setup.cfg.data.batch_size;
  lo.threads = res.threads;
  lo.shuffle = true;
  lo.seed = static_cast<uint64_t>(setup.cfg.seed);
  Loader loader(samples, setup.pre, setup.cfg.data.augment, Mode::Train, lo);
  bool warm = false;
  clock::time_point t0;
  for (int64_t epoch = 0;; ++epoch) {
    loader.start_epoch(epoch);
    while (auto b = loader.next()) {
      if (!warm) {  // the first batch pays for thread start and cold caches
        warm = true;
        t0 = clock::now();
        continue;
      }
      res.images += b->images.size(0);
      res.seconds = std::chrono::duration<double>(clock::now() - t0).count();
      if (res.seconds >= opts.seconds) {
        loader.stop();
        res.images_per_s = static_cast<double>(res.images) / res.seconds;
        return res;
      }
    }
    TLTRAIN_CHECK(warm, ErrorKind::Data, "no training image could be decoded");
  }
}

}  // namespace tltrain::data
