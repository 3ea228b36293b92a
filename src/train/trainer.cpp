#include "tltrain/train/trainer.h"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/inference.h"
#include "tltrain/train/checkpoint.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/schedule.h"

namespace fs = std::filesystem;


namespace tltrain::train {

using config::json;

namespace {

std::atomic<bool> g_stop{false};

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

torch::Device pick_device(const std::string& d) {
  if (d == "cpu") return torch::kCPU;
  bool cuda = torch::cuda::is_available();
  TLTRAIN_CHECK(cuda || d != "cuda", ErrorKind::Usage,
                "device is \"cuda\" but CUDA is not available (this LibTorch has no CUDA, or no GPU is visible); use \"auto\" or \"cpu\"");
  return cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

int64_t hardware_threads() { return std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency())); }

bool lower_is_better(const std::string& metric) { return metric.find("loss") != std::string::npos; }

bool improved(const std::string& metric, double value, double best, double min_delta, bool have_best) {
  if (!have_best) return true;
  return lower_is_better(metric) ? value < best - min_delta : value > best + min_delta;
}

/// Sum of per-sample losses (class-weighted, label-smoothed as torch's cross_entropy) and the
/// sum of the samples' weights, so chunks of a batch add up to the batch's exact mean loss.
std::pair<torch::Tensor, torch::Tensor> loss_sum(const torch::Tensor& logits, const torch::Tensor& y,
                                                 const torch::Tensor& class_w, double smoothing) {
  auto logp = torch::log_softmax(logits, 1);
  auto nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1);
  auto w_y = class_w.defined() ? class_w.index_select(0, y) : torch::ones_like(nll);
  auto per = (1.0 - smoothing) * w_y * nll;
  if (smoothing > 0) {
    auto all = class_w.defined() ? -(logp * class_w.unsqueeze(0)).sum(1) : -logp.sum(1);
    per = per + smoothing * all / static_cast<double>(logits.size(1));
  }
  return {per.sum(), w_y.sum()};
}

struct StepStats {
  double loss_sum = 0, weight_sum = 0;
  int64_t correct = 0, count = 0;
  void add(const StepStats& o) {
    loss_sum += o.loss_sum;
    weight_sum += o.weight_sum;
    correct += o.correct;
    count += o.count;
  }
  double loss() const { return weight_sum > 0 ? loss_sum / weight_sum : 0.0; }
  double accuracy() const { return count > 0 ? static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
};

/// The one gradient step: zero, forward/backward in micro-batches with the loss normalised by
/// the whole batch (so the gradient equals the full batch's), then one optimizer step.
/// Data-parallel training all-reduces the gradients between backward and step, here.
StepStats gradient_step(const std::function<torch::Tensor(const torch::Tensor&)>& forward, const torch::Tensor& inputs,
                        const torch::Tensor& labels, torch::optim::Optimizer& optimizer, const torch::Tensor& class_w,
                        double smoothing, int64_t micro) {
  optimizer.zero_grad();
  const int64_t n = inputs.size(0);
  if (micro <= 0 || micro > n) micro = n;
  torch::Tensor total_w = class_w.defined() ? class_w.index_select(0, labels).sum() : torch::full({}, static_cast<double>(n));
  StepStats s;
  for (int64_t start = 0; start < n; start += micro) {
    int64_t len = std::min(micro, n - start);
    auto x = inputs.narrow(0, start, len), y = labels.narrow(0, start, len);
    auto logits = forward(x);
    auto [ls, ws] = loss_sum(logits, y, class_w, smoothing);
    (ls / total_w.to(ls.dtype())).backward();
    s.loss_sum += ls.item<double>();
    s.weight_sum += ws.item<double>();
    s.correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    s.count += len;
  }
  optimizer.step();
  return s;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::OptimizerConfig& o,
                                                        std::vector<std::pair<std::vector<torch::Tensor>, double>> groups) {
  std::vector<torch::optim::OptimizerParamGroup> pg;
  auto options = [&](double lr) -> std::unique_ptr<torch::optim::OptimizerOptions> {
    if (o.name == "sgd")
      return std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
    if (o.name == "adam")
      return std::make_unique<torch::optim::AdamOptions>(
          torch::optim::AdamOptions(lr).betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(o.weight_decay));
    if (o.name == "adamw")
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(lr).betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(o.weight_decay));
    return std::make_unique<torch::optim::RMSpropOptions>(
        torch::optim::RMSpropOptions(lr).alpha(o.alpha).eps(o.eps).weight_decay(o.weight_decay).momentum(o.momentum));
  };
  for (auto& [params, lr] : groups) pg.emplace_back(params, options(lr));
  auto defaults = options(o.lr);
  if (o.name == "sgd") return std::make_unique<torch::optim::SGD>(pg, static_cast<torch::optim::SGDOptions&>(*defaults));
  if (o.name == "adam") return std::make_unique<torch::optim::Adam>(pg, static_cast<torch::optim::AdamOptions&>(*defaults));
  if (o.name == "adamw") return std::make_unique<torch::optim::AdamW>(pg, static_cast<torch::optim::AdamWOptions&>(*defaults));
  return std::make_unique<torch::optim::RMSprop>(pg, static_cast<torch::optim::RMSpropOptions&>(*defaults));
}

