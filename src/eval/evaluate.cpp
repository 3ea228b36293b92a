#include "tltrain/eval/evaluate.h"

#include <torch/torch.h>

#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/threads.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/model/inference.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/side_by_side.h"

namespace tltrain::eval {

namespace {

ClassificationReport multilabel_report(const model::Predictions& p, const std::vector<std::string>& classes, double threshold) {
  const double loss = p.labels.size(0) > 0 ? torch::binary_cross_entropy_with_logits(p.logits, p.labels).item<double>() : 0.0;
  const auto probs = torch::sigmoid(p.logits).contiguous();
  const auto targets = p.labels.gt(0.5).to(torch::kUInt8).contiguous();
  return evaluate_multilabel({probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel()},
                             {targets.data_ptr<uint8_t>(), targets.data_ptr<uint8_t>() + targets.numel()}, classes, loss, threshold);
}

}  // namespace

ClassificationReport evaluate_checkpoint(const EvalOptions& o) {
  const torch::Device device = model::resolve_device(o.device);
  if (o.threads > 0) set_intra_op_threads(o.threads);
  auto ck = checkpoint::load(o.checkpoint, device);
  const config::RunConfig& cfg = ck.config;
  const std::vector<std::string>& classes = ck.classes;

  data::Dataset ds;
  data::SkippedLog skipped;
  if (!o.data.empty()) {
    ds = data::scan_source(o.data);
    // Classes are matched by name: a folder may hold a subset of the trained classes.
    for (const auto& c : ds.classes)
      TLTRAIN_CHECK(std::find(classes.begin(), classes.end(), c) != classes.end(), ErrorKind::Data,
                    "'" + o.data + "' has class '" + c + "' that the checkpoint was not trained on; its classes are " +
                        config::json(classes).dump());
    auto index_of = [&](int64_t k) { return std::find(classes.begin(), classes.end(), ds.classes[static_cast<size_t>(k)]) - classes.begin(); };
    for (auto& s : ds.samples) {
      if (s.label >= 0) s.label = index_of(s.label);
      for (auto& k : s.labels) k = index_of(k);
    }
    ds.classes = classes;
    skipped.add_scan("eval", ds.skipped);
  } else {
    auto both = data::load_datasets(cfg.data, static_cast<uint64_t>(cfg.seed));
    TLTRAIN_CHECK(both.has_val, ErrorKind::Usage, "the run has no validation data; pass --data DIR");
    ds = both.val;
    if (!both.val_is_split) skipped.add_scan("val", ds.skipped);
  }
  auto m = checkpoint::classifier_from(ck, device);
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.threads = threads_or_cores(o.threads);
  lo.pin_memory = device.is_cuda();
  const bool multilabel = cfg.model.head.output == config::HeadOutput::MultiLabel;
  lo.multi_hot_classes = multilabel ? static_cast<int64_t>(classes.size()) : 0;
  data::Loader loader(ds.samples, data::resolve_preprocess(cfg.data, m.meta().image_spec()), cfg.data.augment, data::Mode::Eval, lo);
  auto p = model::predict(m, loader, device.is_cuda() ? 0 : 8);
  if (multilabel) {
    auto report = multilabel_report(p, classes, cfg.model.head.threshold);
    skipped.add_bad(o.data.empty() ? "val" : "eval", loader.bad_images());
    report.skipped = std::move(skipped);
    return report;
  }
  auto [loss, acc] = model::loss_and_accuracy(p);
  auto probs = torch::softmax(p.logits, 1).contiguous();
  std::vector<float> pv(probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel());
  std::vector<int64_t> labels(p.labels.data_ptr<int64_t>(), p.labels.data_ptr<int64_t>() + p.labels.numel());
  std::vector<std::string> paths;
  for (int64_t i : p.indices) paths.push_back(ds.samples[static_cast<size_t>(i)].path);
  skipped.add_bad(o.data.empty() ? "val" : "eval", loader.bad_images());
  auto report = evaluate(pv, labels, classes, paths, loss, o.topk, cfg.model.head.threshold);
  report.skipped = std::move(skipped);
  return report;
}

}  // namespace tltrain::eval
