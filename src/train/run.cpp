#include "tltrain/train/run.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "tltrain/core/blas.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/core/side_by_side.h"
#include "tltrain/core/threads.h"
#include "tltrain/data/device_batches.h"
#include "tltrain/data/stats.h"
#include "tltrain/model/inference.h"
#include "tltrain/train/schedule.h"

namespace fs = std::filesystem;

namespace tltrain::train {

using config::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Puts CK's weights into M after checking that CK was trained on the same classes and backbone.
void adopt_weights(model::Classifier& m, const checkpoint::Checkpoint& ck, const std::vector<std::string>& classes,
                   const std::string& path) {
  TLTRAIN_CHECK(ck.classes == classes, ErrorKind::Data,
                "checkpoint '" + path + "' was trained on classes [" + json(ck.classes).dump() + "] but the data has [" +
                    json(classes).dump() + "]");
  TLTRAIN_CHECK(ck.backbone.meta.arch == m.meta().arch && ck.backbone.meta.blocks.size() == m.meta().blocks.size(), ErrorKind::Data,
                "checkpoint '" + path + "' holds a " + ck.backbone.meta.arch + " backbone, the config's is " + m.meta().arch);
  std::map<std::string, torch::Tensor> state = ck.head;
  for (const auto& p : ck.backbone.module.named_parameters(true)) state["backbone." + p.name] = p.value;
  for (const auto& b : ck.backbone.module.named_buffers(true)) state["backbone." + b.name] = b.value;
  m.load_state(state, "checkpoint '" + path + "'");
}

/// A multi-label set needs the multi-label head: any other would silently train on one label per image.
void check_labels(const config::RunConfig& cfg, const data::Datasets& ds) {
  if (cfg.model.head.output == config::HeadOutput::MultiLabel) return;
  for (const data::Dataset* d : {&ds.train, &ds.val})
    TLTRAIN_CHECK(!d->multi_label, ErrorKind::Usage,
                  "'" + d->source + "' gives images several labels (or one 0/1 column per class), but model.head.output is \"" +
                      config::name_of(cfg.model.head.output) + "\": set it to \"multilabel\" (one sigmoid per class)");
}

}  // namespace

RunPaths::RunPaths(const std::string& d)
    : dir(d), checkpoints(d + "/checkpoints"), last(checkpoints + "/last.pt"), best(checkpoints + "/best.pt"),
      stage_best(checkpoints + "/stage_best.pt"), skipped(d + "/skipped.json") {}

/// One stage's optimizer, objective and data.
struct Run::Stage {
  int64_t micro = 0;      ///< forward chunk (0: the whole batch)
  bool side_by_side = false;  ///< chunks run concurrently (the forward draws no random numbers)
  bool bn_train = false;  ///< backbone BatchNorm trains in this stage
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<double> base_lrs;  ///< per parameter group, before the schedule
  bool has_backbone_group() const { return base_lrs.size() > 1; }  ///< the backbone group comes first
  std::unique_ptr<Objective> objective;
  std::unique_ptr<FeatureCache> cache, val_cache;  ///< while the backbone is frozen
  std::unique_ptr<data::Loader> train_loader;      ///< otherwise
  std::vector<data::Sample> val_subset;            ///< validation_steps: the images validated
  std::unique_ptr<data::Loader> val_loader;        ///< over val_subset; null: the run's
  StepLoss step_loss;                              ///< what the optimizer's loss adds (LBFGS)
  std::unique_ptr<LossScaler> scaler;              ///< fp16: loss scaling (the run's state carries over)
  std::unique_ptr<Teacher> teacher;                ///< distillation
  std::unique_ptr<TeacherTargets> teacher_targets; ///< distillation on the loader
  torch::Tensor teacher_stack;                     ///< the cache's teacher logits, stacked as the cache's views
  model::FrozenInputs val_frozen;  ///< validation images after the frozen blocks, for this stage
  int64_t steps_per_epoch = 0, stage_step = 0;
  double lr = 0, lr_backbone = 0;  ///< the rates of the epoch's last step
};