/// Pooled backbone features of every sample, computed once: VIEWS augmented views (or one
/// un-augmented view when VIEWS is 0). Samples that failed to decode are left out.
struct FeatureCache {
  std::vector<torch::Tensor> views;  ///< each M×C' on the model's device
  torch::Tensor labels;              ///< M
  std::vector<int64_t> sample_index; ///< row → dataset sample index
};

FeatureCache build_cache(model::Classifier& m, const std::vector<data::Sample>& samples, const data::Preprocess& pre,
                         const config::AugmentConfig& aug, int64_t views, uint64_t seed, int64_t epoch_base,
                         int64_t batch_size, int64_t threads, int64_t micro) {
  torch::NoGradGuard no_grad;
  m.set_training(false, "frozen");
  FeatureCache c;
  const int64_t n = static_cast<int64_t>(samples.size());
  std::vector<int64_t> seen(static_cast<size_t>(n), 0);  // views in which each sample decoded
  std::vector<torch::Tensor> full;
  for (int64_t v = 0; v < std::max<int64_t>(views, 1); ++v) {
    data::LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.threads = threads;
    lo.seed = seed;
    data::Loader loader(samples, pre, aug, views == 0 ? data::Mode::Eval : data::Mode::Train, lo);
    loader.start_epoch(epoch_base + v);
    torch::Tensor out;
    while (auto b = loader.next()) {
      if (g_stop) TLTRAIN_FAIL(ErrorKind::Interrupted, "interrupted while computing the feature cache");
      auto x = b->images.to(m.device(), true);
      auto f = model::in_chunks(x, micro, [&](const torch::Tensor& t) { return m.head()->pool(m.features(t)); });
      if (!out.defined()) out = torch::zeros({n, f.size(1)}, f.options());
      auto idx = torch::tensor(b->indices, torch::kLong).to(m.device());
      out.index_copy_(0, idx, f);
      for (int64_t i : b->indices) seen[static_cast<size_t>(i)]++;
    }
    full.push_back(out);
  }
  std::vector<int64_t> rows, labels;
  for (int64_t i = 0; i < n; ++i)
    if (seen[static_cast<size_t>(i)] == static_cast<int64_t>(full.size())) {
      rows.push_back(i);
      labels.push_back(samples[static_cast<size_t>(i)].label);
    }
  TLTRAIN_CHECK(!rows.empty(), ErrorKind::Data, "no training image could be decoded");
  auto idx = torch::tensor(rows, torch::kLong).to(m.device());
  for (auto& f : full) c.views.push_back(f.index_select(0, idx));
  c.labels = torch::tensor(labels, torch::kLong).to(m.device());
  c.sample_index = rows;
  return c;
}

std::string fmt(double v, int precision = 4) {
  std::ostringstream ss;
  ss << std::fixed << std::setprecision(precision) << v;
  return ss.str();
}

std::string fmt_duration(double s) {
  int t = static_cast<int>(s + 0.5);
  std::ostringstream ss;
  ss << t / 60 << ":" << std::setw(2) << std::setfill('0') << t % 60;
  return ss.str();
}

