#include "tltrain/config/run_config.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

namespace fs = std::filesystem;

namespace tltrain::config {

std::string TrainableSpec::describe() const {
  std::ostringstream ss;
  switch (kind) {
    case Kind::Head: return "head only";
    case Kind::All: return "all";
    case Kind::Fraction: ss << "top " << fraction * 100 << "% of blocks"; return ss.str();
    case Kind::Blocks: ss << "top " << blocks << " block" << (blocks == 1 ? "" : "s"); return ss.str();
    case Kind::From: return "from " + from;
    case Kind::Layers: ss << "last " << layers << " layer" << (layers == 1 ? "" : "s"); return ss.str();
    case Kind::FreezeFirst: ss << "all but the first " << layers << " layer" << (layers == 1 ? "" : "s"); return ss.str();
  }
  return "?";
}

json TrainableSpec::to_json() const {
  switch (kind) {
    case Kind::Head: return "head";
    case Kind::All: return "all";
    case Kind::Fraction: return json{{"fraction", fraction}};
    case Kind::Blocks: return json{{"blocks", blocks}};
    case Kind::From: return json{{"from", from}};
    case Kind::Layers: return json{{"layers", layers}};
    case Kind::FreezeFirst: return json{{"freeze_first", layers}};
  }
  return nullptr;
}

namespace {

const char* kTrainableHelp =
    "must be \"head\", \"all\", {\"fraction\": 0.2} (top share of blocks), {\"blocks\": 3} (top blocks), "
    "{\"layers\": 50} (the last layers), {\"freeze_first\": 100} (all but the first layers) "
    "or {\"from\": \"features.14\"} (a block or sub-module name from `tltrain inspect --layers`)";

TrainableSpec read_trainable(ObjectReader& r) {
  TrainableSpec spec;
  const std::string path = r.path_of("trainable");
  const json* v = r.raw("trainable");
  if (!v) {
    r.resolve("trainable", spec.to_json());
    return spec;
  }
  if (v->is_string()) {
    std::string s = v->get<std::string>();
    if (s == "head") spec.kind = TrainableSpec::Kind::Head;
    else if (s == "all") spec.kind = TrainableSpec::Kind::All;
    else r.problems().error(path, std::string(kTrainableHelp) + ", got \"" + s + "\"" +
                                      (s.find('.') != std::string::npos ? " (for a block name write {\"from\": \"" + s + "\"})" : ""));
  } else if (v->is_object() && v->size() == 1) {
    json sub_resolved;
    ObjectReader o(*v, sub_resolved, path, r.problems());
    if (o.has("fraction")) {
      spec.kind = TrainableSpec::Kind::Fraction;
      spec.fraction = o.number("fraction", 0.2, left_open(0.0, 1.0));
    } else if (o.has("blocks")) {
      spec.kind = TrainableSpec::Kind::Blocks;
      spec.blocks = o.integer("blocks", 0, ge(0));
    } else if (o.has("from")) {
      spec.kind = TrainableSpec::Kind::From;
      spec.from = o.string("from", "");
      if (spec.from.empty()) r.problems().error(path + ".from", "must name a block or sub-module, e.g. \"features.14\"");
    } else if (o.has("layers")) {
      spec.kind = TrainableSpec::Kind::Layers;
      spec.layers = o.integer("layers", 0, ge(0));
    } else if (o.has("freeze_first")) {
      spec.kind = TrainableSpec::Kind::FreezeFirst;
      spec.layers = o.integer("freeze_first", 0, ge(0));
    } else {
      r.problems().error(path, std::string(kTrainableHelp) + ", " + describe_value(*v));
    }
    o.finish();
  } else {
    std::string hint = v->is_number() ? " (a bare number is ambiguous: write {\"fraction\": x}, {\"blocks\": n} or {\"layers\": n})" : "";
    r.problems().error(path, std::string(kTrainableHelp) + ", " + describe_value(*v) + hint);
  }
  r.resolve("trainable", spec.to_json());
  return spec;
}

template <size_t N, class T>
std::array<T, N> to_array(const std::vector<T>& v) {
  std::array<T, N> a{};
  for (size_t i = 0; i < N && i < v.size(); ++i) a[i] = v[i];
  return a;
}

AugmentConfig read_augment(ObjectReader r) {
  AugmentConfig a;
  // random_resized_crop: false/null disables it, an object configures it.
  const json* rrc = r.raw("random_resized_crop");
  if (rrc && rrc->is_boolean()) {
    a.random_resized_crop.enabled = rrc->get<bool>();
  } else if (rrc && !rrc->is_object()) {
    r.problems().error(r.path_of("random_resized_crop"),
                       "must be true/false or {\"scale\": [lo, hi], \"ratio\": [lo, hi]}, " + describe_value(*rrc));
  }
  {
    json sub;
    static const json empty = json::object();
    ObjectReader c(rrc && rrc->is_object() ? *rrc : empty, sub, r.path_of("random_resized_crop"), r.problems());
    a.random_resized_crop.scale = to_array<2>(c.numbers("scale", {0.08, 1.0}, left_open(0.0, 1.0), {2}));
    a.random_resized_crop.ratio = to_array<2>(c.numbers("ratio", {3.0 / 4.0, 4.0 / 3.0}, gt(0.0), {2}));
    if (rrc && rrc->is_object()) a.random_resized_crop.enabled = c.boolean("enabled", true);
    c.finish();
    if (a.random_resized_crop.scale[0] > a.random_resized_crop.scale[1])
      r.problems().error(r.path_of("random_resized_crop.scale"), "lower bound must be <= upper bound");
    if (a.random_resized_crop.ratio[0] > a.random_resized_crop.ratio[1])
      r.problems().error(r.path_of("random_resized_crop.ratio"), "lower bound must be <= upper bound");
    if (a.random_resized_crop.enabled) {
      sub["enabled"] = true;
      r.resolve("random_resized_crop", sub);
    } else {
      r.resolve("random_resized_crop", false);
    }
  }
  a.horizontal_flip = r.boolean("horizontal_flip", true);
  a.vertical_flip = r.boolean("vertical_flip", false);
  a.rotation_range = r.number("rotation_range", 0.0, closed(0.0, 180.0));
  a.width_shift_range = r.number("width_shift_range", 0.0, closed(0.0, 1.0));
  a.height_shift_range = r.number("height_shift_range", 0.0, closed(0.0, 1.0));
  a.shear_range = r.number("shear_range", 0.0, closed(0.0, 89.0));
  // zoom_range: z means [1-z, 1+z] as in Keras; [lo, hi] is taken as is.
  const json* z = r.raw("zoom_range");
  if (z && z->is_number()) {
    double zz = z->get<double>();
    if (zz < 0.0 || zz >= 1.0) r.problems().error(r.path_of("zoom_range"), "must be in [0, 1) or [lo, hi], " + describe_value(*z));
    else a.zoom_range = {1.0 - zz, 1.0 + zz};
  } else if (z && z->is_array() && z->size() == 2 && (*z)[0].is_number() && (*z)[1].is_number() &&
             (*z)[0].get<double>() > 0 && (*z)[0].get<double>() <= (*z)[1].get<double>()) {
    a.zoom_range = {(*z)[0].get<double>(), (*z)[1].get<double>()};
  } else if (z) {
    r.problems().error(r.path_of("zoom_range"), "must be a number z in [0, 1) or a list [lo, hi] with 0 < lo <= hi, " + describe_value(*z));
  }
  r.resolve("zoom_range", json::array({a.zoom_range[0], a.zoom_range[1]}));
  a.fill_mode = r.pick("fill_mode", FillMode::Nearest);
  a.fill_value = r.number("fill_value", 0.0, closed(0.0, 255.0));
  a.brightness = r.number("brightness", 0.0, closed(0.0, 1.0));
  a.contrast = r.number("contrast", 0.0, closed(0.0, 1.0));
  a.saturation = r.number("saturation", 0.0, closed(0.0, 1.0));
  a.hue = r.number("hue", 0.0, closed(0.0, 0.5));
  a.channel_shift_range = r.number("channel_shift_range", 0.0, closed(0.0, 255.0));
  std::vector<std::string> default_order;
  for (AugmentStep step : a.order) default_order.push_back(name_of(step));
  a.order.clear();
  for (const auto& name : r.strings("order", default_order)) {
    AugmentStep step;
    if (parse_name(name, step)) a.order.push_back(step);
    else r.problems().error(r.path_of("order"), "unknown step \"" + name + "\"; steps are " + choices<AugmentStep>(", "));
  }
  return a;
}

std::string absolute(const std::string& p) { return p.empty() ? p : fs::absolute(p).lexically_normal().string(); }

/// data.normalization_stats: null (fit computes them for "dataset") or {"mean": [r, g, b], "std": [r, g, b]}.
std::optional<NormalizationStats> read_normalization_stats(ObjectReader& r, Normalization normalization) {
  const json* v = r.raw("normalization_stats");
  if (!v || v->is_null()) {
    r.resolve("normalization_stats", nullptr);
    return std::nullopt;
  }
  if (!v->is_object()) {
    r.problems().error(r.path_of("normalization_stats"), "must be null or {\"mean\": [r, g, b], \"std\": [r, g, b]} on 0..1 pixels, " + describe_value(*v));
    return std::nullopt;
  }
  if (normalization != Normalization::Dataset)
    r.problems().warning(r.path_of("normalization_stats"), "is used by normalization \"dataset\" only");
  ObjectReader s = r.object("normalization_stats");
  NormalizationStats stats;
  stats.mean = to_array<3>(s.numbers("mean", {0.0, 0.0, 0.0}, closed(0.0, 1.0), {3}));
  stats.std = to_array<3>(s.numbers("std", {1.0, 1.0, 1.0}, left_open(0.0, 1.0), {3}));
  return stats;
}

DataConfig read_data(ObjectReader r) {
  DataConfig d;
  d.train = absolute(r.string("train", ""));
  if (d.train.empty()) r.problems().error(r.path_of("train"), "is required: a folder with one subfolder per class, or a CSV file of path,label");
  r.resolve("train", d.train);
  d.val = absolute(r.string("val", ""));
  r.resolve("val", d.val.empty() ? json(nullptr) : json(d.val));
  d.validation_split = r.number("validation_split", 0.0, Range{0.0, 1.0, false, true});
  if (!d.val.empty() && d.validation_split > 0)
    r.problems().error(r.path_of("validation_split"), "set either data.val or data.validation_split, not both");
  const json* isz = r.raw("image_size");
  if (isz && isz->is_string() && isz->get<std::string>() == "backbone") {
    r.resolve("image_size", "backbone");
  } else if (isz) {
    // One number means a square, as the user guide says and torchvision's Resize(int) reads it.
    auto v = isz->is_number() ? std::vector<int64_t>{r.integer("image_size", 224, closed(8, 4096))}
                              : r.integers("image_size", {224, 224}, closed(8, 4096), {1, 2});
    d.image_size = std::array<int64_t, 2>{v[0], v.size() == 2 ? v[1] : v[0]};
    r.resolve("image_size", json::array({(*d.image_size)[0], (*d.image_size)[1]}));
  } else {
    r.raw("image_size");
    r.resolve("image_size", "backbone");
  }
  d.resize = r.integer("resize", 0, closed(0, 8192));
  d.interpolation = r.pick("interpolation", Interpolation::Backbone);
  d.normalization = r.pick("normalization", Normalization::Backbone);
  d.normalization_stats = read_normalization_stats(r, d.normalization);
  d.batch_size = r.integer("batch_size", 32, closed(1, 65536));
  d.on_bad_image = r.pick("on_bad_image", OnBadImage::Skip);
  d.max_pixels = r.integer("max_pixels", d.max_pixels, gt(0));
  d.augment = read_augment(r.object("augment"));
  return d;
}

ModelConfig read_model(ObjectReader r, bool require_backbone) {
  ModelConfig m;
  m.backbone = absolute(r.string("backbone", ""));
  if (m.backbone.empty() && require_backbone)
    r.problems().error(r.path_of("backbone"), "is required: a .pt file made by scripts/export_backbone.py");
  r.resolve("backbone", m.backbone);
  m.features_from = r.string("features_from", "");
  if (m.features_from.empty()) r.resolve("features_from", nullptr);
  ObjectReader h = r.object("head");
  m.head.pooling = h.pick("pooling", Pooling::Avg);
  m.head.hidden = h.integers("hidden", {}, closed(1, 1 << 20));
  m.head.activation = h.pick("activation", Activation::Relu);
  m.head.dropout = h.number("dropout", 0.0, Range{0.0, 1.0, false, true});
  m.head.output = h.pick("output", HeadOutput::Softmax);
  m.head.threshold = h.number("threshold", 0.5, Range{0.0, 1.0, true, true});
  if (m.head.output == HeadOutput::Softmax) {
    if (h.has("threshold")) h.problems().warning(h.path_of("threshold"), "is used by outputs \"sigmoid\" and \"multilabel\" only; softmax predicts the top class");
    h.unresolve("threshold");
  }
  return m;
}

OptimizerConfig read_optimizer(ObjectReader r) {
  OptimizerConfig o;
  o.name = r.pick("name", Optimizer::Adam);
  // LBFGS's rate is the line search's first step: 1, as torch's and scipy's.
  o.lr = r.number("lr", o.name == Optimizer::Sgd ? 1e-2 : o.name == Optimizer::Lbfgs ? 1.0 : 1e-3, ge(0.0));
  o.weight_decay = r.number("weight_decay", 0.0, ge(0.0));
  const bool sgd = o.name == Optimizer::Sgd, rmsprop = o.name == Optimizer::RmsProp,
             adam_like = o.name == Optimizer::Adam || o.name == Optimizer::AdamW;
  o.momentum = r.number("momentum", sgd ? 0.9 : 0.0, Range{0.0, 1.0, false, true});
  o.nesterov = r.boolean("nesterov", false);
  if (o.nesterov && o.momentum <= 0) r.problems().error(r.path_of("nesterov"), "needs momentum > 0");
  o.betas = to_array<2>(r.numbers("betas", {0.9, 0.999}, Range{0.0, 1.0, false, true}, {2}));
  o.eps = r.number("eps", 1e-8, gt(0.0));
  o.alpha = r.number("alpha", 0.99, Range{0.0, 1.0, false, true});
  const bool lbfgs = o.name == Optimizer::Lbfgs;
  o.max_iter = r.integer("max_iter", 20, closed(1, 100000));
  o.history_size = r.integer("history_size", 100, closed(1, 10000));
  const std::pair<const char*, bool> uses[] = {{"momentum", sgd || rmsprop}, {"nesterov", sgd},      {"betas", adam_like},
                                               {"eps", adam_like || rmsprop}, {"alpha", rmsprop},   {"max_iter", lbfgs},
                                               {"history_size", lbfgs}};
  for (const auto& [key, used] : uses) {
    if (used) continue;
    if (r.has(key)) r.problems().warning(r.path_of(key), "is ignored by optimizer " + name_of(o.name));
    // The resolved config shows only what this optimizer uses, so that a stored config read
    // back (resume, eval, finetune) does not warn about defaults the user never wrote.
    r.unresolve(key);
  }
  return o;
}

ScheduleConfig read_schedule(ObjectReader r) {
  ScheduleConfig s;
  s.name = r.pick("name", Schedule::Constant);
  s.warmup_steps = r.integer("warmup_steps", 0, ge(0));
  s.step_epochs = r.integer("step_epochs", 10, ge(1));
  s.gamma = r.number("gamma", 0.1, gt(0.0));
  s.decay_steps = r.integer("decay_steps", 1000, ge(1));
  s.decay_rate = r.number("decay_rate", 0.9, gt(0.0));
  s.staircase = r.boolean("staircase", false);
  s.min_lr = r.number("min_lr", 0.0, ge(0.0));
  const std::pair<const char*, Schedule> owners[] = {{"step_epochs", Schedule::Step},        {"gamma", Schedule::Step},
                                                     {"decay_steps", Schedule::Exponential}, {"decay_rate", Schedule::Exponential},
                                                     {"staircase", Schedule::Exponential},   {"min_lr", Schedule::Cosine}};
  for (const auto& [key, owner] : owners) {
    if (s.name == owner) continue;
    if (r.has(key)) r.problems().warning(r.path_of(key), "is ignored by schedule " + name_of(s.name));
    r.unresolve(key);  // as for the optimizer: a stored config must read back without warnings
  }
  return s;
}

/// Key "distill" of R (reading IN): absent → DEF; null/false → off; an object → its keys over DEF's.
DistillConfig read_distill(ObjectReader& r, const json& object, const DistillConfig& def) {
  const json* in = r.raw("distill");
  if (!object.contains("distill")) {
    r.resolve("distill", def.enabled() ? json{{"teacher", def.teacher}, {"temperature", def.temperature}, {"alpha", def.alpha}} : json(nullptr));
    return def;
  }
  if (!in || (in->is_boolean() && !in->get<bool>())) {  // raw() reads null as absent
    r.resolve("distill", nullptr);
    return {};
  }
  if (!in->is_object()) {
    r.problems().error(r.path_of("distill"), "must be null or {\"teacher\": \"teacher.pt\", \"temperature\": 10, \"alpha\": 0.9}, " +
                                                 describe_value(*in));
    return {};
  }
  json resolved = json::object();
  ObjectReader o(*in, resolved, r.path_of("distill"), r.problems());
  DistillConfig d;
  d.teacher = absolute(o.string("teacher", def.teacher));
  o.resolve("teacher", d.teacher);
  if (d.teacher.empty()) r.problems().error(r.path_of("distill.teacher"), "is required: a tltrain checkpoint or exported model file");
  d.temperature = o.number("temperature", def.temperature, left_open(0.0, 1000.0));
  d.alpha = o.number("alpha", def.alpha, closed(0.0, 1.0));
  o.finish();
  r.resolve("distill", resolved);
  return d;
}

StageConfig read_stage(const json& in, json& resolved, const std::string& path, Problems& problems, size_t index, Precision precision,
                       const DistillConfig& distill) {
  StageConfig st;
  ObjectReader r(in, resolved, path, problems);
  st.name = r.string("name", "stage" + std::to_string(index + 1));
  st.epochs = r.integer("epochs", 1, closed(0, 100000));
  st.trainable = read_trainable(r);
  st.batch_norm = r.pick("batch_norm", BatchNormPolicy::Frozen);
  st.optimizer = read_optimizer(r.object("optimizer"));
  st.schedule = read_schedule(r.object("schedule"));
  if (st.schedule.name == Schedule::Cosine && st.schedule.min_lr > st.optimizer.lr)
    problems.error(r.path_of("schedule.min_lr"), "must be <= the optimizer's lr (" + std::to_string(st.optimizer.lr) + ")");
  st.backbone_lr_mult = r.number("backbone_lr_mult", 1.0, ge(0.0));
  st.label_smoothing = r.number("label_smoothing", 0.0, Range{0.0, 1.0, false, true});
  st.loss = r.pick("loss", Loss::CrossEntropy);
  if (st.loss == Loss::Hinge && r.has("label_smoothing"))
    problems.warning(r.path_of("label_smoothing"), "is ignored by loss \"hinge\"");
  st.steps_per_epoch = r.integer("steps_per_epoch", 0, closed(0, 100000000));
  st.validation_steps = r.integer("validation_steps", 0, closed(0, 100000000));
  st.precision = r.pick("precision", precision);
  st.distill = read_distill(r, in, distill);
  const json* cw = r.raw("class_weights");
  if (!cw) {
    r.resolve("class_weights", nullptr);
  } else if (cw->is_string() && cw->get<std::string>() == "auto") {
    st.class_weights_mode = StageConfig::ClassWeights::Auto;
    r.resolve("class_weights", "auto");
  } else if (cw->is_array()) {
    st.class_weights = r.numbers("class_weights", {}, gt(0.0));
    st.class_weights_mode = StageConfig::ClassWeights::List;
  } else {
    problems.error(r.path_of("class_weights"), "must be null, \"auto\" or a list of positive weights, one per class, " + describe_value(*cw));
  }
  const json* es = r.raw("early_stopping");
  json es_resolved = json::object();
  static const json empty = json::object();
  {
    ObjectReader e(es && es->is_object() ? *es : empty, es_resolved, r.path_of("early_stopping"), problems);
    if (es && !es->is_object() && !es->is_boolean())
      problems.error(r.path_of("early_stopping"), "must be null, true/false or an object {\"patience\": 3, ...}, " + describe_value(*es));
    bool on = es && (es->is_object() || (es->is_boolean() && es->get<bool>()));
    st.early_stopping.enabled = e.boolean("enabled", on);
    st.early_stopping.monitor = e.pick("monitor", Metric::ValLoss);
    st.early_stopping.patience = e.integer("patience", 3, ge(0));
    st.early_stopping.min_delta = e.number("min_delta", 0.0, ge(0.0));
    st.early_stopping.restore_best = e.boolean("restore_best", true);
  }
  r.resolve("early_stopping", es_resolved);
  {
    bool head_only = st.trainable.kind == TrainableSpec::Kind::Head;
    const json* fc = r.raw("feature_cache");
    json fc_resolved = json::object();
    ObjectReader f(fc && fc->is_object() ? *fc : empty, fc_resolved, r.path_of("feature_cache"), problems);
    if (fc && !fc->is_object() && !fc->is_boolean())
      problems.error(r.path_of("feature_cache"), "must be true/false or {\"enabled\": true, \"views\": 0}, " + describe_value(*fc));
    bool on = fc && fc->is_boolean() ? fc->get<bool>() : head_only;
    st.feature_cache = f.boolean("enabled", on);
    st.cache_views = f.integer("views", 0, closed(0, 1000));
    if (st.feature_cache && !head_only)
      problems.error(r.path_of("feature_cache"), "needs a frozen backbone (trainable: \"head\"); set it to false for this stage");
    f.finish();
    r.resolve("feature_cache", fc_resolved);
  }
  // LBFGS needs the same loss at every evaluation of a step: the whole training set at once.
  if (st.optimizer.name == Optimizer::Lbfgs && !st.feature_cache)
    problems.error(r.path_of("optimizer.name"), "\"lbfgs\" solves the head full-batch on the feature cache: use trainable \"head\" "
                                                "with feature_cache on, or another optimizer for this stage");
  if (st.optimizer.name == Optimizer::Lbfgs && st.steps_per_epoch > 0)
    problems.error(r.path_of("steps_per_epoch"), "does not apply to \"lbfgs\", whose epoch is one full-batch step: remove it");
  return st;
}

LossScaleConfig read_loss_scale(ObjectReader& r) {
  LossScaleConfig ls;
  const json* in = r.raw("loss_scale");
  static const json empty = json::object();
  json resolved = json::object();
  if (in && !in->is_object() && !in->is_boolean() && !(in->is_string() && in->get<std::string>() == "auto"))
    r.problems().error(r.path_of("loss_scale"), "must be \"auto\" (on for fp16 stages), true/false or an object "
                                                "{\"enabled\": true, \"init\": 65536, \"growth_interval\": 2000}, " + describe_value(*in));
  ObjectReader o(in && in->is_object() ? *in : empty, resolved, r.path_of("loss_scale"), r.problems());
  const json* enabled = in && in->is_object() ? o.raw("enabled") : in;
  if (enabled && enabled->is_boolean())
    ls.mode = enabled->get<bool>() ? LossScaleConfig::Mode::On : LossScaleConfig::Mode::Off;
  else if (enabled && !(enabled->is_string() && enabled->get<std::string>() == "auto"))
    r.problems().error(r.path_of("loss_scale.enabled"), "must be \"auto\" or true/false, " + describe_value(*enabled));
  o.resolve("enabled", ls.mode == LossScaleConfig::Mode::Auto ? json("auto") : json(ls.mode == LossScaleConfig::Mode::On));
  ls.dynamic = o.boolean("dynamic", true);
  // fp32's largest finite value bounds the scale: beyond it every loss overflows.
  ls.init = o.number("init", 65536.0, Range{1e-30, 3.4e38, false, false});
  ls.growth_factor = o.number("growth_factor", 2.0, closed(1.0, 1e6));
  ls.backoff_factor = o.number("backoff_factor", 0.5, left_open(0.0, 1.0));
  ls.growth_interval = o.integer("growth_interval", 2000, closed(1, 1000000000));
  o.finish();
  r.resolve("loss_scale", resolved);
  return ls;
}

}  // namespace

bool AugmentConfig::random() const {
  const auto has = [&](AugmentStep s) { return std::find(order.begin(), order.end(), s) != order.end(); };
  const bool affine = rotation_range > 0 || width_shift_range > 0 || height_shift_range > 0 || shear_range > 0 ||
                      zoom_range[0] != 1.0 || zoom_range[1] != 1.0;
  const bool color = brightness > 0 || contrast > 0 || saturation > 0 || hue > 0 || channel_shift_range > 0;
  return (has(AugmentStep::Crop) && random_resized_crop.enabled) || (has(AugmentStep::Affine) && affine) ||
         (has(AugmentStep::Flip) && (horizontal_flip || vertical_flip)) || (has(AugmentStep::Color) && color);
}

RunConfig parse_run_config(const json& j, const std::string& source, const ParseOptions& options) {
  RunConfig c;
  c.source = source;
  Problems problems;
  json resolved = json::object();
  {
    ObjectReader r(j, resolved, "", problems);
    std::string stem = fs::path(source).stem().string();
    c.name = r.string("name", stem.empty() ? "run" : stem);
    c.seed = r.integer("seed", 42, closed(0, 4294967295.0));
    c.device = r.pick("device", Device::Auto);
    {
      ObjectReader t = r.object("threads");
      c.intra_op_threads = t.integer("intra_op", 0, closed(0, 1024));
      c.loader_threads = t.integer("loader", 0, closed(0, 1024));
    }
    c.output_dir = absolute(r.string("output_dir", "runs/" + c.name));
    r.resolve("output_dir", c.output_dir);
    c.monitor = r.pick("monitor", Metric::ValAccuracy);
    c.micro_batch = r.integer("micro_batch", 0, closed(0, 65536));
    c.feature_cache_memory_mb = r.number("feature_cache_memory_mb", 0, closed(0, 1 << 30));
    c.precision = r.pick("precision", Precision::Fp32);
    c.loss_scale = read_loss_scale(r);
    c.distill = read_distill(r, j, {});
    c.data = read_data(r.object("data"));
    c.model = read_model(r.object("model"), !options.data_only);
    const json* stages = r.raw("stages");
    json stages_resolved = json::array();
    if (!stages && options.data_only) {
      // the data commands train nothing
    } else if (!stages || !stages->is_array() || stages->empty()) {
      problems.error("stages", "must be a non-empty list of stages, e.g. [{\"epochs\": 5, \"trainable\": \"head\"}]" +
                                   (stages ? ", " + describe_value(*stages) : std::string()));
    } else {
      for (size_t i = 0; i < stages->size(); ++i) {
        json sr = json::object();
        c.stages.push_back(read_stage((*stages)[i], sr, "stages[" + std::to_string(i) + "]", problems, i, c.precision, c.distill));
        stages_resolved.push_back(sr);
      }
    }
    r.resolve("stages", stages_resolved);
  }
  // Cross-key rules, after every key has been read.
  bool has_val = !c.data.val.empty() || c.data.validation_split > 0;
  if (!has_val && (c.monitor == Metric::ValLoss || c.monitor == Metric::ValAccuracy))
    problems.error("monitor", "is \"" + name_of(c.monitor) + "\" but there is no validation data: set data.val or data.validation_split, or monitor \"loss\"/\"accuracy\"");
  for (size_t i = 0; i < c.stages.size(); ++i) {
    if (c.stages[i].loss == Loss::Hinge && c.model.head.output != HeadOutput::Softmax)
      problems.error("stages[" + std::to_string(i) + "].loss", "\"hinge\" is the multi-class SVM loss over one score per class: it needs "
                     "model.head.output \"softmax\" (it is \"" + name_of(c.model.head.output) + "\")");
    if (c.model.head.output == HeadOutput::MultiLabel && c.stages[i].class_weights_mode != StageConfig::ClassWeights::None)
      problems.error("stages[" + std::to_string(i) + "].class_weights",
                     "weighs single-label classes; with model.head.output \"multilabel\" an image has several, set it to null");
    const std::string at = "stages[" + std::to_string(i) + "]";
    // LBFGS's line search compares losses of one step: a skipped, rescaled step breaks it.
    if (c.stages[i].optimizer.name == Optimizer::Lbfgs && c.loss_scale.on_for(c.stages[i].precision))
      problems.error(at + ".precision", "\"lbfgs\" cannot train with loss scaling (its line search compares unscaled losses): "
                                       "use precision \"fp32\" or \"bf16\" for this stage, or loss_scale false");
    if (c.stages[i].precision == Precision::Fp16 && c.device == Device::Cpu)
      problems.error(at + ".precision", "\"fp16\" autocast runs on CUDA only (LibTorch's CPU autocast computes in bf16): use "
                                       "\"bf16\" on device \"cpu\"");
    if (c.stages[i].distill.enabled() && c.model.head.output == HeadOutput::MultiLabel)
      problems.error(at + ".distill", "matches one softmax over the classes; a \"multilabel\" head has a sigmoid each: set it to null");
    if (c.stages[i].distill.enabled() && c.stages[i].loss == Loss::Hinge)
      problems.error(at + ".distill", "adds a cross-entropy to the teacher's probabilities; loss \"hinge\" has none: use cross_entropy");
    const auto& es = c.stages[i].early_stopping;
    if (es.enabled && !has_val && (es.monitor == Metric::ValLoss || es.monitor == Metric::ValAccuracy))
      problems.error("stages[" + std::to_string(i) + "].early_stopping.monitor",
                     "is \"" + name_of(es.monitor) + "\" but there is no validation data: set data.val or data.validation_split");
  }
  problems.throw_if_errors(source);
  c.resolved = std::move(resolved);
  c.warnings = problems.warnings();
  return c;
}

json parse_json_file(const std::string& path) {
  std::string text = read_file(path, "config file");
  try {
    return json::parse(text, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    // nlohmann reports a byte offset; users want a line and column.
    size_t line = 1, col = 1;
    for (size_t i = 0; i < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') { ++line; col = 1; } else { ++col; }
    }
    std::string what = e.what();
    auto pos = what.find("syntax error");
    throw Error(ErrorKind::Usage, path + ":" + std::to_string(line) + ":" + std::to_string(col) +
                                      ": invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos)));
  }
}

void apply_override(json& j, const std::string& assignment) {
  auto eq = assignment.find('=');
  TLTRAIN_CHECK(eq != std::string::npos && eq > 0, ErrorKind::Usage,
                "--set '" + assignment + "': expected KEY=VALUE, e.g. --set stages[1].optimizer.lr=1e-4");
  std::string key = assignment.substr(0, eq), value_text = assignment.substr(eq + 1);
  json value;
  try {
    value = json::parse(value_text);
  } catch (const json::parse_error&) {
    value = value_text;  // bare words are strings: --set device=cpu
  }
  json* node = &j;
  size_t i = 0;
  std::string walked;
  auto bad = [&](const std::string& why) {
    TLTRAIN_FAIL(ErrorKind::Usage, "--set '" + assignment + "': " + why);
  };
  while (i < key.size()) {
    if (key[i] == '[') {
      size_t close = key.find(']', i);
      if (close == std::string::npos) bad("unclosed '['");
      std::string idx = key.substr(i + 1, close - i - 1);
      if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) bad("index '" + idx + "' is not a number");
      size_t n = std::stoul(idx);
      if (!node->is_array()) bad("'" + walked + "' is not a list");
      if (n >= node->size()) bad("'" + walked + "' has " + std::to_string(node->size()) + " elements, no [" + idx + "]");
      node = &(*node)[n];
      walked += "[" + idx + "]";
      i = close + 1;
      if (i < key.size() && key[i] == '.') ++i;
    } else {
      size_t end = key.find_first_of(".[", i);
      std::string name = key.substr(i, end == std::string::npos ? std::string::npos : end - i);
      if (name.empty()) bad("empty key name");
      if (node->is_null()) *node = json::object();
      if (!node->is_object()) bad("'" + walked + "' is not an object");
      node = &(*node)[name];
      walked += (walked.empty() ? "" : ".") + name;
      i = end == std::string::npos ? key.size() : end;
      if (i < key.size() && key[i] == '.') ++i;
    }
  }
  *node = value;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides, const ParseOptions& options) {
  json j = parse_json_file(path);
  for (const auto& o : overrides) apply_override(j, o);
  return parse_run_config(j, path, options);
}

}  // namespace tltrain::config
