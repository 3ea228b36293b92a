#include "tltrain/serve/batcher.h"

#include <torch/torch.h>

#include <vector>

#include "tltrain/core/side_by_side.h"

namespace tltrain::serve {

Batcher::Batcher(BatcherOptions opts, std::function<torch::Tensor(const torch::Tensor&)> forward)
    : opts_(opts), forward_(std::move(forward)) {
  if (opts_.max_batch < 1) opts_.max_batch = 1;
  for (int64_t i = 0; i < std::max<int64_t>(1, opts_.workers); ++i) threads_.emplace_back([this] { run(); });
}

Batcher::~Batcher() { stop(); }

bool Batcher::submit(const JobPtr& job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ || static_cast<int64_t>(queue_.size()) >= opts_.queue_capacity) {
      ++stats_.rejected;
      return false;
    }
    queue_.push_back(job);
  }
  cv_.notify_all();
  return true;
}

void Batcher::expect() {
  std::lock_guard<std::mutex> lk(mu_);
  ++expected_;
}

void Batcher::arrived() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    --expected_;
  }
  cv_.notify_all();
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

int64_t Batcher::queued() const {
  std::lock_guard<std::mutex> lk(mu_);
  return static_cast<int64_t>(queue_.size());
}

void Batcher::run() {
  set_intra_op_threads(opts_.threads);
  torch::InferenceMode guard;
  for (;;) {
    std::vector<JobPtr> batch;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      // Wait for company only while some request is still decoding (at low load nobody is, and
      // the first image goes through at once) and only up to one efficient chunk: while this
      // batch runs, the next one gathers in the queue by itself.
      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.max_wait_ms);
      const int64_t fill = std::min(opts_.max_batch, std::max<int64_t>(1, opts_.fill));
      while (static_cast<int64_t>(queue_.size()) < fill && expected_ > 0 && !stopping_) {
        if (cv_.wait_until(lk, deadline) == std::cv_status::timeout) break;
      }
      while (!queue_.empty() && static_cast<int64_t>(batch.size()) < opts_.max_batch) {
        auto job = std::move(queue_.front());
        queue_.pop_front();
        if (job->cancelled) ++stats_.cancelled;
        else batch.push_back(std::move(job));
      }
      if (batch.empty()) continue;
      ++stats_.batches;
      stats_.images += static_cast<int64_t>(batch.size());
      stats_.largest_batch = std::max<int64_t>(stats_.largest_batch, static_cast<int64_t>(batch.size()));
    }
    // One forward per chunk of `fill`, each chunk's answers released as soon as it is done:
    // its clients send their next images while the rest of the batch still runs.
    const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, opts_.fill));
    for (size_t start = 0; start < batch.size(); start += chunk) {
      const size_t end = std::min(batch.size(), start + chunk);
      torch::Tensor out;
      try {
        std::vector<torch::Tensor> images;
        for (size_t i = start; i < end; ++i) images.push_back(batch[i]->image);
        out = forward_(torch::stack(images));
      } catch (...) {
        for (size_t i = start; i < end; ++i) batch[i]->result.set_exception(std::current_exception());
        continue;
      }
      for (size_t i = start; i < end; ++i) batch[i]->result.set_value(out[static_cast<int64_t>(i - start)].clone());
    }
  }
}

}  // namespace tltrain::serve