/// Progress on a terminal: one rewritten line per batch; nothing when stderr is not a TTY.
class Progress {
 public:
  Progress(std::string label, int64_t total) : label_(std::move(label)), total_(total), tty_(::isatty(2) && log::is_output_rank()) {
    start_ = std::chrono::steady_clock::now();
  }
  void update(int64_t done, const StepStats& s, int64_t images) {
    if (!tty_) return;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double eta = done > 0 ? el / static_cast<double>(done) * static_cast<double>(total_ - done) : 0;
    int width = 24, filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld loss %.4f acc %.3f %.1f img/s ETA %s   ", label_.c_str(),
                 std::string(static_cast<size_t>(filled), '=').c_str(), std::string(static_cast<size_t>(width - filled), ' ').c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), s.loss(), s.accuracy(),
                 el > 0 ? static_cast<double>(images) / el : 0.0, fmt_duration(eta).c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (tty_) std::fprintf(stderr, "\r%*s\r", 110, "");
  }

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

void write_logs(const std::string& dir, const json& history) {
  static const std::vector<std::string> cols{"stage", "stage_name", "epoch", "global_epoch", "step", "loss", "accuracy",
                                             "val_loss", "val_accuracy", "lr", "lr_backbone", "images_per_s", "seconds"};
  std::ostringstream csv, jsonl;
  for (size_t i = 0; i < cols.size(); ++i) csv << (i ? "," : "") << cols[i];
  csv << "\n";
  for (const auto& e : history) {
    for (size_t i = 0; i < cols.size(); ++i) {
      const json& v = e.contains(cols[i]) ? e[cols[i]] : json(nullptr);
      csv << (i ? "," : "") << (v.is_null() ? "" : v.is_string() ? v.get<std::string>() : v.dump());
    }
    csv << "\n";
    jsonl << e.dump() << "\n";
  }
  write_file_atomically(dir + "/log.csv", csv.str());
  write_file_atomically(dir + "/log.jsonl", jsonl.str());
}

json split_json(const data::Datasets& ds) {
  auto list = [](const data::Dataset& d) {
    json a = json::array();
    for (const auto& s : d.samples) a.push_back({s.path, s.label});
    return a;
  };
  return {{"classes", ds.train.classes}, {"train_source", ds.train.source}, {"val_source", ds.val.source},
          {"train", list(ds.train)}, {"val", list(ds.val)}};
}

}  // namespace

void request_stop() { g_stop = true; }

config::RunConfig load_run_dir_config(const std::string& run_dir) {
  std::string path = run_dir + "/config.json";
  TLTRAIN_CHECK(fs::exists(path), ErrorKind::Data, "'" + run_dir + "' is not a tltrain run directory (no config.json)");
  return config::parse_run_config(config::parse_json_file(path), path);
}