Run::Run(const config::RunConfig& cfg, const FitOptions& opts, std::vector<std::unique_ptr<Callback>> callbacks)
    : cfg_(cfg), opts_(opts), paths_(cfg.output_dir), device_(model::resolve_device(cfg.device, opts.group ? opts.group->context().local_rank : 0)), callbacks_(std::move(callbacks)) {
  // The profiling executor re-optimises the TorchScript graph on the fly; measured slower for
  // training on CPU than the plain interpreter (docs/benchmarks.md).
  torch::jit::setGraphExecutorOptimize(false);
  dist::ProcessGroup* group = opts.group;
  rank_ = group ? group->rank() : 0;
  world_ = group ? group->world() : 1;
  // Ranks on one machine share its cores.
  const int64_t local_world = group ? std::max(1, group->context().local_world) : 1;
  const int64_t intra = threads_or_cores(cfg.intra_op_threads, local_world);
  loader_threads_ = threads_or_cores(cfg.loader_threads, local_world);
  set_intra_op_threads(intra);
  if (const std::string blas = reference_blas_loaded(); !blas.empty())
    log::warn("LibTorch is using the unoptimized reference BLAS (" + blas + "); training with one thread per process was 8x " +
              "slower with it here: install libopenblas0-openmp (scripts/setup.sh does)");
  seed_ = static_cast<uint64_t>(cfg.seed);
  if (!opts.resume)
    TLTRAIN_CHECK(!fs::exists(paths_.last), ErrorKind::Usage,
                  "'" + paths_.dir + "' already holds a run; continue it with `tltrain fit --resume " + paths_.dir +
                      "` or choose another output_dir (--set output_dir=...)");
  else
    TLTRAIN_CHECK(fs::exists(paths_.last), ErrorKind::Data, "nothing to resume: '" + paths_.last + "' does not exist");

  ds_ = opts.datasets ? *opts.datasets : data::load_datasets(cfg.data, seed_);
  const int64_t num_classes = static_cast<int64_t>(ds_.train.classes.size());
  TLTRAIN_CHECK(num_classes >= 2, ErrorKind::Data, "'" + cfg.data.train + "' has " + std::to_string(num_classes) +
                                                       " class; classification needs at least 2 class subfolders");
  check_labels(cfg, ds_);
  for (size_t i = 0; i < cfg.stages.size(); ++i)
    TLTRAIN_CHECK(cfg.stages[i].precision != config::Precision::Fp16 || device_.is_cuda(), ErrorKind::Usage,
                  "stages[" + std::to_string(i) + "].precision is \"fp16\", which autocast runs on CUDA only, but the run is on " +
                      device_.str() + ": use \"bf16\" on CPU (or device \"cuda\" with a CUDA build of LibTorch)");
  model::Backbone backbone = load_run_backbone(cfg, device_);
  const int64_t positions = flatten_positions(cfg, backbone);
  plan_ = plan_stages(cfg, backbone.meta, num_classes, model::head_in_features(cfg.model.head, backbone.meta.feature_channels, positions));
  cfg_ = data::with_dataset_stats(cfg_, ds_.train.samples, backbone.meta.image_spec(), loader_threads_);
  pre_ = data::resolve_preprocess(cfg_.data, backbone.meta.image_spec());
  torch::manual_seed(seed_);
  model_ = std::make_unique<model::Classifier>(std::move(backbone), cfg.model.head, num_classes, device_, positions);
  skipped_.add_scan("train", ds_.train.skipped);
  if (ds_.has_val && !ds_.val_is_split) skipped_.add_scan("val", ds_.val.skipped);
  start_or_resume();
  if (group) log::info("data-parallel: " + std::to_string(world_) + " ranks (" + group->context().source + "), " +
                       dist::backend_name(group->backend()) + " collectives" +
                       (group->backend() == dist::Backend::Nccl ? " on " + device_.str() : std::string()) + ", " +
                       std::to_string(intra) + " intra-op threads each; batch_size " + std::to_string(cfg.data.batch_size) +
                       " per rank, " + std::to_string(cfg.data.batch_size * world_) + " per step");
  if (ds_.has_val)
    val_loader_ = std::make_unique<data::Loader>(ds_.val.samples, pre_, cfg.data.augment, data::Mode::Eval, loader_options(false));
  for (size_t s = 0; s < state_.stage; ++s) epoch_base_ += augment_epochs(s);
}

