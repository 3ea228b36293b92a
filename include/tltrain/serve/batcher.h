#pragma once
// Dynamic batching for the server: request threads submit preprocessed images to a bounded
// queue; one thread takes up to max_batch of them (waiting at most max_wait_ms for company, and
// not at all when no other request is on its way), runs one forward, and fulfils each promise.
#include <torch/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tltrain::serve {

struct BatcherOptions {
  int64_t max_batch = 16;       ///< images per forward; 1 turns batching off
  int64_t max_wait_ms = 2;      ///< longest a batch's first image waits for more
  int64_t fill = 4;             ///< rows per forward; waiting stops once this many are queued
  int64_t queue_capacity = 128; ///< waiting images; submit() refuses beyond (the server answers 503)
  int64_t workers = 1;          ///< threads running forwards side by side, each taking its own batch
  int64_t threads = 1;          ///< intra-op threads of each worker
};

struct BatcherStats {
  int64_t images = 0, batches = 0, largest_batch = 0, rejected = 0, cancelled = 0;
};

class Batcher {
 public:
  struct Job {
    torch::Tensor image;                  ///< 3×H×W float, preprocessed
    std::promise<torch::Tensor> result;   ///< the image's row of FORWARD's output
    std::atomic<bool> cancelled{false};   ///< its request timed out: skip it
  };
  using JobPtr = std::shared_ptr<Job>;
  /// FORWARD maps an N×3×H×W chunk (N <= fill) to N×C rows; it runs on the batcher's thread only.
  Batcher(BatcherOptions opts, std::function<torch::Tensor(const torch::Tensor&)> forward);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// Queues JOB; false when the queue is full or the batcher is stopping.
  bool submit(const JobPtr& job);
  /// A request is decoding an image it will submit: the batcher may wait for it. Pair with arrived().
  void expect();
  void arrived();
  /// Finishes every queued job, then stops the thread.
  void stop();
  BatcherStats stats() const;
  int64_t queued() const;

 private:
  void run();

  BatcherOptions opts_;
  std::function<torch::Tensor(const torch::Tensor&)> forward_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobPtr> queue_;
  int64_t expected_ = 0;  ///< requests decoding right now
  bool stopping_ = false;
  BatcherStats stats_;
  std::vector<std::thread> threads_;
};

}  // namespace tltrain::serve