FitResult fit(const config::RunConfig& cfg, const FitOptions& opts) {
  g_stop = false;
  // The profiling executor re-optimises the TorchScript graph on the fly; measured slower for
  // training on CPU than the plain interpreter (docs/benchmarks.md).
  torch::jit::setGraphExecutorOptimize(false);
  const torch::Device device = pick_device(cfg.device);
  const int64_t intra = cfg.intra_op_threads > 0 ? cfg.intra_op_threads : hardware_threads();
  const int64_t loader_threads = cfg.loader_threads > 0 ? cfg.loader_threads : hardware_threads();
  torch::set_num_threads(static_cast<int>(intra));
  const uint64_t seed = static_cast<uint64_t>(cfg.seed);

  const std::string dir = cfg.output_dir;
  const std::string ckpt_dir = dir + "/checkpoints";
  const std::string last_path = ckpt_dir + "/last.pt", best_path = ckpt_dir + "/best.pt", stage_best_path = ckpt_dir + "/stage_best.pt";
  if (!opts.resume)
    TLTRAIN_CHECK(!fs::exists(last_path), ErrorKind::Usage,
                  "'" + dir + "' already holds a run; continue it with `tltrain fit --resume " + dir +
                      "` or choose another output_dir (--set output_dir=...)");
  else
    TLTRAIN_CHECK(fs::exists(last_path), ErrorKind::Data, "nothing to resume: '" + last_path + "' does not exist");

  // Data and model.
  data::Datasets ds = data::load_datasets(cfg.data, seed);
  const int64_t num_classes = static_cast<int64_t>(ds.train.classes.size());
  TLTRAIN_CHECK(num_classes >= 2, ErrorKind::Data, "'" + cfg.data.train + "' has " + std::to_string(num_classes) +
                                                       " class; classification needs at least 2 class subfolders");
  model::Backbone backbone = model::load_backbone(cfg.model.backbone, device);
  auto plan = plan_stages(cfg, backbone.meta, num_classes);
  const data::Preprocess pre = data::resolve_preprocess(cfg.data, backbone.meta);
  torch::manual_seed(seed);
  model::Classifier m(std::move(backbone), cfg.model.head, num_classes, device);

  json history = json::array();
  size_t start_stage = 0;
  int64_t start_epoch = 0, global_step = 0;
  double best_value = 0;
  bool have_best = false;
  json stage_state = json::object();  // early stopping within the current stage
  std::shared_ptr<torch::serialize::InputArchive> resume_optimizer;

  auto check_matches = [&](const Checkpoint& ck, const std::string& path) {
    std::vector<std::string> classes = ck.info.at("classes").get<std::vector<std::string>>();
    TLTRAIN_CHECK(classes == ds.train.classes, ErrorKind::Data,
                  "checkpoint '" + path + "' was trained on classes [" + ck.info.at("classes").dump() + "] but the data has [" +
                      json(ds.train.classes).dump() + "]");
    TLTRAIN_CHECK(ck.backbone.meta.arch == m.meta().arch && ck.backbone.meta.blocks.size() == m.meta().blocks.size(), ErrorKind::Data,
                  "checkpoint '" + path + "' holds a " + ck.backbone.meta.arch + " backbone, the config's is " + m.meta().arch);
  };
  auto load_weights = [&](Checkpoint& ck, const std::string& path) {
    std::map<std::string, torch::Tensor> state = ck.head;
    for (const auto& p : ck.backbone.module.named_parameters(true)) state["backbone." + p.name] = p.value;
    for (const auto& b : ck.backbone.module.named_buffers(true)) state["backbone." + b.name] = b.value;
    m.load_state(state, "checkpoint '" + path + "'");
  };

  if (opts.resume) {
    Checkpoint ck = load_checkpoint(last_path, device);
    check_matches(ck, last_path);
    load_weights(ck, last_path);
    const json& p = ck.info.at("progress");
    start_stage = p.at("stage").get<size_t>();
    start_epoch = p.at("epoch").get<int64_t>();
    global_step = p.at("global_step").get<int64_t>();
    have_best = p.at("have_best").get<bool>();
    best_value = p.at("best_value").get<double>();
    stage_state = p.at("stage_state");
    history = ck.info.at("history");
    if (start_epoch > 0) resume_optimizer = ck.optimizer;
    log::info("resuming " + dir + " at stage " + std::to_string(start_stage + 1) + ", epoch " + std::to_string(start_epoch + 1));
  } else {
    if (!opts.init_checkpoint.empty()) {
      Checkpoint ck = load_checkpoint(opts.init_checkpoint, device);
      check_matches(ck, opts.init_checkpoint);
      load_weights(ck, opts.init_checkpoint);
      log::info("starting from the weights of " + opts.init_checkpoint);
    }
    fs::create_directories(ckpt_dir);
    write_file_atomically(dir + "/config.json", cfg.resolved.dump(2) + "\n");
    write_file_atomically(dir + "/split.json", split_json(ds).dump(1) + "\n");
  }

  auto info_for = [&](size_t stage, int64_t epoch) {
    return json{{"classes", ds.train.classes},
                {"config", cfg.resolved},
                {"progress",
                 {{"stage", stage},
                  {"epoch", epoch},
                  {"global_step", global_step},
                  {"have_best", have_best},
                  {"best_value", best_value},
                  {"stage_state", stage_state}}},
                {"monitor", cfg.monitor},
                {"history", history}};
  };

  // Validation: from the loader, or from cached features while the backbone is frozen.
  data::LoaderOptions eval_opts;
  eval_opts.batch_size = cfg.data.batch_size;
  eval_opts.threads = loader_threads;
  eval_opts.seed = seed;
  eval_opts.pin_memory = device.is_cuda();
  std::unique_ptr<data::Loader> val_loader;
  if (ds.has_val) val_loader = std::make_unique<data::Loader>(ds.val.samples, pre, cfg.data.augment, data::Mode::Eval, eval_opts);

  int64_t epoch_base = 0;  // augmentation epochs run on across stages, so stage 2 sees new draws
  for (size_t s = 0; s < start_stage; ++s) epoch_base += cfg.stages[s].epochs;

  for (size_t si = start_stage; si < cfg.stages.size(); ++si) {
    const config::StageConfig& st = cfg.stages[si];
    const StagePlan& sp = plan[si];
    const bool resuming_here = opts.resume && si == start_stage;
    const int64_t first_epoch = resuming_here ? start_epoch : 0;
    if (!resuming_here) stage_state = json::object();
    m.set_trainable(sp.cut);
    const bool bn_train = st.batch_norm == "train" && sp.cut < m.meta().blocks.size();
    int64_t micro = cfg.micro_batch > 0 ? cfg.micro_batch : (device.is_cuda() || bn_train ? 0 : 8);
    if (bn_train && cfg.micro_batch > 0) {
      log::warn("stage '" + st.name + "': batch_norm \"train\" computes statistics per forward chunk; micro_batch " +
                std::to_string(cfg.micro_batch) + " changes them — set micro_batch 0 for full-batch statistics");
    }
    log::info("stage " + std::to_string(si + 1) + "/" + std::to_string(cfg.stages.size()) + " '" + st.name + "': " +
              sp.trainable + ", " + std::to_string(st.epochs) + " epochs, " + st.optimizer.name + " lr " +
              fmt(st.optimizer.lr, 6) + (st.feature_cache ? ", feature cache" : ""));

    // Parameter groups as planned: the backbone's share at lr * backbone_lr_mult.
    std::vector<std::pair<std::vector<torch::Tensor>, double>> groups;
    std::vector<double> base_lrs;
    auto bb_params = m.trainable_backbone_parameters();
    if (!bb_params.empty()) {
      groups.emplace_back(bb_params, st.optimizer.lr * st.backbone_lr_mult);
      base_lrs.push_back(st.optimizer.lr * st.backbone_lr_mult);
    }
    groups.emplace_back(m.head_parameters(), st.optimizer.lr);
    base_lrs.push_back(st.optimizer.lr);
    auto optimizer = make_optimizer(st.optimizer, groups);
    if (resume_optimizer && resuming_here) optimizer->load(*resume_optimizer);

    // Class weights: "auto" is sklearn's "balanced", n / (classes * count).
    torch::Tensor class_w;
    if (st.class_weights_mode == "auto") {
      auto counts = ds.train.class_counts();
      std::vector<float> w;
      for (auto c : counts)
        w.push_back(c > 0 ? static_cast<float>(ds.train.samples.size()) / static_cast<float>(num_classes * c) : 0.f);
      class_w = torch::tensor(w).to(device);
    } else if (st.class_weights_mode == "list") {
      TLTRAIN_CHECK(static_cast<int64_t>(st.class_weights.size()) == num_classes, ErrorKind::Usage,
                    cfg.source + ": stages[" + std::to_string(si) + "].class_weights has " + std::to_string(st.class_weights.size()) +
                        " weights for " + std::to_string(num_classes) + " classes");
      std::vector<float> w(st.class_weights.begin(), st.class_weights.end());
      class_w = torch::tensor(w).to(device);
    }

    // Feature cache for a frozen backbone.
    std::unique_ptr<FeatureCache> cache, val_cache;
    std::unique_ptr<data::Loader> train_loader;
    int64_t steps_per_epoch = 0;
    if (st.feature_cache) {
      auto t0 = std::chrono::steady_clock::now();
      cache = std::make_unique<FeatureCache>(build_cache(m, ds.train.samples, pre, cfg.data.augment, st.cache_views, seed, epoch_base,
                                                         cfg.data.batch_size, loader_threads, micro));
      if (ds.has_val)
        val_cache = std::make_unique<FeatureCache>(build_cache(m, ds.val.samples, pre, cfg.data.augment, 0, seed, 0,
                                                               cfg.data.batch_size, loader_threads, micro));
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      log::info("feature cache: " + std::to_string(cache->labels.size(0)) + " images x " +
                std::to_string(std::max<int64_t>(st.cache_views, 1)) + " view(s) in " + fmt(secs, 1) + " s");
      int64_t n = cache->labels.size(0);
      steps_per_epoch = (n + cfg.data.batch_size - 1) / cfg.data.batch_size;
    } else {
      data::LoaderOptions lo;
      lo.batch_size = cfg.data.batch_size;
      lo.threads = loader_threads;
      lo.shuffle = true;
      lo.seed = seed;
      lo.pin_memory = device.is_cuda();
      train_loader = std::make_unique<data::Loader>(ds.train.samples, pre, cfg.data.augment, data::Mode::Train, lo);
      steps_per_epoch = train_loader->batches_per_epoch();
    }
    const int64_t total_steps = steps_per_epoch * st.epochs;
    int64_t stage_step = first_epoch * steps_per_epoch;

    std::map<std::string, torch::Tensor> stage_best;
    if (resuming_here && stage_state.value("have_best", false) && fs::exists(stage_best_path) && st.early_stopping.enabled &&
        st.early_stopping.restore_best) {
      Checkpoint sb = load_checkpoint(stage_best_path, device);
      model::Classifier tmp = classifier_from(sb, device);
      stage_best = tmp.snapshot();
    }

    for (int64_t epoch = first_epoch; epoch < st.epochs; ++epoch) {
      if (stage_state.value("stopped", false)) break;
      const int64_t epoch_id = epoch_base + epoch;
      // Dropout draws come from (seed, stage, epoch): a resumed epoch repeats them exactly.
      torch::manual_seed(mix(mix(seed, si + 1), static_cast<uint64_t>(epoch)));
      m.set_training(true, st.batch_norm);
      auto t0 = std::chrono::steady_clock::now();
      StepStats epoch_stats;
      Progress progress("stage " + std::to_string(si + 1) + " epoch " + std::to_string(epoch + 1) + "/" + std::to_string(st.epochs),
                        steps_per_epoch);
      double lr_now = 0, lr_bb = 0;
      auto set_lr = [&] {
        double f = lr_factor(st.schedule, st.optimizer.lr, stage_step, steps_per_epoch, total_steps);
        for (size_t g = 0; g < optimizer->param_groups().size(); ++g)
          optimizer->param_groups()[g].options().set_lr(base_lrs[g] * f);
        lr_now = st.optimizer.lr * f;
        lr_bb = bb_params.empty() ? 0 : st.optimizer.lr * st.backbone_lr_mult * f;
      };
      auto after_step = [&](const StepStats& s, int64_t done) {
        TLTRAIN_CHECK(std::isfinite(s.loss_sum), ErrorKind::Runtime,
                      "the loss became " + std::string(std::isnan(s.loss_sum) ? "NaN" : "infinite") + " in stage '" + st.name +
                          "', epoch " + std::to_string(epoch + 1) + ", step " + std::to_string(done) + " (lr " + fmt(lr_now, 8) +
                          "): lower the learning rate or check the data; the last good checkpoint is " + last_path);
        epoch_stats.add(s);
        ++stage_step;
        ++global_step;
        progress.update(done, epoch_stats, epoch_stats.count);
        if (const char* kill = std::getenv("TLTRAIN_DEBUG_KILL_AFTER_STEPS"); kill && global_step == std::atoll(kill))
          std::raise(SIGKILL);  // the resume test's kill -9, at a chosen step
        if (g_stop) TLTRAIN_FAIL(ErrorKind::Interrupted, "interrupted in stage '" + st.name + "', epoch " + std::to_string(epoch + 1) +
                                                              "; continue with `tltrain fit --resume " + dir + "`");
      };
      if (cache) {
        const int64_t n = cache->labels.size(0);
        const auto& feats = cache->views[static_cast<size_t>(epoch_id % static_cast<int64_t>(cache->views.size()))];
        auto order = data::epoch_order(n, seed, epoch_id, /*shuffle=*/true, 0, 1);
        auto order_t = torch::tensor(order, torch::kLong).to(device);
        int64_t done = 0;
        for (int64_t start = 0; start < n; start += cfg.data.batch_size) {
          auto idx = order_t.narrow(0, start, std::min<int64_t>(cfg.data.batch_size, n - start));
          set_lr();
          auto s = gradient_step([&](const torch::Tensor& x) { return m.head()->forward(x); }, feats.index_select(0, idx),
                                 cache->labels.index_select(0, idx), *optimizer, class_w, st.label_smoothing, 0);
          after_step(s, ++done);
        }
      } else {
        train_loader->start_epoch(epoch_id);
        int64_t done = 0;
        while (auto b = train_loader->next()) {
          set_lr();
          auto s = gradient_step([&](const torch::Tensor& x) { return m.forward(x); }, b->images.to(device, true),
                                 b->labels.to(device, true), *optimizer, class_w, st.label_smoothing, micro);
          after_step(s, ++done);
        }
      }
      progress.finish();
      double train_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

      // Validation.
      json entry = {{"stage", si + 1}, {"stage_name", st.name}, {"epoch", epoch + 1}, {"global_epoch", epoch_id + 1},
                    {"step", global_step}, {"loss", epoch_stats.loss()}, {"accuracy", epoch_stats.accuracy()}};
      if (ds.has_val) {
        double vl, va;
        if (val_cache) {
          torch::NoGradGuard ng;
          m.set_training(false, st.batch_norm);
          model::Predictions p{m.head()->forward(val_cache->views[0]).to(torch::kCPU), val_cache->labels.to(torch::kCPU), {}};
          std::tie(vl, va) = model::loss_and_accuracy(p);
        } else {
          auto p = model::predict(m, *val_loader, micro);
          std::tie(vl, va) = model::loss_and_accuracy(p);
        }
        entry["val_loss"] = vl;
        entry["val_accuracy"] = va;
      }
      entry["lr"] = lr_now;
      entry["lr_backbone"] = bb_params.empty() ? json(nullptr) : json(lr_bb);
      entry["images_per_s"] = train_secs > 0 ? static_cast<double>(epoch_stats.count) / train_secs : 0.0;
      entry["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      history.push_back(entry);

      std::string line = "stage " + std::to_string(si + 1) + " epoch " + std::to_string(epoch + 1) + "/" + std::to_string(st.epochs) +
                         ": loss " + fmt(epoch_stats.loss()) + " acc " + fmt(epoch_stats.accuracy());
      if (ds.has_val) line += "  val_loss " + fmt(entry["val_loss"].get<double>()) + " val_acc " + fmt(entry["val_accuracy"].get<double>());
      line += "  lr " + fmt(lr_now, 6) + "  " + fmt(entry["images_per_s"].get<double>(), 1) + " img/s";

      // Best checkpoint over the run, by the monitored metric.
      auto metric_of = [&](const std::string& name) { return entry.contains(name) ? entry[name].get<double>() : 0.0; };
      double monitored = metric_of(cfg.monitor);
      bool new_best = improved(cfg.monitor, monitored, best_value, 0.0, have_best);
      if (new_best) {
        best_value = monitored;
        have_best = true;
      }
      // Early stopping within the stage.
      if (st.early_stopping.enabled) {
        const auto& es = st.early_stopping;
        double v = metric_of(es.monitor);
        bool stage_improved = improved(es.monitor, v, stage_state.value("best", 0.0), es.min_delta, stage_state.value("have_best", false));
        if (stage_improved) {
          stage_state["best"] = v;
          stage_state["have_best"] = true;
          stage_state["wait"] = 0;
          if (es.restore_best) {
            stage_best = m.snapshot();
            save_checkpoint(stage_best_path, m, nullptr, info_for(si, epoch + 1));
          }
        } else {
          stage_state["wait"] = stage_state.value("wait", 0) + 1;
          // Keras semantics: stop once `patience` epochs in a row brought no improvement.
          if (stage_state["wait"].get<int64_t>() >= std::max<int64_t>(es.patience, 1)) {
            stage_state["stopped"] = true;
            line += "  (early stop: " + es.monitor + " did not improve for " + std::to_string(stage_state["wait"].get<int64_t>()) + " epochs)";
          }
        }
      }
      log::info(line + (new_best ? "  *best*" : ""));

      bool stage_over = epoch + 1 == st.epochs || stage_state.value("stopped", false);
      if (stage_over && st.early_stopping.enabled && st.early_stopping.restore_best && !stage_best.empty()) {
        m.load_state(stage_best, "the stage's best weights");
        log::info("stage '" + st.name + "': restored the weights of its best epoch (" + st.early_stopping.monitor + " " +
                  fmt(stage_state.value("best", 0.0)) + ")");
      }
      if (log::is_output_rank()) {
        if (new_best) save_checkpoint(best_path, m, nullptr, info_for(si, epoch + 1));
        // After the stage's last epoch, last.pt points at the next stage's start.
        if (stage_over) {
          auto saved_state = stage_state;
          stage_state = json::object();
          save_checkpoint(last_path, m, nullptr, info_for(si + 1, 0));
          stage_state = saved_state;
        } else {
          save_checkpoint(last_path, m, optimizer.get(), info_for(si, epoch + 1));
        }
        write_logs(dir, history);
      }
      if (stage_over) break;
    }
    epoch_base += st.epochs;
  }

  FitResult r;
  r.run_dir = dir;
  r.best_checkpoint = fs::exists(best_path) ? best_path : "";
  r.last_checkpoint = last_path;
  r.monitor = cfg.monitor;
  r.best_value = best_value;
  r.history = history;
  if (fs::exists(stage_best_path)) fs::remove(stage_best_path);
  return r;
}

}  // namespace tltrain::train