int64_t Run::augment_epochs(size_t stage) const {
  const config::StageConfig& st = cfg_.stages[stage];
  return data::stream_passes(static_cast<int64_t>(ds_.train.samples.size()), st.epochs, st.steps_per_epoch, cfg_.data.batch_size, world_);
}

bool Run::backbone_as_loaded(size_t stage) const {
  if (!opts_.init_checkpoint.empty()) return false;
  for (size_t s = 0; s < stage; ++s)
    if (plan_[s].trainable_layers > 0) return false;
  return true;
}

const std::vector<data::Sample>& Run::validation_samples() const {
  return stage_ && stage_->val_loader ? stage_->val_subset : ds_.val.samples;
}

Run::~Run() = default;

void Run::start_or_resume() {
  history_ = json::array();
  if (opts_.resume) {
    checkpoint::Checkpoint ck = checkpoint::load(paths_.last, device_);
    adopt_weights(*model_, ck, ds_.train.classes, paths_.last);
    state_ = ck.progress;
    history_ = ck.info.at("history");
    resumed_stage_ = true;
    if (state_.epoch > 0) resume_optimizer_ = ck.optimizer;
    const bool at_end = state_.stage < cfg_.stages.size() && state_.epoch >= cfg_.stages[state_.stage].epochs;
    log::info("resuming " + paths_.dir + " at " + (at_end ? "the end of " : "") + "stage " + std::to_string(state_.stage + 1) +
              (at_end ? "" : ", epoch " + std::to_string(state_.epoch + 1)));
    return;
  }
  if (!opts_.init_checkpoint.empty()) {
    checkpoint::Checkpoint ck = checkpoint::load(opts_.init_checkpoint, device_);
    adopt_weights(*model_, ck, ds_.train.classes, opts_.init_checkpoint);
    log::info("starting from the weights of " + opts_.init_checkpoint);
  }
  if (log::is_output_rank()) {
    fs::create_directories(paths_.checkpoints);
    write_file_atomically(paths_.dir + "/config.json", cfg_.resolved.dump(2) + "\n");
    write_file_atomically(paths_.dir + "/split.json", data::split_to_json(ds_).dump(1) + "\n");
  }
}

FitResult Run::fit() {
  notify(&Callback::on_run_begin);
  while (state_.stage < cfg_.stages.size()) run_stage();
  notify(&Callback::on_run_end);
  FitResult r;
  r.run_dir = paths_.dir;
  r.best_checkpoint = fs::exists(paths_.best) ? paths_.best : "";
  r.last_checkpoint = paths_.last;
  r.monitor = config::name_of(cfg_.monitor);
  r.best_value = state_.best_value;
  r.history = history_;
  return r;
}

int64_t Run::steps_per_epoch() const { return stage_ ? stage_->steps_per_epoch : 0; }
torch::optim::Optimizer* Run::optimizer() { return stage_ ? stage_->optimizer.get() : nullptr; }

bool Run::stage_over() const { return state_.epoch + 1 >= stage().epochs || state_.stage_state.stopped; }

json Run::checkpoint_info(size_t stage, int64_t epoch) const {
  checkpoint::Progress p = state_;
  p.stage = stage;
  p.epoch = epoch;
  if (stage != state_.stage) p.stage_state = {};  // a later stage starts with fresh early-stopping counters
  return json{{"classes", ds_.train.classes}, {"config", cfg_.resolved}, {"progress", checkpoint::to_json(p)},
              {"monitor", config::name_of(cfg_.monitor)}, {"history", history_}};
}

void Run::notify(void (Callback::*event)(Run&)) {
  for (auto& c : callbacks_) ((*c).*event)(*this);
}

void Run::run_stage() {
  begin_stage();
  notify(&Callback::on_stage_begin);
  while (state_.epoch < stage().epochs && !state_.stage_state.stopped) run_epoch();
  notify(&Callback::on_stage_end);
  epoch_base_ += augment_epochs(state_.stage);
  stage_.reset();
  ++state_.stage;
  state_.epoch = 0;
  state_.stage_state = {};
  resumed_stage_ = false;
}

