#include <torch/torch.h>
#include <torch/version.h>

#include <chrono>
#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/dist/context.h"

#if defined(TLTRAIN_HAVE_GLOO)
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if defined(TLTRAIN_HAVE_NCCL)
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace tltrain::dist {

bool gloo_available() {
#if defined(TLTRAIN_HAVE_GLOO)
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#if defined(TLTRAIN_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

const char* backend_name(Backend b) { return b == Backend::Nccl ? "nccl" : "gloo"; }

Backend choose_backend(bool on_cuda) {
  const char* env = std::getenv("TLTRAIN_DIST_BACKEND");
  const std::string asked = env ? env : "";
  if (asked.empty()) return on_cuda && nccl_available() ? Backend::Nccl : Backend::Gloo;
  if (asked == "gloo") return Backend::Gloo;
  TLTRAIN_CHECK(asked == "nccl", ErrorKind::Usage,
                "TLTRAIN_DIST_BACKEND='" + asked + "': expected gloo or nccl (or unset: nccl on CUDA when the build has it)");
  TLTRAIN_CHECK(nccl_available(), ErrorKind::Usage,
                "TLTRAIN_DIST_BACKEND=nccl: this build has no c10d NCCL (it needs a LibTorch with CUDA and NCCL, e.g. "
                "scripts/build_libtorch2.sh); unset it to use gloo");
  TLTRAIN_CHECK(on_cuda, ErrorKind::Usage, "TLTRAIN_DIST_BACKEND=nccl needs device cuda: NCCL reduces GPU tensors only");
  return Backend::Nccl;
}

#if defined(TLTRAIN_HAVE_GLOO)
namespace {
int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
// Since 2.0 a backend (Gloo, NCCL) is a c10d::Backend under a ProcessGroup; 1.13's backends are
// ProcessGroups themselves. Both have the collectives used here.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif
}  // namespace
#endif

struct ProcessGroup::Impl {
  DistContext ctx;
  std::chrono::milliseconds timeout{60000};
  Backend backend = Backend::Gloo;
  torch::Device device{torch::kCPU};  ///< where the backend reads tensors: NCCL's GPU; Gloo reads any
  double all_reduce_ms = 0;
#if defined(TLTRAIN_HAVE_GLOO)
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<Collectives> pg;
  std::vector<c10::intrusive_ptr<c10d::Work>> pending;

  /// T where the backend can read it: itself when it can already (no copy), else a copy on device.
  at::Tensor readable(const at::Tensor& t) const {
    return backend == Backend::Nccl && t.device() != device ? t.to(device) : t;
  }

  /// Runs a collective; on failure names the rank that failed or stopped responding.
  template <class F>
  void guarded(const char* what, F&& f) {
    try {
      f();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      TLTRAIN_FAIL(ErrorKind::Runtime, std::string(what) + " failed on rank " + std::to_string(ctx.rank) + ": " + culprit() +
                                           " (" + first_line(e.what()) + ")");
    }
  }

  /// Reads the other ranks' failure reports and heartbeats from the store.
  std::string culprit() {
    try {
      store->setTimeout(std::chrono::milliseconds(2000));
      for (int r = 0; r < ctx.world; ++r) {
        if (r == ctx.rank) continue;
        std::string key = "tltrain/failed/" + std::to_string(r);
        if (store->check({key})) {
          auto v = store->get(key);
          return "rank " + std::to_string(r) + " failed: " + std::string(v.begin(), v.end());
        }
      }
      int worst = -1;
      int64_t oldest = 0, step = 0;
      for (int r = 0; r < ctx.world; ++r) {
        if (r == ctx.rank) continue;
        std::string key = "tltrain/heartbeat/" + std::to_string(r);
        int64_t ms = 0, s = -1;
        if (store->check({key})) {
          auto v = store->get(key);
          std::istringstream in(std::string(v.begin(), v.end()));
          in >> ms >> s;
        }
        if (worst < 0 || ms < oldest) worst = r, oldest = ms, step = s;
      }
      if (worst < 0) return "no other rank";
      std::ostringstream out;
      out << "rank " << worst << " stopped responding";
      if (oldest > 0)
        out << " (last seen " << std::fixed << std::setprecision(1) << static_cast<double>(unix_ms() - oldest) / 1000.0
            << " s ago, after step " << step << ")";
      return out.str();
    } catch (const std::exception&) {
      return "rank 0 (host of the rendezvous store at " + ctx.master_addr + ":" + std::to_string(ctx.master_port) +
             ") stopped responding";
    }
  }
#endif
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;
const DistContext& ProcessGroup::context() const { return impl_->ctx; }
int ProcessGroup::rank() const { return impl_->ctx.rank; }
int ProcessGroup::world() const { return impl_->ctx.world; }
double ProcessGroup::all_reduce_ms() const { return impl_->all_reduce_ms; }
Backend ProcessGroup::backend() const { return impl_->backend; }

#if defined(TLTRAIN_HAVE_GLOO)

namespace {

c10::intrusive_ptr<Collectives> start_gloo(const DistContext& ctx, const c10::intrusive_ptr<c10d::Store>& store,
                                           std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  const bool loopback = ctx.master_addr.rfind("127.", 0) == 0 || ctx.master_addr == "localhost";
  if (ifname && *ifname)
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (loopback)
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  opts->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", store), ctx.rank,
                                                     ctx.world, opts);
}

c10::intrusive_ptr<Collectives> start_nccl(const DistContext& ctx, const c10::intrusive_ptr<c10d::Store>& store,
                                           std::chrono::milliseconds timeout, int cuda_device) {
#if defined(TLTRAIN_HAVE_NCCL)
  // NCCL builds its communicator on the current device at the first collective: make it this rank's.
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", store), ctx.rank,
                                                     ctx.world, opts);
#else
  (void)store, (void)ctx, (void)timeout, (void)cuda_device;
  TLTRAIN_FAIL(ErrorKind::Usage, "backend nccl: this build has no c10d NCCL (it needs a LibTorch with CUDA and NCCL)");
#endif
}

}  // namespace

std::unique_ptr<ProcessGroup> init_process_group(const DistContext& ctx, const GroupOptions& options) {
  const auto timeout = options.timeout;
  auto impl = std::make_unique<ProcessGroup::Impl>();
  impl->ctx = ctx;
  impl->timeout = timeout;
  impl->backend = options.backend;
  if (options.backend == Backend::Nccl) impl->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(options.cuda_device));
  const std::string where = ctx.master_addr + ":" + std::to_string(ctx.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(ctx.master_port);
    so.isServer = ctx.rank == 0;
    so.numWorkers = static_cast<size_t>(ctx.world);
    so.waitWorkers = true;
    so.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(ctx.master_addr, so);
  } catch (const std::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Runtime, "rank " + std::to_string(ctx.rank) + ": rendezvous at " + where + " failed within " +
                                         std::to_string(timeout.count() / 1000) + " s (" + first_line(e.what()) +
                                         "); check that all " + std::to_string(ctx.world) +
                                         " ranks started, MASTER_ADDR/MASTER_PORT agree and the port is free");
  }
  try {
    impl->pg = options.backend == Backend::Nccl ? start_nccl(ctx, impl->store, timeout, options.cuda_device)
                                                 : start_gloo(ctx, impl->store, timeout);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Runtime, "rank " + std::to_string(ctx.rank) + ": starting " + backend_name(options.backend) +
                                         " with " + std::to_string(ctx.world) + " ranks via " + where +
                                         " failed: " + first_line(e.what()));
  }
  auto pg = std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
  pg->heartbeat(0);
  return pg;
}

