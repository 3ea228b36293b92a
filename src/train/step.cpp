#include "tltrain/train/step.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "tltrain/core/error.h"
#include "tltrain/core/side_by_side.h"

namespace tltrain::train {

namespace {

/// Sums the trainable gradients over ranks in flat buckets, each started from an autograd hook as
/// soon as backward has produced all of its gradients, so communication overlaps the rest of
/// backward (as DDP's Reducer). Buckets hold parameters in reverse order, the order backward
/// reaches them, and start in index order on every rank.
class BucketReducer {
 public:
  BucketReducer(std::vector<torch::Tensor> params, dist::ProcessGroup& group, int64_t bucket_bytes)
      : params_(std::move(params)), group_(group) {
    std::reverse(params_.begin(), params_.end());
    int64_t bytes = bucket_bytes;
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& p = params_[i];
      bool same = !buckets_.empty() && buckets_.back().options.dtype() == p.dtype() && buckets_.back().options.device() == p.device();
      if (!same || bytes >= bucket_bytes) {
        buckets_.push_back({{}, {}, p.options(), 0, 0});
        bytes = 0;
      }
      auto& b = buckets_.back();
      bucket_of_.push_back(buckets_.size() - 1);
      offset_.push_back(b.numel);
      b.members.push_back(i);
      b.numel += p.numel();
      bytes += p.numel() * static_cast<int64_t>(p.element_size());
    }
    for (auto& b : buckets_) b.flat = torch::empty({b.numel}, torch::TensorOptions().dtype(b.options.dtype()).device(b.options.device()));
    filled_.assign(params_.size(), false);
    reached_.assign(params_.size(), false);
  }
  ~BucketReducer() { disarm(); }

  /// Hooks the coming backward pass: the last one of the step.
  void arm() {
    for (size_t i = 0; i < params_.size(); ++i)
      hooks_.push_back(params_[i].register_hook([this, i](const torch::Tensor& g) { fill(i, &g); }));
  }

  /// Starts what no hook started (parameters backward did not reach), waits, writes the sums back.
  void finish() {
    disarm();
    for (size_t i = 0; i < params_.size(); ++i)
      if (!filled_[i]) fill(i, nullptr);
    group_.wait_pending();
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i];
      auto sum = buckets_[bucket_of_[i]].flat.narrow(0, offset_[i], p.numel()).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(sum);
      else if (reached_[i])
        p.mutable_grad() = sum.clone();
      // else: backward never reached it on any rank (same graph everywhere): no gradient, as in one process
    }
  }

 private:
  struct Bucket {
    std::vector<size_t> members;
    torch::Tensor flat;
    torch::TensorOptions options;
    int64_t numel = 0;
    size_t ready = 0;
  };

  /// Parameter I's full gradient for the step: what earlier micro-batches accumulated plus G.
  void fill(size_t i, const torch::Tensor* g) {
    if (filled_[i]) return;
    filled_[i] = true;
    torch::NoGradGuard no_grad;
    auto& p = params_[i];
    auto slot = buckets_[bucket_of_[i]].flat.narrow(0, offset_[i], p.numel());
    const auto& prev = p.grad();
    reached_[i] = g != nullptr;
    if (g && prev.defined())
      slot.copy_((prev + *g).reshape({-1}));
    else if (g)
      slot.copy_(g->reshape({-1}));
    else if (prev.defined())
      slot.copy_(prev.reshape({-1}));
    else
      slot.zero_();
    ++buckets_[bucket_of_[i]].ready;
    while (next_ < buckets_.size() && buckets_[next_].ready == buckets_[next_].members.size()) group_.start_sum(buckets_[next_++].flat);
  }

  void disarm() {
    for (size_t i = 0; i < hooks_.size(); ++i) params_[i].remove_hook(hooks_[i]);
    hooks_.clear();
  }

  std::vector<torch::Tensor> params_;
  dist::ProcessGroup& group_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<int64_t> offset_;
  std::vector<bool> filled_, reached_;
  std::vector<unsigned> hooks_;
  size_t next_ = 0;
};

}  // namespace

namespace {

/// Adds each chunk's gradients into PARAMS' .grad in chunk order, as backward in turn would.
void accumulate(std::vector<torch::Tensor>& params, std::vector<std::vector<torch::Tensor>>& grads) {
  torch::NoGradGuard no_grad;
  for (auto& chunk : grads)
    for (size_t i = 0; i < params.size(); ++i) {
      auto& g = chunk[i];
      if (!g.defined()) continue;  // this chunk's graph does not reach it
      auto& p = params[i];
      if (p.grad().defined())
        p.mutable_grad().add_(g);
      else
        p.mutable_grad() = g.clone();
    }
  grads.clear();
}

}  // namespace