void Run::begin_stage() {
  const config::StageConfig& st = stage();
  const StagePlan& sp = plan_[state_.stage];
  auto s = std::make_unique<Stage>();
  model_->set_trainable(sp.cut);
  s->bn_train = st.batch_norm == config::BatchNormPolicy::Train && sp.cut.block < model_->meta().blocks.size();
  s->micro = cfg_.micro_batch > 0 ? cfg_.micro_batch : (device_.is_cuda() || s->bn_train ? 0 : 8);
  s->side_by_side = !s->bn_train && !model::draws_random_numbers(*model_);  // BatchNorm statistics move per forward
  if (s->side_by_side && s->micro > 0 && device_.is_cpu() && torch::get_num_threads() > 1)
    log::debug("stage '" + st.name + "': micro-batches run side by side on " + std::to_string(torch::get_num_threads()) + " threads");
  if (s->bn_train && cfg_.micro_batch > 0)
    log::warn("stage '" + st.name + "': batch_norm \"train\" computes statistics per forward chunk; micro_batch " +
              std::to_string(cfg_.micro_batch) + " changes them — set micro_batch 0 for full-batch statistics");
  log::info("stage " + std::to_string(state_.stage + 1) + "/" + std::to_string(cfg_.stages.size()) + " '" + st.name + "': " +
            sp.trainable + ", " + std::to_string(st.epochs) + " epochs, " + config::name_of(st.optimizer.name) + " lr " +
            log::fixed(st.optimizer.lr, 6) + (st.feature_cache ? ", feature cache" : ""));

  // Parameter groups as planned: the backbone's share at lr * backbone_lr_mult.
  std::vector<std::pair<std::vector<torch::Tensor>, double>> groups;
  auto bb_params = model_->trainable_backbone_parameters();
  if (!bb_params.empty()) groups.emplace_back(bb_params, st.optimizer.lr * st.backbone_lr_mult);
  groups.emplace_back(model_->head_parameters(), st.optimizer.lr);
  for (const auto& g : groups) s->base_lrs.push_back(g.second);
  s->optimizer = make_optimizer(st.optimizer, groups);
  if (resume_optimizer_ && resumed_stage_) s->optimizer->load(*resume_optimizer_);
  s->objective = make_objective(st, cfg_.model.head, ds_.train.class_counts(), device_);
  s->step_loss = step_loss(st.optimizer, model_->head_weights());
  if (cfg_.loss_scale.on_for(st.precision))
    s->scaler = std::make_unique<LossScaler>(cfg_.loss_scale, device_, ScalerState{state_.loss_scale, state_.loss_scale_good_steps});
  if (st.distill.enabled() && state_.epoch < st.epochs)
    s->teacher = std::make_unique<Teacher>(st.distill.teacher, device_, ds_.train.classes, s->micro);
  if (state_.epoch < st.epochs) build_stage_data(*s);  // else a resume that only ends the stage
  s->stage_step = state_.epoch * s->steps_per_epoch;
  stage_ = std::move(s);
}

