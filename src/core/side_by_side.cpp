#include "tltrain/core/side_by_side.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

namespace tltrain {

namespace {

// Set on the pool's threads: a chunk that itself asks for chunks runs them where it is.
thread_local bool t_chunk_worker = false;

/// Threads that live for the process, one intra-op thread each. They are made once because
/// ATen's start-up of a new thread (init_num_threads) calls set_num_threads, which clears
/// oneDNN's computation cache: threads made per batch would pay that every time.
class ChunkPool {
 public:
  static ChunkPool& get() {
    static ChunkPool* pool = new ChunkPool;  // never destroyed: its threads may outlive static destruction
    return *pool;
  }

  /// JOB(i) for every i in [0, COUNT) on WORKERS threads, the caller among them; the first
  /// exception is rethrown once every worker has stopped.
  void run(int64_t count, int64_t workers, const std::function<void(int64_t)>& job) {
    std::lock_guard<std::mutex> one_at_a_time(run_mu_);
    const at::ThreadLocalState state;  // grad and inference mode, autocast: the caller's
    {
      std::unique_lock<std::mutex> lk(mu_);
      while (static_cast<int64_t>(threads_.size()) < workers - 1) threads_.emplace_back([this] { loop(); });
      // A new thread's ATen start-up clears oneDNN's cache and may remake LibTorch's thread pool:
      // done while this thread waits, never beside its work, which uses both.
      done_.wait(lk, [&] { return started_ == static_cast<int64_t>(threads_.size()); });
      job_ = &job;
      state_ = &state;
      count_ = count;
      next_ = 0;
      helpers_ = workers - 1;
      taken_ = 0;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    {
      OneThreadHere one;
      t_chunk_worker = true;
      work();
      t_chunk_worker = false;
    }
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return busy_ == 0; });
    job_ = nullptr;  // a helper waking late finds nothing to do
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop() {
    t_chunk_worker = true;
    (void)at::get_num_threads();  // ATen's per-thread start-up, once, before choosing one thread
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    int64_t seen = 0;
    std::unique_lock<std::mutex> lk(mu_);
    ++started_;
    seen = generation_;  // the run that made this thread starts after it is counted
    done_.notify_all();
    for (;;) {
      cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (!job_ || taken_ >= helpers_) continue;
      ++taken_;
      ++busy_;
      const at::ThreadLocalState* state = state_;
      lk.unlock();
      {
        at::ThreadLocalStateGuard guard(*state);
        work();
      }
      lk.lock();
      if (--busy_ == 0) done_.notify_all();
    }
  }

  void work() {
    for (int64_t i; (i = next_.fetch_add(1)) < count_;) {
      try {
        (*job_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_mu_);
        if (!error_) error_ = std::current_exception();
        next_ = count_;
      }
    }
  }

  std::mutex run_mu_, mu_, error_mu_;
  std::condition_variable cv_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int64_t)>* job_ = nullptr;
  const at::ThreadLocalState* state_ = nullptr;
  int64_t count_ = 0, helpers_ = 0, taken_ = 0, busy_ = 0, generation_ = 0, started_ = 0;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

}  // namespace

void set_intra_op_threads(int64_t n) {
#ifdef _OPENMP
  (void)at::get_num_threads();  // this thread's ATen start-up first, or it would undo what follows
  omp_set_num_threads(static_cast<int>(std::max<int64_t>(1, n)));
#else
  at::set_num_threads(static_cast<int>(std::max<int64_t>(1, n)));
#endif
}

int64_t side_by_side_workers() {
#ifdef _OPENMP
  return t_chunk_worker ? 1 : std::max<int64_t>(1, at::get_num_threads());
#else
  return 1;  // without OpenMP a worker's intra-op threads cannot be set apart
#endif
}

OneThreadHere::OneThreadHere(bool active) {
#ifdef _OPENMP
  if (!active) return;
  before_ = omp_get_max_threads();
  omp_set_num_threads(1);
#endif
}

OneThreadHere::~OneThreadHere() {
#ifdef _OPENMP
  if (before_ > 0) omp_set_num_threads(before_);
#endif
}

std::vector<torch::Tensor> concurrently(int64_t count, bool cpu, const std::function<torch::Tensor(int64_t)>& fn) {
  std::vector<torch::Tensor> out(static_cast<size_t>(std::max<int64_t>(count, 0)));
  const int64_t workers = cpu ? std::min<int64_t>(count, side_by_side_workers()) : 1;
  if (workers <= 1) {
    for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = fn(i);
    return out;
  }
  ChunkPool::get().run(count, workers, [&](int64_t i) { out[static_cast<size_t>(i)] = fn(i); });
  return out;
}

}  // namespace tltrain
