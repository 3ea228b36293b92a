#include "tltrain/eval/evaluate.h"

#include <torch/torch.h>

#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/threads.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/model/inference.h"
#include "tltrain/checkpoint/checkpoint.h"

namespace tltrain::eval {

ClassificationReport evaluate_checkpoint(const EvalOptions& o) {
  const torch::Device device = model::resolve_device(o.device);
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
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
    for (auto& s : ds.samples)
      s.label = std::find(classes.begin(), classes.end(), ds.classes[static_cast<size_t>(s.label)]) - classes.begin();
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
  data::Loader loader(ds.samples, data::resolve_preprocess(cfg.data, m.meta().image_spec()), cfg.data.augment, data::Mode::Eval, lo);
  auto p = model::predict(m, loader, device.is_cuda() ? 0 : 8);
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