void Run::build_stage_data(Stage& s) {
  const config::StageConfig& st = stage();
  const int64_t batch = cfg_.data.batch_size;
  if (ds_.has_val && st.validation_steps > 0) {
    // A fixed seeded draw, the same images every epoch: the set is sorted by class.
    for (int64_t i : data::epoch_order(static_cast<int64_t>(ds_.val.samples.size()), seed_, 0, true, 0, 1))
      if (static_cast<int64_t>(s.val_subset.size()) < st.validation_steps * batch) s.val_subset.push_back(ds_.val.samples[static_cast<size_t>(i)]);
    s.val_loader = std::make_unique<data::Loader>(s.val_subset, pre_, cfg_.data.augment, data::Mode::Eval, loader_options(false));
  }
  const CacheMemory memory = cache_memory(cfg_.feature_cache_memory_mb, cfg_.output_dir);
  // Validation's kept activations live where a feature cache would: in RAM they grew with the
  // data set (48 MiB for a 10x hymenoptera, docs/benchmarks.md). A GPU has no file to spill to,
  // so there they are kept only within the budget and otherwise computed again each epoch.
  s.val_frozen.storage = [memory, device = model_->device()](int64_t rows, int64_t cols) {
    const bool fits = memory.budget_bytes < 0 || rows * cols * static_cast<int64_t>(sizeof(float)) <= memory.budget_bytes;
    return device.is_cpu() || fits ? cache_rows(rows, cols, device, memory, "validation's frozen activations") : torch::Tensor();
  };
  if (st.feature_cache) {
    const auto t0 = std::chrono::steady_clock::now();
    FeatureSource own;
    FeatureSource& source = opts_.features && backbone_as_loaded(state_.stage) ? *opts_.features : own;
    CacheRequest r{pre_, cfg_.data.augment, st.cache_views, seed_, epoch_base_, batch, loader_threads_, s.micro, stop_requested, group(),
                   s.teacher.get(), memory};
    s.cache = std::make_unique<FeatureCache>(source.features(*model_, ds_.train.samples, r));
    if (s.teacher) s.teacher_stack = torch::cat(s.cache->teacher);
    if (ds_.has_val) {
      r.views = r.epoch_base = 0;
      r.teacher = nullptr;  // validation measures the student alone
      s.val_cache = std::make_unique<FeatureCache>(source.features(*model_, s.val_loader ? s.val_subset : ds_.val.samples, r));
    }
    skipped_.add_bad("train", s.cache->bad);
    if (s.val_cache) skipped_.add_bad("val", s.val_cache->bad);
    log::info("feature cache: " + std::to_string(s.cache->labels.size(0)) + " images x " +
              std::to_string(std::max<int64_t>(st.cache_views, 1)) + " view(s) in " + log::fixed(seconds_since(t0), 1) + " s");
    const auto n = static_cast<int64_t>(data::epoch_order(s.cache->labels.size(0), seed_, 0, true, rank_, world_).size());
    s.steps_per_epoch = st.steps_per_epoch > 0 ? st.steps_per_epoch : sets_own_rate(st.optimizer) ? 1 : (n + batch - 1) / batch;
    return;
  }
  data::LoaderOptions lo = loader_options(true);
  if (s.teacher) {
    lo.second = s.teacher->preprocess();
    s.teacher_targets = std::make_unique<TeacherTargets>(*s.teacher, !cfg_.data.augment.random());
  }
  s.train_loader = std::make_unique<data::Loader>(ds_.train.samples, pre_, cfg_.data.augment, data::Mode::Train, lo);
  s.steps_per_epoch = st.steps_per_epoch > 0 ? st.steps_per_epoch : s.train_loader->batches_per_epoch();
  const size_t cut = plan_[state_.stage].cut.block;
  if (cut > 0 && cut < model_->meta().blocks.size()) {
    // The frozen bottom never changes in this stage: run it at inference speed.
    std::string why = model_->optimize_frozen_blocks({s.micro > 0 ? s.micro : cfg_.data.batch_size, 3, pre_.height, pre_.width});
    log::debug(why.empty() ? "frozen blocks run as an optimized copy" : "frozen blocks run as saved: " + why);
  }
}

data::LoaderOptions Run::loader_options(bool train) const {
  data::LoaderOptions lo;
  lo.batch_size = cfg_.data.batch_size;
  lo.threads = loader_threads_;
  lo.shuffle = train;
  lo.seed = seed_;
  lo.pin_memory = device_.is_cuda();
  lo.rank = rank_;
  lo.world_size = world_;
  lo.multi_hot_classes = multi_hot_classes(*model_);
  lo.pad_shards = train;  // training: equal shards; validation: each image counted once over all ranks
  return lo;
}