void ProcessGroup::all_reduce_sum(std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  auto t0 = std::chrono::steady_clock::now();
  // Flat buckets of consecutive tensors with one dtype/device: few large messages, not many small.
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = bucket_bytes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    bool same = !buckets.empty() && tensors[buckets.back().front()].scalar_type() == t.scalar_type() &&
                tensors[buckets.back().front()].device() == t.device();
    if (!same || bytes >= bucket_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += t.numel() * static_cast<int64_t>(t.element_size());
  }
  std::vector<at::Tensor> flats(buckets.size());
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  impl_->guarded("gradient all-reduce", [&] {
    for (size_t b = 0; b < buckets.size(); ++b) {
      std::vector<at::Tensor> parts;
      for (size_t i : buckets[b]) parts.push_back(tensors[i].reshape({-1}));
      std::vector<at::Tensor> one{impl_->readable(torch::cat(parts))};
      flats[b] = one[0];
      works.push_back(impl_->pg->allreduce(one));
    }
    for (auto& w : works) w->wait();
  });
  for (size_t b = 0; b < buckets.size(); ++b) {
    int64_t off = 0;
    for (size_t i : buckets[b]) {
      auto& t = tensors[i];
      t.copy_(flats[b].narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }
  impl_->all_reduce_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void ProcessGroup::start_sum(at::Tensor& flat) {
  // The sum is read back from FLAT itself, so it must already be where the backend reads it.
  TLTRAIN_CHECK(impl_->readable(flat).is_same(flat), ErrorKind::Runtime,
                std::string("gradient bucket on ") + flat.device().str() + ", but " + backend_name(impl_->backend) +
                    " reduces on " + impl_->device.str());
  std::vector<at::Tensor> one{flat};
  impl_->guarded("gradient all-reduce", [&] { impl_->pending.push_back(impl_->pg->allreduce(one)); });
}

void ProcessGroup::wait_pending() {
  auto t0 = std::chrono::steady_clock::now();
  auto works = std::move(impl_->pending);
  impl_->pending.clear();
  impl_->guarded("gradient all-reduce", [&] {
    for (auto& w : works) w->wait();
  });
  impl_->all_reduce_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void ProcessGroup::all_reduce_sum(std::vector<double>& values) {
  if (values.empty()) return;
  auto t = torch::tensor(values, torch::kDouble);
  all_reduce_sum(t);
  auto acc = t.accessor<double, 1>();
  for (size_t i = 0; i < values.size(); ++i) values[i] = acc[static_cast<int64_t>(i)];
}

void ProcessGroup::all_reduce_sum(at::Tensor& t) {
  std::vector<at::Tensor> one{impl_->readable(t.contiguous())};
  impl_->guarded("metric all-reduce", [&] { impl_->pg->allreduce(one)->wait(); });
  if (!one[0].is_same(t)) t.copy_(one[0]);
}

at::Tensor ProcessGroup::all_gather(const at::Tensor& t) {
  std::vector<at::Tensor> in{impl_->readable(t.contiguous())};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world(); ++r) out[0].push_back(torch::empty_like(in[0]));
  impl_->guarded("all-gather", [&] { impl_->pg->allgather(out, in)->wait(); });
  return torch::stack(out[0]).to(t.device());
}

void ProcessGroup::broadcast(at::Tensor& t, int root) {
  std::vector<at::Tensor> one{impl_->readable(t)};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  impl_->guarded("broadcast", [&] { impl_->pg->broadcast(one, o)->wait(); });
  if (!one[0].is_same(t)) t.copy_(one[0]);
}

void ProcessGroup::barrier() {
  impl_->guarded("barrier", [&] { impl_->pg->barrier()->wait(); });
}

void ProcessGroup::heartbeat(int64_t step) {
  std::string v = std::to_string(unix_ms()) + " " + std::to_string(step);
  impl_->guarded("heartbeat", [&] {
    impl_->store->set("tltrain/heartbeat/" + std::to_string(rank()), std::vector<uint8_t>(v.begin(), v.end()));
  });
}

void ProcessGroup::report_failure(const std::string& message) noexcept {
  try {
    impl_->store->set("tltrain/failed/" + std::to_string(rank()), std::vector<uint8_t>(message.begin(), message.end()));
  } catch (...) {
  }
}

#else  // no Gloo in this build: only world size 1 exists

std::unique_ptr<ProcessGroup> init_process_group(const DistContext& ctx, const GroupOptions&) {
  TLTRAIN_FAIL(ErrorKind::Usage, "world size " + std::to_string(ctx.world) + " (" + ctx.source +
                                     " environment) needs c10d Gloo, which this build has no: install libgloo-dev and rebuild");
}
void ProcessGroup::all_reduce_sum(std::vector<at::Tensor>&, int64_t) {}
void ProcessGroup::all_reduce_sum(std::vector<double>&) {}
void ProcessGroup::all_reduce_sum(at::Tensor&) {}
void ProcessGroup::start_sum(at::Tensor&) {}
void ProcessGroup::wait_pending() {}
at::Tensor ProcessGroup::all_gather(const at::Tensor& t) { return t.unsqueeze(0); }
void ProcessGroup::broadcast(at::Tensor&, int) {}
void ProcessGroup::barrier() {}
void ProcessGroup::heartbeat(int64_t) {}
void ProcessGroup::report_failure(const std::string&) noexcept {}

#endif

}  // namespace tltrain::dist