StepStats gradient_step(const Forward& forward, const torch::Tensor& inputs, const torch::Tensor& targets,
                        torch::optim::Optimizer& optimizer, const Objective& objective, const StepOptions& options) {
  int64_t micro = options.micro;
  dist::ProcessGroup* group = options.group;
  const StepLoss& extra = options.extra;
  LossScaler* scaler = options.scaler;
  const int64_t n = inputs.size(0);
  if (micro <= 0 || micro > n) micro = n;
  torch::Tensor total_w = objective.weight(targets);
  if (group) {
    // The global batch's weight: every rank's loss is a share of one mean. Summed where it lives
    // (on the GPU under NCCL), so the step does not wait for the host here.
    total_w = total_w.to(torch::kDouble).clone();
    group->all_reduce_sum(total_w);
  }
  std::vector<torch::Tensor> trainable;  // frozen parameters have no gradient and cost nothing
  for (auto& g : optimizer.param_groups())
    for (auto& p : g.params())
      if (p.requires_grad()) trainable.push_back(p);
  StepStats first;
  bool have_first = false;
  auto closure = [&]() -> torch::Tensor {
    optimizer.zero_grad();
    std::unique_ptr<BucketReducer> reducer;
    if (group) reducer = std::make_unique<BucketReducer>(trainable, *group, 4 << 20);
    StepStats s;
    torch::Tensor sums;  // [loss, weight, correct] on the device: read once a step, not per micro-batch
    // Forward and loss of the chunk at START; its [loss, weight, correct] go to *PART.
    const auto chunk_loss = [&](int64_t start, torch::Tensor* part) {
      const int64_t len = std::min(micro, n - start);
      auto x = inputs.narrow(0, start, len), y = targets.narrow(0, start, len);
      auto logits = forward(x);
      auto [ls, ws] = objective.loss_sum(logits, y);
      auto share = ls / total_w.to(ls.dtype());
      torch::NoGradGuard no_grad;
      *part = torch::stack({ls.detach().to(torch::kDouble), ws.to(torch::kDouble),
                            objective.count_correct(logits.detach(), y).to(torch::kDouble)});
      return share;
    };
    const int64_t chunks = (n + micro - 1) / micro;
    const int64_t workers = options.side_by_side && !scaler && inputs.device().is_cpu() ? std::min<int64_t>(chunks, torch::get_num_threads()) : 1;
    if (workers > 1) {
      // A wave of one chunk per worker, then its gradients summed in chunk order: at most one
      // set of gradients per worker is held. Communication then starts from .grad (no hooks).
      for (int64_t wave = 0; wave < chunks; wave += workers) {
        const int64_t k = std::min(workers, chunks - wave);
        std::vector<std::vector<torch::Tensor>> grads(static_cast<size_t>(k));
        std::vector<torch::Tensor> parts(static_cast<size_t>(k));
        concurrently(k, true, [&](int64_t j) {
          const auto share = chunk_loss((wave + j) * micro, &parts[static_cast<size_t>(j)]);
          grads[static_cast<size_t>(j)] = torch::autograd::grad({share}, trainable, {}, false, false, /*allow_unused=*/true);
          return torch::Tensor();
        });
        accumulate(trainable, grads);
        for (const auto& part : parts) sums = sums.defined() ? sums + part : part;
      }
    } else {
      for (int64_t start = 0; start < n; start += micro) {
        if (reducer && start + micro >= n) reducer->arm();  // the last backward of the step starts the sums
        torch::Tensor part;
        const auto share = chunk_loss(start, &part);
        (scaler ? scaler->scale(share) : share).backward();
        sums = sums.defined() ? sums + part : part;
      }
    }
    s.count = n;
    if (reducer) reducer->finish();
    const auto host = sums.defined() ? sums.to(torch::kCPU) : torch::zeros({3}, torch::kDouble);
    s.loss_sum = host[0].item<double>();
    s.weight_sum = host[1].item<double>();
    s.correct = static_cast<int64_t>(std::llround(host[2].item<double>()));
    if (!have_first) {
      first = s;
      have_first = true;
    }
    double loss = s.loss_sum;
    if (extra.global && group) {
      std::vector<double> v{loss};
      group->all_reduce_sum(v);
      loss = v[0];
    }
    loss /= std::max(total_w.item<double>(), 1e-12);
    if (extra.l2 > 0) {
      // Added after the ranks' sums: every rank holds the same weights, so the term counts once.
      torch::NoGradGuard no_grad;
      for (const auto& p : extra.params) {
        p.mutable_grad().add_(p, extra.l2);
        loss += 0.5 * extra.l2 * p.pow(2).sum().item<double>();
      }
    }
    return torch::tensor(loss, torch::kDouble);
  };
  if (!scaler) {
    optimizer.step(closure);
    return first;
  }
  closure();  // one call: loss scaling is refused for optimizers that call it again (LBFGS)
  if (scaler->unscale_and_update(trainable))
    optimizer.step();
  else
    first.skipped = 1;
  return first;
}

