#pragma once
// Data-parallel training over PyTorch's c10d: who this process is (from torchrun's or SLURM's
// environment) and a narrow process group (TCPStore rendezvous; Gloo collectives, or NCCL's on CUDA
// when LibTorch has it). No torch or c10d types in this header; without Gloo in the build, world
// size 1 still works.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace tltrain::dist {

/// This process's place in the job: from RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT
/// (torchrun, tltrain launch), else SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, else a single process.
struct DistContext {
  int rank = 0, world = 1;
  int local_rank = 0, local_world = 1;  ///< ranks on this machine (threads are split between them)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single";  ///< "torchrun", "slurm" or "single"
  bool distributed() const { return world > 1; }
};

/// Reads the environment; Usage error naming the variable when one is malformed.
DistContext context_from_env();

/// Whether this build has c10d's Gloo backend (libgloo-dev at build time).
bool gloo_available();
/// Whether this build has c10d's NCCL backend (a LibTorch with CUDA and NCCL, its headers found).
bool nccl_available();

/// Which c10d backend carries the collectives.
enum class Backend { Gloo, Nccl };
const char* backend_name(Backend b);
/// The backend for ranks training on a CUDA device or not: NCCL on CUDA when the build has it
/// (what torchrun users pick), else Gloo; TLTRAIN_DIST_BACKEND=gloo|nccl overrides (Usage error
/// naming the value when it is neither, or nccl without NCCL or CUDA).
Backend choose_backend(bool on_cuda);

/// How init_process_group starts the group.
struct GroupOptions {
  std::chrono::milliseconds timeout{60000};  ///< every collective's
  Backend backend = Backend::Gloo;
  int cuda_device = 0;  ///< NCCL: this rank's GPU (collectives run on it)
};

/// A started process group: rendezvous done, collectives ready. Every collective throws
/// tltrain::Error(Runtime) naming the rank that stopped responding instead of hanging.
class ProcessGroup {
 public:
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  const DistContext& context() const;
  int rank() const;
  int world() const;

  /// Sums TENSORS in place over all ranks, packed into flat buckets of about BUCKET_BYTES.
  void all_reduce_sum(std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  /// Starts summing FLAT (contiguous, kept alive by the caller) in place over all ranks and
  /// returns at once; wait_pending() finishes every started sum. Ranks must start the same sums in
  /// the same order.
  void start_sum(at::Tensor& flat);
  void wait_pending();
  /// Sums doubles in place over all ranks (metrics: loss sums, counts).
  void all_reduce_sum(std::vector<double>& values);
  /// Sums T in place over all ranks where it lives: a device tensor stays on its device (NCCL
  /// reduces it there, with no host copy or sync); a CPU one under NCCL travels to the GPU and back.
  void all_reduce_sum(at::Tensor& t);
  Backend backend() const;
  /// Every rank's T (same shape on all ranks), stacked along a new first dimension.
  at::Tensor all_gather(const at::Tensor& t);
  void broadcast(at::Tensor& t, int root = 0);
  void barrier();

  /// Records that this rank is alive at STEP (read when a collective fails, to name the culprit).
  void heartbeat(int64_t step);
  /// Tells the other ranks why this rank is about to exit with an error.
  void report_failure(const std::string& message) noexcept;
  /// Milliseconds spent waiting for gradient all-reduces so far: the overhead a step sees (benchmark).
  double all_reduce_ms() const;

  struct Impl;

 private:
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  friend std::unique_ptr<ProcessGroup> init_process_group(const DistContext& ctx, const GroupOptions& options);
  std::unique_ptr<Impl> impl_;
};

/// Rendezvous at ctx.master_addr:master_port (rank 0 hosts the TCPStore) and starts OPTIONS'
/// backend. Usage error when the build lacks it. Collectives take tensors on any device: those the
/// backend cannot read where they are (CPU tensors under NCCL) travel to its device and back.
std::unique_ptr<ProcessGroup> init_process_group(const DistContext& ctx, const GroupOptions& options);

/// The collective timeout: TLTRAIN_DIST_TIMEOUT (seconds) when set, else DEFAULT_SECONDS.
std::chrono::milliseconds timeout_from_env(double default_seconds);

}  // namespace tltrain::dist
