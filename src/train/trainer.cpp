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

#include "tltrain/core/blas.h"
#include "tltrain/core/threads.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/data/skipped.h"
#include "tltrain/model/classifier.h"
#include "tltrain/model/inference.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/train/event_file.h"
#include "tltrain/train/feature_cache.h"
#include "tltrain/train/run_log.h"
#include "tltrain/train/step.h"
#include "tltrain/train/plan.h"
#include "tltrain/train/schedule.h"

namespace fs = std::filesystem;


namespace tltrain::train {

using config::json;

namespace {

std::atomic<bool> g_stop{false};

bool lower_is_better(const std::string& metric) { return metric.find("loss") != std::string::npos; }

bool improved(const std::string& metric, double value, double best, double min_delta, bool have_best) {
  if (!have_best) return true;
  return lower_is_better(metric) ? value < best - min_delta : value > best + min_delta;
}

std::string fmt(double v, int precision = 4) {
  std::ostringstream ss;
  ss << std::fixed << std::setprecision(precision) << v;
  return ss.str();
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
  const std::function<bool()> stop = [] { return g_stop.load(); };
  // The profiling executor re-optimises the TorchScript graph on the fly; measured slower for
  // training on CPU than the plain interpreter (docs/benchmarks.md).
  torch::jit::setGraphExecutorOptimize(false);
  const torch::Device device = model::resolve_device(cfg.device);
  dist::ProcessGroup* group = opts.group;
  const int64_t rank = group ? group->rank() : 0, world = group ? group->world() : 1;
  // Ranks on one machine share its cores.
  const int64_t local_world = group ? std::max(1, group->context().local_world) : 1;
  const int64_t intra = threads_or_cores(cfg.intra_op_threads, local_world);
  const int64_t loader_threads = threads_or_cores(cfg.loader_threads, local_world);
  torch::set_num_threads(static_cast<int>(intra));
  if (const std::string blas = reference_blas_loaded(); !blas.empty())
    log::warn("LibTorch is using the unoptimized reference BLAS (" + blas + "); training with one thread per process was 8x " +
              "slower with it here: install libopenblas0-openmp (scripts/setup.sh does)");
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
  const data::Preprocess pre = data::resolve_preprocess(cfg.data, backbone.meta.image_spec());
  torch::manual_seed(seed);
  model::Classifier m(std::move(backbone), cfg.model.head, num_classes, device);

  // Files left out are named, never dropped silently: warned as they are met, listed in skipped.json.
  data::SkippedLog skipped;
  skipped.add_scan("train", ds.train.skipped);
  if (ds.has_val && !ds.val_is_split) skipped.add_scan("val", ds.val.skipped);
  size_t skipped_reported = 0;
  const std::string skipped_path = dir + "/skipped.json";
  auto report_skipped = [&] {
    if (skipped.count() == skipped_reported && fs::exists(skipped_path)) return;
    if (skipped.count() > skipped_reported) log::warn(skipped.warning(skipped_reported, skipped_path));
    skipped_reported = skipped.count();
    if (log::is_output_rank()) write_file_atomically(skipped_path, skipped.to_json().dump(1) + "\n");
  };
  bool checked_variation = false;  // the first validation with frozen BatchNorm checks that the outputs vary

  json history = json::array();
  size_t start_stage = 0;
  int64_t start_epoch = 0, global_step = 0;
  double best_value = 0;
  bool have_best = false;
  checkpoint::StageProgress stage_state;  // early stopping within the current stage
  std::shared_ptr<torch::serialize::InputArchive> resume_optimizer;

  auto check_matches = [&](const checkpoint::Checkpoint& ck, const std::string& path) {
    TLTRAIN_CHECK(ck.classes == ds.train.classes, ErrorKind::Data,
                  "checkpoint '" + path + "' was trained on classes [" + json(ck.classes).dump() + "] but the data has [" +
                      json(ds.train.classes).dump() + "]");
    TLTRAIN_CHECK(ck.backbone.meta.arch == m.meta().arch && ck.backbone.meta.blocks.size() == m.meta().blocks.size(), ErrorKind::Data,
                  "checkpoint '" + path + "' holds a " + ck.backbone.meta.arch + " backbone, the config's is " + m.meta().arch);
  };
  auto load_weights = [&](checkpoint::Checkpoint& ck, const std::string& path) {
    std::map<std::string, torch::Tensor> state = ck.head;
    for (const auto& p : ck.backbone.module.named_parameters(true)) state["backbone." + p.name] = p.value;
    for (const auto& b : ck.backbone.module.named_buffers(true)) state["backbone." + b.name] = b.value;
    m.load_state(state, "checkpoint '" + path + "'");
  };

  if (opts.resume) {
    checkpoint::Checkpoint ck = checkpoint::load(last_path, device);
    check_matches(ck, last_path);
    load_weights(ck, last_path);
    const checkpoint::Progress& p = ck.progress;
    start_stage = p.stage;
    start_epoch = p.epoch;
    global_step = p.global_step;
    have_best = p.have_best;
    best_value = p.best_value;
    stage_state = p.stage_state;
    history = ck.info.at("history");
    if (start_epoch > 0) resume_optimizer = ck.optimizer;
    log::info("resuming " + dir + " at stage " + std::to_string(start_stage + 1) + ", epoch " + std::to_string(start_epoch + 1));
  } else {
    if (!opts.init_checkpoint.empty()) {
      checkpoint::Checkpoint ck = checkpoint::load(opts.init_checkpoint, device);
      check_matches(ck, opts.init_checkpoint);
      load_weights(ck, opts.init_checkpoint);
      log::info("starting from the weights of " + opts.init_checkpoint);
    }
    if (log::is_output_rank()) {
      fs::create_directories(ckpt_dir);
      write_file_atomically(dir + "/config.json", cfg.resolved.dump(2) + "\n");
      write_file_atomically(dir + "/split.json", data::split_to_json(ds).dump(1) + "\n");
    }
  }
  report_skipped();
  if (group) log::info("data-parallel: " + std::to_string(world) + " ranks (" + group->context().source + "), " +
                       std::to_string(intra) + " intra-op threads each; batch_size " + std::to_string(cfg.data.batch_size) +
                       " per rank, " + std::to_string(cfg.data.batch_size * world) + " per step");

  auto info_for = [&](size_t stage, int64_t epoch) {
    return json{{"classes", ds.train.classes},
                {"config", cfg.resolved},
                {"progress", checkpoint::to_json({stage, epoch, global_step, have_best, best_value, stage_state})},
                {"monitor", cfg.monitor},
                {"history", history}};
  };

  // A new event file per fit call; a resumed run adds one, TensorBoard merges the folder.
  std::unique_ptr<EventFileWriter> tb;
  if (opts.tensorboard && log::is_output_rank()) tb = std::make_unique<EventFileWriter>(dir + "/tb");

  // Validation: from the loader, or from cached features while the backbone is frozen.
  data::LoaderOptions eval_opts;
  eval_opts.batch_size = cfg.data.batch_size;
  eval_opts.threads = loader_threads;
  eval_opts.seed = seed;
  eval_opts.pin_memory = device.is_cuda();
  eval_opts.rank = rank;
  eval_opts.world_size = world;
  eval_opts.pad_shards = false;  // each validation image counted once over all ranks
  std::unique_ptr<data::Loader> val_loader;
  if (ds.has_val) val_loader = std::make_unique<data::Loader>(ds.val.samples, pre, cfg.data.augment, data::Mode::Eval, eval_opts);

  int64_t epoch_base = 0;  // augmentation epochs run on across stages, so stage 2 sees new draws
  for (size_t s = 0; s < start_stage; ++s) epoch_base += cfg.stages[s].epochs;

  for (size_t si = start_stage; si < cfg.stages.size(); ++si) {
    const config::StageConfig& st = cfg.stages[si];
    const StagePlan& sp = plan[si];
    const bool resuming_here = opts.resume && si == start_stage;
    const int64_t first_epoch = resuming_here ? start_epoch : 0;
    if (!resuming_here) stage_state = {};
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

    const torch::Tensor class_w = class_weights(st, ds.train.class_counts(), device);

    // Feature cache for a frozen backbone.
    std::unique_ptr<FeatureCache> cache, val_cache;
    std::unique_ptr<data::Loader> train_loader;
    int64_t steps_per_epoch = 0;
    if (st.feature_cache) {
      auto t0 = std::chrono::steady_clock::now();
      cache = std::make_unique<FeatureCache>(build_cache(m, ds.train.samples, pre, cfg.data.augment, st.cache_views, seed, epoch_base,
                                                         cfg.data.batch_size, loader_threads, micro, stop, group));
      if (ds.has_val)
        val_cache = std::make_unique<FeatureCache>(build_cache(m, ds.val.samples, pre, cfg.data.augment, 0, seed, 0,
                                                               cfg.data.batch_size, loader_threads, micro, stop, group));
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      skipped.add_bad("train", cache->bad);
      if (val_cache) skipped.add_bad("val", val_cache->bad);
      report_skipped();
      log::info("feature cache: " + std::to_string(cache->labels.size(0)) + " images x " +
                std::to_string(std::max<int64_t>(st.cache_views, 1)) + " view(s) in " + fmt(secs, 1) + " s");
      int64_t n = static_cast<int64_t>(data::epoch_order(cache->labels.size(0), seed, 0, true, rank, world).size());
      steps_per_epoch = (n + cfg.data.batch_size - 1) / cfg.data.batch_size;
    } else {
      data::LoaderOptions lo;
      lo.batch_size = cfg.data.batch_size;
      lo.threads = loader_threads;
      lo.shuffle = true;
      lo.seed = seed;
      lo.pin_memory = device.is_cuda();
      lo.rank = rank;
      lo.world_size = world;
      train_loader = std::make_unique<data::Loader>(ds.train.samples, pre, cfg.data.augment, data::Mode::Train, lo);
      steps_per_epoch = train_loader->batches_per_epoch();
      if (sp.cut > 0 && sp.cut < m.meta().blocks.size()) {
        // The frozen bottom never changes in this stage: run it at inference speed.
        std::string why = m.optimize_frozen_blocks({micro > 0 ? micro : cfg.data.batch_size, 3, pre.height, pre.width});
        if (why.empty()) log::debug("frozen blocks run as an optimized copy");
        else log::debug("frozen blocks run as saved: " + why);
      }
    }
    model::FrozenInputs val_frozen;  // validation images after the frozen blocks, for this stage
    const int64_t total_steps = steps_per_epoch * st.epochs;
    int64_t stage_step = first_epoch * steps_per_epoch;

    std::map<std::string, torch::Tensor> stage_best;
    if (resuming_here && stage_state.have_best && fs::exists(stage_best_path) && st.early_stopping.enabled &&
        st.early_stopping.restore_best) {
      checkpoint::Checkpoint sb = checkpoint::load(stage_best_path, device);
      model::Classifier tmp = checkpoint::classifier_from(sb, device);
      stage_best = tmp.snapshot();
    }

    for (int64_t epoch = first_epoch; epoch < st.epochs; ++epoch) {
      if (stage_state.stopped) break;
      const int64_t epoch_id = epoch_base + epoch;
      // Dropout draws come from (seed, stage, epoch): a resumed epoch repeats them exactly.
      torch::manual_seed(data::mix_seed(seed, si + 1, static_cast<uint64_t>(epoch)));
      m.set_training(true, st.batch_norm);
      auto t0 = std::chrono::steady_clock::now();
      StepStats epoch_stats;
      const double allreduce_ms0 = group ? group->all_reduce_ms() : 0.0;
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
        progress.update(done, epoch_stats.loss(), epoch_stats.accuracy(), epoch_stats.count);
        const char* kill_rank = std::getenv("TLTRAIN_DEBUG_KILL_RANK");
        if (const char* kill = std::getenv("TLTRAIN_DEBUG_KILL_AFTER_STEPS");
            kill && global_step == std::atoll(kill) && (!kill_rank || std::atoll(kill_rank) == rank))
          std::raise(SIGKILL);  // the resume and dead-rank tests' kill -9, at a chosen step (and rank)
        if (group) {
          group->heartbeat(global_step);
          // Ranks agree on a stop, so Ctrl-C ends every rank at the same step.
          std::vector<double> stop_votes{g_stop ? 1.0 : 0.0};
          group->all_reduce_sum(stop_votes);
          if (stop_votes[0] > 0) g_stop = true;
        }
        if (g_stop) TLTRAIN_FAIL(ErrorKind::Interrupted, "interrupted in stage '" + st.name + "', epoch " + std::to_string(epoch + 1) +
                                                              "; continue with `tltrain fit --resume " + dir + "`");
      };
      if (cache) {
        const auto& feats = cache->views[static_cast<size_t>(epoch_id % static_cast<int64_t>(cache->views.size()))];
        auto order = data::epoch_order(cache->labels.size(0), seed, epoch_id, /*shuffle=*/true, rank, world);
        const int64_t n = static_cast<int64_t>(order.size());
        auto order_t = torch::tensor(order, torch::kLong).to(device);
        int64_t done = 0;
        for (int64_t start = 0; start < n; start += cfg.data.batch_size) {
          auto idx = order_t.narrow(0, start, std::min<int64_t>(cfg.data.batch_size, n - start));
          set_lr();
          auto s = gradient_step([&](const torch::Tensor& x) { return m.head()->forward(x); }, feats.index_select(0, idx),
                                 cache->labels.index_select(0, idx), *optimizer, class_w, st.label_smoothing, 0, group);
          after_step(s, ++done);
        }
      } else {
        train_loader->start_epoch(epoch_id);
        int64_t done = 0;
        while (auto b = train_loader->next()) {
          set_lr();
          auto s = gradient_step([&](const torch::Tensor& x) { return m.forward(x); }, b->images.to(device, true),
                                 b->labels.to(device, true), *optimizer, class_w, st.label_smoothing, micro, group);
          after_step(s, ++done);
        }
      }
      progress.finish();
      if (train_loader) skipped.add_bad("train", train_loader->bad_images());
      epoch_stats = all_reduce_stats(epoch_stats, group);
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
          auto p = model::predict(m, *val_loader, micro, 0, &val_frozen);
          skipped.add_bad("val", val_loader->bad_images());
          // With BatchNorm training, eval-mode outputs follow running statistics that are still
          // moving (after a short first epoch they are near their init): constant now is no verdict.
          if (!checked_variation && !bn_train) {
            if (const std::string how = model::constant_rows(p.logits); !how.empty())
              TLTRAIN_FAIL(ErrorKind::Data, "stage '" + st.name + "': the model's outputs are the same for every validation image (" +
                                                how + ") after an epoch of training: " + model::kConstantFeaturesFix);
            checked_variation = true;
          }
          std::tie(vl, va) = model::loss_and_accuracy(p);
          if (group) {  // each rank saw its own share: sum (loss, correct, count) exactly
            const double count = static_cast<double>(p.labels.numel());
            std::vector<double> v{vl * count, std::round(va * count), count};
            group->all_reduce_sum(v);
            vl = v[2] > 0 ? v[0] / v[2] : 0.0;
            va = v[2] > 0 ? v[1] / v[2] : 0.0;
          }
        }
        entry["val_loss"] = vl;
        entry["val_accuracy"] = va;
      }
      entry["lr"] = lr_now;
      entry["lr_backbone"] = bb_params.empty() ? json(nullptr) : json(lr_bb);
      entry["images_per_s"] = train_secs > 0 ? static_cast<double>(epoch_stats.count) / train_secs : 0.0;
      if (group && steps_per_epoch > 0)
        entry["allreduce_ms_per_step"] = (group->all_reduce_ms() - allreduce_ms0) / static_cast<double>(steps_per_epoch);
      entry["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      history.push_back(entry);

      std::string line = "stage " + std::to_string(si + 1) + " epoch " + std::to_string(epoch + 1) + "/" + std::to_string(st.epochs) +
                         ": loss " + fmt(epoch_stats.loss()) + " acc " + fmt(epoch_stats.accuracy());
      if (ds.has_val) line += "  val_loss " + fmt(entry["val_loss"].get<double>()) + " val_acc " + fmt(entry["val_accuracy"].get<double>());
      line += "  lr " + fmt(lr_now, 6) + "  " + fmt(entry["images_per_s"].get<double>(), 1) + " img/s";
      if (entry.contains("allreduce_ms_per_step")) line += "  all-reduce " + fmt(entry["allreduce_ms_per_step"].get<double>(), 2) + " ms/step";

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
        bool stage_improved = improved(es.monitor, v, stage_state.best, es.min_delta, stage_state.have_best);
        if (stage_improved) {
          stage_state.best = v;
          stage_state.have_best = true;
          stage_state.wait = 0;
          if (es.restore_best) {
            stage_best = m.snapshot();
            if (log::is_output_rank()) checkpoint::save(stage_best_path, m, nullptr, info_for(si, epoch + 1));
          }
        } else {
          ++stage_state.wait;
          // Keras semantics: stop once `patience` epochs in a row brought no improvement.
          if (stage_state.wait >= std::max<int64_t>(es.patience, 1)) {
            stage_state.stopped = true;
            line += "  (early stop: " + es.monitor + " did not improve for " + std::to_string(stage_state.wait) + " epochs)";
          }
        }
      }
      log::info(line + (new_best ? "  *best*" : ""));

      bool stage_over = epoch + 1 == st.epochs || stage_state.stopped;
      if (stage_over && st.early_stopping.enabled && st.early_stopping.restore_best && !stage_best.empty()) {
        m.load_state(stage_best, "the stage's best weights");
        log::info("stage '" + st.name + "': restored the weights of its best epoch (" + st.early_stopping.monitor + " " +
                  fmt(stage_state.best) + ")");
      }
      if (log::is_output_rank()) {
        if (new_best) checkpoint::save(best_path, m, nullptr, info_for(si, epoch + 1));
        // After the stage's last epoch, last.pt points at the next stage's start.
        if (stage_over) {
          auto saved_state = stage_state;
          stage_state = {};
          checkpoint::save(last_path, m, nullptr, info_for(si + 1, 0));
          stage_state = saved_state;
        } else {
          checkpoint::save(last_path, m, optimizer.get(), info_for(si, epoch + 1));
        }
        write_logs(dir, history);
        report_skipped();
        if (tb) {
          add_epoch_scalars(*tb, entry, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
          tb->flush();
        }
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
  if (log::is_output_rank() && fs::exists(stage_best_path)) fs::remove(stage_best_path);
  return r;
}

}  // namespace tltrain::train
