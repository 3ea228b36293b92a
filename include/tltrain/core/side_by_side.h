#pragma once
// Work side by side on the CPU, one intra-op thread per worker: on this kind of CPU two forwards
// on one thread each beat one forward on two threads (1.40x, docs/benchmarks.md, Serving).
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace tltrain {

/// FN(i) for i in [0, COUNT), results in order. With CPU true the calls run side by side on up to
/// one worker per intra-op thread (the caller among them), each on one thread, so a call's result
/// does not depend on how many run at once or on the thread count. The workers live for the
/// process: ATen's start-up of a thread clears oneDNN's caches, so they are made once. FN must be
/// safe to call from several threads (inference of one module is; so is autograd on separate
/// graphs); it sees the caller's grad mode, inference mode and autocast. A call from inside FN
/// runs in turn. The first exception is rethrown after every worker has stopped.
std::vector<torch::Tensor> concurrently(int64_t count, bool cpu, const std::function<torch::Tensor(int64_t)>& fn);

/// Sets the calling thread's intra-op threads (LibTorch's CPU ops, oneDNN, OpenBLAS) to N. Not
/// at::set_num_threads: that stores a process-wide count which every thread made later applies
/// again at its first ATen op, clearing oneDNN's cache and remaking LibTorch's thread pool while
/// other threads compute; here that corrupted the heap in 3 of 25 runs. Threads made later (the
/// loader's, the side-by-side workers) start from OpenMP's default and set their own.
void set_intra_op_threads(int64_t n);

/// How many calls concurrently runs at once on CPU here: the intra-op thread count (1 inside FN).
int64_t side_by_side_workers();

/// While alive, the calling thread's intra-op work runs on one thread (its OpenMP thread count;
/// at::set_num_threads would change every thread's and clear oneDNN's caches). oneDNN primitives
/// keep the thread count they were made with, so modules that side-by-side workers will run are
/// prepared under this guard.
class OneThreadHere {
 public:
  explicit OneThreadHere(bool active = true);
  ~OneThreadHere();
  OneThreadHere(const OneThreadHere&) = delete;
  OneThreadHere& operator=(const OneThreadHere&) = delete;

 private:
  int before_ = 0;
};

}  // namespace tltrain