StepStats all_reduce_stats(const StepStats& stats, dist::ProcessGroup* group) {
  if (!group) return stats;
  std::vector<double> v{stats.loss_sum, stats.weight_sum, static_cast<double>(stats.correct), static_cast<double>(stats.count)};
  group->all_reduce_sum(v);
  StepStats r;
  r.loss_sum = v[0];
  r.weight_sum = v[1];
  r.correct = static_cast<int64_t>(std::llround(v[2]));
  r.count = static_cast<int64_t>(std::llround(v[3]));
  r.skipped = stats.skipped;  // every rank unscales the same summed gradients: the same steps skip
  return r;
}

namespace {

/// How one optimizer is built: its options at a learning rate, and the optimizer over groups.
struct OptimizerKind {
  bool reads_loss = false;  ///< line search: needs the true loss, and weight decay as a term of it
  std::function<std::unique_ptr<torch::optim::OptimizerOptions>(const config::OptimizerConfig&, double lr)> options;
  std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::optim::OptimizerParamGroup>,
                                                         torch::optim::OptimizerOptions&)>
      make;
};

template <typename Opt, typename Options>
OptimizerKind optimizer_kind(std::function<Options(const config::OptimizerConfig&, double)> options, bool reads_loss = false) {
  return {reads_loss, [options](const config::OptimizerConfig& o, double lr) { return std::make_unique<Options>(options(o, lr)); },
          [](std::vector<torch::optim::OptimizerParamGroup> pg, torch::optim::OptimizerOptions& defaults) {
            return std::make_unique<Opt>(std::move(pg), static_cast<Options&>(defaults));
          }};
}

const std::map<config::Optimizer, OptimizerKind>& optimizer_kinds() {
  using namespace torch::optim;
  using C = config::OptimizerConfig;
  static const std::map<config::Optimizer, OptimizerKind> kinds{
      {config::Optimizer::Sgd, optimizer_kind<SGD, SGDOptions>([](const C& o, double lr) {
         return SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay);
       })},
      {config::Optimizer::Adam, optimizer_kind<Adam, AdamOptions>([](const C& o, double lr) {
         return AdamOptions(lr).betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(o.weight_decay);
       })},
      {config::Optimizer::AdamW, optimizer_kind<AdamW, AdamWOptions>([](const C& o, double lr) {
         return AdamWOptions(lr).betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(o.weight_decay);
       })},
      {config::Optimizer::RmsProp, optimizer_kind<RMSprop, RMSpropOptions>([](const C& o, double lr) {
         return RMSpropOptions(lr).alpha(o.alpha).eps(o.eps).weight_decay(o.weight_decay).momentum(o.momentum);
       })},
      {config::Optimizer::Lbfgs, optimizer_kind<LBFGS, LBFGSOptions>(
                                     [](const C& o, double lr) {
                                       return LBFGSOptions(lr).max_iter(o.max_iter).history_size(o.history_size).line_search_fn(
                                           "strong_wolfe");
                                     },
                                     /*reads_loss=*/true)},
  };
  return kinds;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::OptimizerConfig& o,
                                                        std::vector<std::pair<std::vector<torch::Tensor>, double>> groups) {
  const OptimizerKind& kind = config::row_of(optimizer_kinds(), o.name);
  std::vector<torch::optim::OptimizerParamGroup> pg;
  for (auto& [params, lr] : groups) pg.emplace_back(params, kind.options(o, lr));
  auto defaults = kind.options(o, o.lr);
  return kind.make(std::move(pg), *defaults);
}

StepLoss step_loss(const config::OptimizerConfig& o, std::vector<torch::Tensor> weights) {
  if (!config::row_of(optimizer_kinds(), o.name).reads_loss) return {};
  return {true, o.weight_decay, o.weight_decay > 0 ? std::move(weights) : std::vector<torch::Tensor>{}};
}

bool sets_own_rate(const config::OptimizerConfig& o) { return config::row_of(optimizer_kinds(), o.name).reads_loss; }

}  // namespace tltrain::train
