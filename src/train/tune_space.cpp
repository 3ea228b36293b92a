// tltrain tune's search space (train/tune.h): candidates drawn from the seed, and each one's run
// config. Pure: no training and no files here.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <tuple>

#include "tltrain/core/error.h"
#include "tltrain/train/tune.h"

namespace tltrain::train {

using config::json;

namespace {

/// Uniform in [0, 1) from 53 bits: the same on every standard library (its distributions are not).
double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

template <typename T>
const T& pick(const std::vector<T>& choices, std::mt19937_64& rng) {
  return choices[std::min(choices.size() - 1, static_cast<size_t>(uniform(rng) * static_cast<double>(choices.size())))];
}

double log_uniform(const std::pair<double, double>& range, std::mt19937_64& rng) {
  return std::exp(std::log(range.first) + uniform(rng) * (std::log(range.second) - std::log(range.first)));
}

/// The fine-tune stage a config's second stage gives, or the tutorials' when it has one stage.
json finetune_template(const json& base) {
  const json& stages = base.at("stages");
  if (stages.size() >= 2) return stages.at(1);
  return {{"name", "finetune"}, {"epochs", 5}, {"trainable", {{"fraction", 0.2}}}, {"optimizer", {{"name", "sgd"}, {"lr", 1e-4}}}};
}

/// AUGMENT's ranges scaled by S: the random crop's area and the zoom reach further from 1, the
/// others (degrees, shifts, jitter) grow in proportion; flips and fill stay.
void scale_augment(json& augment, double s) {
  // Each within the range the config accepts (run_config.cpp), so a scaled config stays valid.
  static const std::map<std::string, double> most{{"rotation_range", 180}, {"width_shift_range", 1}, {"height_shift_range", 1},
                                                  {"shear_range", 89},     {"brightness", 1},        {"contrast", 1},
                                                  {"saturation", 1},       {"hue", 0.5},             {"channel_shift_range", 255}};
  for (const auto& [k, top] : most)
    if (augment.contains(k) && augment[k].is_number()) augment[k] = std::min(top, augment[k].get<double>() * s);
  if (augment.contains("zoom_range") && augment["zoom_range"].is_array() && augment["zoom_range"].size() == 2) {
    const double lo = augment["zoom_range"][0].get<double>(), hi = augment["zoom_range"][1].get<double>();
    augment["zoom_range"] = {std::max(0.01, 1 - (1 - lo) * s), 1 + (hi - 1) * s};
  }
  json& rrc = augment["random_resized_crop"];
  if (rrc.is_object() && rrc.contains("scale") && rrc["scale"].is_array() && rrc["scale"].size() == 2) {
    const double hi = rrc["scale"][1].get<double>();
    rrc["scale"][0] = std::clamp(hi - (hi - rrc["scale"][0].get<double>()) * s, 0.01, hi);
  }
}

}  // namespace

double parse_duration(const std::string& value) {
  static const std::map<std::string, double> unit{{"", 1}, {"s", 1}, {"m", 60}, {"min", 60}, {"h", 3600}};
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const auto it = used > 0 ? unit.find(value.substr(used)) : unit.end();
  TLTRAIN_CHECK(it != unit.end() && v > 0 && std::isfinite(v), ErrorKind::Usage,
                "--budget '" + value + "': give a positive duration such as 90s, 30m or 1.5h (a bare number is seconds)");
  return v * it->second;
}

json Candidate::to_json() const {
  return {{"head_lr", head_lr},     {"head_epochs", head_epochs},           {"unfreeze", unfreeze},
          {"finetune_lr", finetune_lr}, {"optimizer", optimizer},          {"backbone_lr_mult", backbone_lr_mult},
          {"label_smoothing", label_smoothing}, {"augment", augment},             {"finetune_epochs", finetune_epochs}};
}

Candidate Candidate::from_json(const json& j) {
  Candidate c;
  c.head_lr = j.at("head_lr").get<double>();
  c.head_epochs = j.at("head_epochs").get<int64_t>();
  c.unfreeze = j.at("unfreeze").get<double>();
  c.finetune_lr = j.at("finetune_lr").get<double>();
  c.optimizer = j.at("optimizer").get<std::string>();
  c.backbone_lr_mult = j.at("backbone_lr_mult").get<double>();
  c.label_smoothing = j.at("label_smoothing").get<double>();
  c.augment = j.at("augment").get<double>();
  c.finetune_epochs = j.at("finetune_epochs").get<int64_t>();
  return c;
}

Candidate Candidate::of_config(const config::RunConfig& cfg) {
  Candidate c;
  c.head_lr = cfg.stages.at(0).optimizer.lr;
  c.head_epochs = cfg.stages.at(0).epochs;
  c.augment = 1;
  c.finetune_epochs = finetune_template(cfg.resolved).value("epochs", 5);
  if (cfg.stages.size() < 2) return c;  // unfreeze 0: the head alone, as the config
  const config::StageConfig& ft = cfg.stages[1];
  c.unfreeze = -1;
  c.finetune_lr = ft.optimizer.lr;
  c.optimizer = config::name_of(ft.optimizer.name);
  c.backbone_lr_mult = ft.backbone_lr_mult;
  c.label_smoothing = ft.label_smoothing;
  return c;
}

SearchSpace SearchSpace::around(const config::RunConfig& cfg, double head_lr_centre) {
  TLTRAIN_CHECK(!cfg.stages.empty() && cfg.stages[0].trainable.kind == config::TrainableSpec::Kind::Head, ErrorKind::Usage,
                "tune searches the two-stage recipe (the head alone, then the top of the backbone): stages[0] of '" + cfg.source +
                    "' must have \"trainable\": \"head\"");
  SearchSpace s;
  const double h = head_lr_centre > 0 ? head_lr_centre : cfg.stages[0].optimizer.lr;
  TLTRAIN_CHECK(h > 0, ErrorKind::Usage, "tune searches rates around the head stage's: stages[0].optimizer.lr must be > 0");
  s.head_lr = {h / 10, h * 10};
  const int64_t e = cfg.stages[0].epochs;
  s.head_epochs = {std::max<int64_t>(1, e / 2), e, 2 * e};
  s.head_epochs.erase(std::unique(s.head_epochs.begin(), s.head_epochs.end()), s.head_epochs.end());
  const json ft = finetune_template(cfg.resolved);
  const double f = ft.at("optimizer").value("lr", 1e-4);
  TLTRAIN_CHECK(f > 0, ErrorKind::Usage, "tune searches rates around the fine-tune stage's: stages[1].optimizer.lr must be > 0");
  s.finetune_lr = {f / 10, f * 10};
  // lbfgs trains a head on cached features only; a fine-tune stage takes the others.
  if (ft.at("optimizer").value("name", "sgd") != "lbfgs") s.optimizers = {ft.at("optimizer").value("name", "sgd")};
  for (const char* o : {"adam", "sgd"})
    if (std::find(s.optimizers.begin(), s.optimizers.end(), o) == s.optimizers.end()) s.optimizers.push_back(o);
  const int64_t fe = ft.value("epochs", 5);
  s.finetune_epochs = {std::max<int64_t>(1, fe / 2), fe, 2 * fe, 3 * fe};
  s.finetune_epochs.erase(std::unique(s.finetune_epochs.begin(), s.finetune_epochs.end()), s.finetune_epochs.end());
  return s;
}

json SearchSpace::to_json() const {
  return {{"head_lr", {{"log_uniform", {head_lr.first, head_lr.second}}}},
          {"head_epochs", head_epochs},
          {"unfreeze", unfreeze},
          {"finetune_lr", {{"log_uniform", {finetune_lr.first, finetune_lr.second}}}},
          {"optimizer", optimizers},
          {"backbone_lr_mult", backbone_lr_mult},
          {"label_smoothing", label_smoothing},
          {"augment", augment},
          {"finetune_epochs", finetune_epochs},
          {"candidates_per_head", candidates_per_head}};
}

std::vector<Candidate> SearchSpace::sample(int64_t n, uint64_t seed) const {
  // A stream of its own (the seed mixed with a constant), so the candidates do not move when
  // anything else draws from the run's seed.
  std::mt19937_64 rng(seed ^ 0x74756e65ULL);
  // The head stages first: candidate i fine-tunes head i mod H, so each head run is shared by
  // about candidates_per_head candidates (the search trains it once).
  const int64_t per = std::max<int64_t>(1, candidates_per_head), heads_n = std::max<int64_t>(1, (n + per - 1) / per);
  std::vector<std::pair<double, int64_t>> heads;
  for (int64_t k = 0; k < heads_n; ++k) {
    const double lr = log_uniform(head_lr, rng);
    heads.emplace_back(lr, pick(head_epochs, rng));
  }
  std::vector<Candidate> out;
  for (int64_t i = 0; i < n; ++i) {
    Candidate c;
    std::tie(c.head_lr, c.head_epochs) = heads[static_cast<size_t>(i % heads_n)];
    c.unfreeze = pick(unfreeze, rng);
    c.finetune_lr = log_uniform(finetune_lr, rng);
    c.optimizer = pick(optimizers, rng);
    c.backbone_lr_mult = pick(backbone_lr_mult, rng);
    c.label_smoothing = pick(label_smoothing, rng);
    c.augment = pick(augment, rng);
    c.finetune_epochs = pick(finetune_epochs, rng);  // drawn last: the other dimensions keep their draws
    out.push_back(c);
  }
  return out;
}

json candidate_config(const json& base, const Candidate& c, int64_t finetune_epochs) {
  json j = base;
  json head = base.at("stages").at(0);
  head["optimizer"]["lr"] = c.head_lr;
  head["epochs"] = c.head_epochs;
  json stages = json::array({head});
  if (c.unfreeze != 0) {
    json ft = finetune_template(base);
    if (c.unfreeze > 0) ft["trainable"] = {{"fraction", c.unfreeze}};
    // Another optimizer keeps none of the template's settings (momentum means nothing to adam).
    if (ft.at("optimizer").value("name", "") != c.optimizer) ft["optimizer"] = json::object();
    ft["optimizer"]["name"] = c.optimizer;
    ft["optimizer"]["lr"] = c.finetune_lr;
    ft["backbone_lr_mult"] = c.backbone_lr_mult;
    ft["label_smoothing"] = c.label_smoothing;
    ft["epochs"] = finetune_epochs;
    stages.push_back(ft);
  }
  j["stages"] = stages;
  if (c.augment != 1 && j.contains("data") && j["data"].contains("augment")) scale_augment(j["data"]["augment"], c.augment);
  return j;
}

std::vector<int64_t> rung_epochs(int64_t finetune_epochs, int64_t eta, int64_t rungs) {
  std::vector<int64_t> e;
  for (int64_t r = rungs - 1; r >= 0; --r) {
    const int64_t v = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(static_cast<double>(finetune_epochs) / std::pow(eta, r))));
    if (e.empty() || v > e.back()) e.push_back(v);
  }
  return e;
}

}  // namespace tltrain::train