void Run::run_epoch() {
  const int64_t epoch_id = epoch_base_ + state_.epoch;
  // Dropout draws come from (seed, stage, epoch): a resumed epoch repeats them exactly.
  torch::manual_seed(data::mix_seed(seed_, state_.stage + 1, static_cast<uint64_t>(state_.epoch)));
  model_->set_training(true, stage().batch_norm);
  notify(&Callback::on_epoch_begin);
  const auto t0 = std::chrono::steady_clock::now();
  const double allreduce_ms0 = group() ? group()->all_reduce_ms() : 0.0;
  stage_->lr = stage_->lr_backbone = 0;
  StepStats stats = train_epoch(epoch_id);
  if (stage_->train_loader) skipped_.add_bad("train", stage_->train_loader->bad_images());
  stats = all_reduce_stats(stats, group());
  const double train_secs = seconds_since(t0);

  json record = {{"stage", state_.stage + 1}, {"stage_name", stage().name}, {"epoch", state_.epoch + 1},
                 {"global_epoch", epoch_id + 1}, {"step", state_.global_step}, {"loss", stats.loss()},
                 {"accuracy", stats.accuracy()}};
  model::Predictions val;
  if (ds_.has_val) val = validate(record);
  record["lr"] = stage_->lr;
  record["lr_backbone"] = stage_->has_backbone_group() ? json(stage_->lr_backbone) : json(nullptr);
  if (stage_->scaler) {
    // Read once per epoch, not per step (two device syncs): checkpoints are written at epoch ends.
    const ScalerState sc = stage_->scaler->state();
    state_.loss_scale = sc.scale;
    state_.loss_scale_good_steps = sc.good_steps;
    record["loss_scale"] = state_.loss_scale;
    record["skipped_steps"] = stats.skipped;
  }
  record["images_per_s"] = train_secs > 0 ? static_cast<double>(stats.count) / train_secs : 0.0;
  if (group() && stage_->steps_per_epoch > 0)
    record["allreduce_ms_per_step"] = (group()->all_reduce_ms() - allreduce_ms0) / static_cast<double>(stage_->steps_per_epoch);
  record["seconds"] = seconds_since(t0);
  history_.push_back(record);

  // The run's best by its monitored metric picks best.pt.
  const double monitored = metric_of(record, cfg_.monitor);
  EpochEnd end{history_.back(), improved(cfg_.monitor, monitored, state_.best_value, 0.0, state_.have_best), {},
               ds_.has_val ? &val : nullptr};
  if (end.new_best) {
    state_.best_value = monitored;
    state_.have_best = true;
  }
  notify(&Callback::on_epoch_end, end);
  ++state_.epoch;
}

StepStats Run::train_epoch(int64_t epoch_id) {
  Stage& s = *stage_;
  const config::StageConfig& st = stage();
  const int64_t batch = cfg_.data.batch_size;
  StepStats epoch;
  int64_t done = 0;
  if (s.cache) {
    // Epoch e is pass e of the stream (its shuffle, and view e % K), or with steps_per_epoch its
    // batches [e·N, (e+1)·N); LBFGS takes the whole epoch as one batch.
    const int64_t m = s.cache->labels.size(0);
    const int64_t pass = static_cast<int64_t>(data::epoch_order(m, seed_, 0, true, rank_, world_).size());
    const int64_t count = st.steps_per_epoch > 0 ? st.steps_per_epoch * batch : pass;
    const int64_t first = st.steps_per_epoch > 0 ? state_.epoch * count : (epoch_id - epoch_base_) * pass;
    std::vector<int64_t> rows, epochs;
    data::stream_window(m, seed_, epoch_base_, first, count, rank_, world_, rows, epochs);
    const auto views = static_cast<int64_t>(s.cache->views.size());
    if (views > 1)
      for (size_t i = 0; i < rows.size(); ++i) rows[i] += (epochs[i] % views) * m;
    const torch::Tensor& feats = views > 1 ? s.cache->stacked : s.cache->views[0];
    auto rows_t = torch::tensor(rows, torch::kLong).to(device_);
    const auto head = autocast_forward([&](const torch::Tensor& x) { return model_->head()->forward(x); }, st.precision, device_);
    const int64_t step_rows = sets_own_rate(st.optimizer) ? count : batch;
    for (int64_t start = 0; start < count; start += step_rows) {
      auto idx = rows_t.narrow(0, start, std::min<int64_t>(step_rows, count - start));
      set_lr();
      auto y = s.cache->labels.index_select(0, views > 1 ? idx.remainder(m) : idx);
      if (s.teacher) y = with_teacher(y, s.teacher_stack.index_select(0, idx));
      auto step = gradient_step(head, feats.index_select(0, idx), y, *s.optimizer, *s.objective, {0, group(), s.step_loss, s.scaler.get()});
      after_step(step, epoch, ++done);
    }
    return epoch;
  }
  if (st.steps_per_epoch > 0)
    s.train_loader->start_stream(epoch_base_, state_.epoch * st.steps_per_epoch, st.steps_per_epoch);
  else
    s.train_loader->start_epoch(epoch_id);
  const auto whole = autocast_forward([&](const torch::Tensor& x) { return model_->forward(x); }, st.precision, device_);
  data::DeviceBatches batches(*s.train_loader, device_);
  while (auto b = batches.next()) {
    set_lr();
    auto y = s.teacher_targets ? s.teacher_targets->targets(*b, device_) : b->labels;
    auto step = gradient_step(whole, b->images, y, *s.optimizer, *s.objective, {s.micro, group(), s.step_loss, s.scaler.get(), s.side_by_side});
    after_step(step, epoch, ++done);
  }
  return epoch;
}

void Run::set_lr() {
  Stage& s = *stage_;
  const config::StageConfig& st = stage();
  // LBFGS's line search chooses its own steps: the schedule does not apply.
  const double f = sets_own_rate(st.optimizer) ? 1.0
                                               : lr_factor(st.schedule, st.optimizer.lr, s.stage_step, s.steps_per_epoch,
                                                           s.steps_per_epoch * st.epochs);
  for (size_t g = 0; g < s.optimizer->param_groups().size(); ++g) s.optimizer->param_groups()[g].options().set_lr(s.base_lrs[g] * f);
  s.lr = st.optimizer.lr * f;
  s.lr_backbone = s.has_backbone_group() ? st.optimizer.lr * st.backbone_lr_mult * f : 0;
}

void Run::after_step(const StepStats& step, StepStats& epoch, int64_t done) {
  epoch.add(step);
  ++stage_->stage_step;
  ++state_.global_step;
  const StepEnd end{done, stage_->steps_per_epoch, step, epoch, stage_->lr};
  notify(&Callback::on_step_end, end);
}

model::Predictions Run::validate(json& record) {
  Stage& s = *stage_;
  model::Predictions p;
  data::Loader& loader = s.val_loader ? *s.val_loader : *val_loader_;
  if (s.val_cache) {
    torch::NoGradGuard no_grad;
    model_->set_training(false, stage().batch_norm);
    p.logits = model_->head()->forward(s.val_cache->views[0]).to(torch::kCPU);
    p.labels = s.val_cache->labels.to(torch::kCPU);
    p.indices = s.val_cache->sample_index;
  } else {
    p = model::predict(*model_, loader, s.micro, 0, s.val_loader ? nullptr : &s.val_frozen);
    skipped_.add_bad("val", loader.bad_images());
    check_variation(p);
  }
  auto [loss, accuracy] = s.objective->validate(p.logits, p.labels);
  if (group()) {  // each rank saw its own share: sum (loss, correct, count) exactly
    const double count = static_cast<double>(p.labels.size(0));
    std::vector<double> v{loss * count, std::round(accuracy * count), count};
    group()->all_reduce_sum(v);
    loss = v[2] > 0 ? v[0] / v[2] : 0.0;
    accuracy = v[2] > 0 ? v[1] / v[2] : 0.0;
  }
  record["val_loss"] = loss;
  record["val_accuracy"] = accuracy;
  // Ranking scores do not add up across ranks' shares: eval reports them for distributed runs.
  if (!group()) {
    const json scores = s.objective->scores(p.logits, p.labels);
    for (const auto& score : scores.items()) record["val_" + score.key()] = score.value();
  }
  return p;
}

void Run::check_variation(const model::Predictions& p) {
  const Stage& s = *stage_;
  // With BatchNorm training, eval-mode outputs follow running statistics that are still
  // moving (after a short first epoch they are near their init): constant now is no verdict.
  if (!checked_variation_ && !s.bn_train) {
    if (const std::string how = model::constant_rows(p.logits); !how.empty())
      TLTRAIN_FAIL(ErrorKind::Data, "stage '" + stage().name + "': the model's outputs are the same for every validation image (" + how +
                                        ") after an epoch of training: " + model::kConstantFeaturesFix);
    checked_variation_ = true;
  }
}

}  // namespace tltrain::train
