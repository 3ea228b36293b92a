#include "tltrain/train/tune.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"
#include "tltrain/data/dataset.h"
#include "tltrain/train/callback.h"
#include "tltrain/train/lr_find.h"
#include "tltrain/train/shared_features.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;

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

/// Whether the head stage sees augmented images (so its result depends on the augmentation).
bool head_sees_augmentation(const json& head) {
  const json& cache = head.contains("feature_cache") ? head.at("feature_cache") : json(nullptr);
  if (cache.is_boolean()) return !cache.get<bool>();
  if (cache.is_object()) return !cache.value("enabled", true) || cache.value("views", 0) > 0;
  return false;
}

/// What breaks a tie on the metric: the loss for an accuracy, the accuracy for a loss. A small
/// holdout near the ceiling gives many candidates the same accuracy; their losses still differ.
config::Metric tiebreak_of(config::Metric m) {
  static const std::map<config::Metric, config::Metric> t{{config::Metric::ValAccuracy, config::Metric::ValLoss},
                                                          {config::Metric::ValLoss, config::Metric::ValAccuracy},
                                                          {config::Metric::Accuracy, config::Metric::Loss},
                                                          {config::Metric::Loss, config::Metric::Accuracy}};
  return t.at(m);
}

/// A run's figure on the holdout: the metric at its best epoch, and that epoch's tie-breaker.
struct Figure {
  double value = 0, tiebreak = 0;
  json to_json() const { return {{"value", value}, {"tiebreak", tiebreak}}; }
  static Figure from_json(const json& j) { return {j.at("value").get<double>(), j.value("tiebreak", 0.0)}; }
};

bool better(config::Metric m, const Figure& a, const Figure& b) {
  if (a.value != b.value) return improved(m, a.value, b.value, 0.0, true);
  return improved(tiebreak_of(m), a.tiebreak, b.tiebreak, 0.0, true);
}

/// Where the search stands: tune.json, rewritten after every run so that a kill loses one run at most.
struct State {
  json j;
  std::string path;
  void save() const {
    if (log::is_output_rank()) write_file_atomically(path, j.dump(1) + "\n");
  }
};

/// One trained configuration's figure on the holdout, from its done.json or by training it.
struct Outcome {
  Figure figure;
  std::string last;      ///< its last.pt, where a later stage starts
  bool trained = false;  ///< false: read from an earlier done.json
};

/// Trains CFG (or resumes it) in its output_dir on the search's sets, once: done.json keeps the result.
Outcome run_once(const config::RunConfig& cfg, const data::Datasets& search, FeatureSource* features, const std::string& init) {
  const std::string done = cfg.output_dir + "/done.json";
  if (fs::exists(done)) {
    const json d = config::parse_json_file(done);
    return {Figure::from_json(d), d.at("last").get<std::string>()};
  }
  FitOptions fo;
  fo.datasets = &search;
  fo.features = features;
  fo.init_checkpoint = init;
  fo.resume = fs::exists(cfg.output_dir + "/checkpoints/last.pt");
  const FitResult r = fit(cfg, fo);
  Outcome o{{r.best_value, 0}, r.last_checkpoint, true};
  for (const auto& rec : r.history)  // the best epoch's record (the first with the best value)
    if (metric_of(rec, cfg.monitor) == r.best_value) {
      o.figure.tiebreak = metric_of(rec, tiebreak_of(cfg.monitor));
      break;
    }
  json d = o.figure.to_json();
  d["last"] = o.last;
  if (log::is_output_rank()) write_file_atomically(done, d.dump() + "\n");
  return o;
}

std::string csv_quoted(const std::string& v) {
  std::string q = "\"";
  for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

/// SET as a "path,label" list file (data/dataset.h), labels by name ("a;b" for several, "" for an
/// image of a multi-label set with none).
std::string list_file(const data::Dataset& set) {
  std::ostringstream s;
  for (const auto& x : set.samples) {
    std::string label;
    const std::vector<int64_t> all = !x.labels.empty() ? x.labels : x.label >= 0 ? std::vector<int64_t>{x.label} : std::vector<int64_t>{};
    for (int64_t l : all) label += (label.empty() ? "" : ";") + set.classes.at(static_cast<size_t>(l));
    s << csv_quoted(x.path) << "," << csv_quoted(label) << "\n";
  }
  return s.str();
}

/// A trial's config: what it trains on is the search's split (DIR/../search_train.csv and
/// holdout.csv, written once), so the config says so and never names the user's validation data.
config::RunConfig trial_config(json j, const std::string& dir, config::Metric metric, const std::string& tune_dir) {
  j["data"]["train"] = tune_dir + "/search_train.csv";
  j["data"]["val"] = tune_dir + "/holdout.csv";
  j["data"]["validation_split"] = 0;
  j["output_dir"] = dir;
  j["monitor"] = config::name_of(metric);
  return config::parse_run_config(j, dir + "/config.json");
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
          {"finetune_epochs", finetune_epochs}};
}

std::vector<Candidate> SearchSpace::sample(int64_t n, uint64_t seed) const {
  // A stream of its own (the seed mixed with a constant), so the candidates do not move when
  // anything else draws from the run's seed.
  std::mt19937_64 rng(seed ^ 0x74756e65ULL);
  std::vector<Candidate> out;
  for (int64_t i = 0; i < n; ++i) {
    Candidate c;
    c.head_lr = log_uniform(head_lr, rng);
    c.head_epochs = pick(head_epochs, rng);
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

namespace {

/// One search: its sets, its candidates and their results, and the state file that records them.
class Search {
 public:
  Search(const config::RunConfig& cfg, const TuneOptions& o)
      : cfg_(cfg), o_(o), dir_(cfg.output_dir + "/tune"), started_(std::chrono::steady_clock::now()) {
    if (!o.resume)
      TLTRAIN_CHECK(!fs::exists(dir_ + "/tune.json"), ErrorKind::Usage,
                    "'" + dir_ + "' already holds a search; continue it with `tltrain tune --resume " + dir_ + "` or choose another output_dir");
    st_ = {o.resume ? config::parse_json_file(dir_ + "/tune.json") : json::object(), dir_ + "/tune.json"};
    spent_before_ = st_.j.value("seconds", 0.0);
    // The search sees the training images only: a separate validation set is not even listed, and
    // a validation_split's share stays out as load_datasets leaves it out of train.
    config::DataConfig train_only = cfg.data;
    train_only.val.clear();
    const uint64_t seed = static_cast<uint64_t>(cfg.seed);
    train_ = data::load_datasets(train_only, seed).train;
    const int64_t k = std::max<int64_t>(2, std::llround(1.0 / o.holdout));
    TLTRAIN_CHECK(static_cast<int64_t>(train_.samples.size()) >= 2 * k, ErrorKind::Data,
                  "tune: '" + cfg.data.train + "' has " + std::to_string(train_.samples.size()) + " training images, too few to hold 1/" +
                      std::to_string(k) + " of them out (--holdout)");
    search_ = data::fold_datasets(train_, data::stratified_folds(train_.samples, train_.classes.size(), k, seed, 0), 0);
    log::info("tune: " + std::to_string(search_.train.samples.size()) + " training and " + std::to_string(search_.val.samples.size()) +
              " holdout images (one stratified fold of " + std::to_string(k) + "; the validation set is not used)");
    if (!o.resume) start();
    read_state();
    name_heads();
  }

  /// Successive halving over the rungs, until the last rung or the budget.
  void run() {
    std::vector<size_t> alive(cands_.size());
    for (size_t i = 0; i < alive.size(); ++i) alive[i] = i;
    for (size_t rung = 0; rung < rungs_.size(); ++rung) {
      for (size_t i : alive) {
        if (got_.count({i, rung})) continue;
        if (elapsed() > o_.budget_s) return void(stop_reason_ = "budget spent");
        run_candidate(i, rung);
      }
      if (rung + 1 == rungs_.size()) return;
      alive = promote(alive, rung);
    }
  }

  TuneResult finish() {
    // The winner: the best figure at the highest rung any candidate reached.
    size_t best = 0, best_rung = 0;
    bool have = false;
    for (const auto& [key, v] : got_)
      if (!have || key.second > best_rung || (key.second == best_rung && better(o_.metric, v, got_.at({best, best_rung}))))
        best = key.first, best_rung = key.second, have = true;
    TLTRAIN_CHECK(have, ErrorKind::Usage, "tune: the budget (" + std::to_string(o_.budget_s) + " s) ended before any candidate finished; give more");
    TLTRAIN_CHECK(!failed_.count(best), ErrorKind::Runtime,
                  "tune: every candidate failed (" + st_.path + " says why); check the config with `tltrain fit --dry-run`");
    json best_cfg = candidate_config(cfg_.resolved, cands_[best], cands_[best].finetune_epochs);
    best_cfg["output_dir"] = dir_ + "/best";
    best_cfg.erase("name");
    TuneResult res{dir_, dir_ + "/best_config.json", {}};
    st_.j["status"] = stop_reason_.empty() ? "done" : stop_reason_;
    st_.j["seconds"] = elapsed();
    st_.j["best"] = {{"candidate", best}, {"rung", best_rung}, {"value", got_.at({best, best_rung}).value},
                     {"tiebreak", got_.at({best, best_rung}).tiebreak}, {"config", res.best_config}};
    if (log::is_output_rank()) {
      write_file_atomically(res.best_config, best_cfg.dump(2) + "\n");
      st_.save();
    }
    res.summary = st_.j;
    return res;
  }

 private:
  double elapsed() const { return spent_before_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count(); }

  /// tune.json's rungs, candidates and results; a Data error naming the file when they do not fit.
  void read_state() {
    try {
      rungs_ = st_.j.at("rungs").get<std::vector<int64_t>>();
      for (const auto& c : st_.j.at("candidates")) cands_.push_back(Candidate::from_json(c));
      for (const auto& r : st_.j.at("results")) {
        const size_t c = r.at("candidate").get<size_t>(), rung = r.at("rung").get<size_t>();
        TLTRAIN_CHECK(c < cands_.size() && rung < rungs_.size(), ErrorKind::Data,
                      "'" + st_.path + "': a result of candidate " + std::to_string(c) + " at rung " + std::to_string(rung) +
                          ", which the search does not have");
        got_[{c, rung}] = Figure::from_json(r);
      }
    } catch (const json::exception& e) {
      TLTRAIN_FAIL(ErrorKind::Data, "'" + st_.path + "' is not a search's state (" + e.what() + "); start the search again in another output_dir");
    }
    TLTRAIN_CHECK(!rungs_.empty() && !cands_.empty(), ErrorKind::Data, "'" + st_.path + "' has no rungs or no candidates; start the search again");
  }

  /// One feature cache per augmentation the head stages see: un-augmented heads all share one, a
  /// head trained on augmented views shares only with those of the same augmentation.
  SharedFeatures* shared_for(size_t i) {
    const double key = head_sees_augmentation(head_cfg_.at(i).at("stages").at(0)) ? cands_[i].augment : 0.0;
    auto& s = shared_[key];
    if (!s) s = std::make_unique<SharedFeatures>(train_.samples);
    return s.get();
  }
  /// A new search: the range test (when asked), the space, the candidates and the split's lists.
  void start() {
    fs::create_directories(dir_);
    double centre = 0;
    if (o_.lr_find && cfg_.stages[0].optimizer.name == config::Optimizer::Lbfgs) {
      log::warn("tune: the head stage uses lbfgs, which sets its own steps: no range test; its rates are searched around the config's");
    } else if (o_.lr_find) {
      LrFindOptions lf;
      lf.out_dir = dir_ + "/lr_find";
      lf.datasets = &search_;
      const bool augmented = head_sees_augmentation(cfg_.resolved.at("stages").at(0));
      auto& s = shared_[augmented ? 1.0 : 0.0];  // the config's augmentation: factor 1
      if (!s) s = std::make_unique<SharedFeatures>(train_.samples);
      lf.features = s.get();
      centre = find_lr(cfg_, lf).suggestion.valley;
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", centre);
      log::info(std::string("tune: the head's rates are searched around the range test's valley, ") + buf);
    }
    const SearchSpace space = SearchSpace::around(cfg_, centre);
    json candidates = json::array({Candidate::of_config(cfg_).to_json()});
    for (const auto& c : space.sample(o_.trials - 1, static_cast<uint64_t>(cfg_.seed))) candidates.push_back(c.to_json());
    st_.j = {{"options",
              {{"budget_s", o_.budget_s}, {"trials", o_.trials}, {"metric", config::name_of(o_.metric)}, {"holdout", o_.holdout},
               {"eta", o_.eta}, {"lr_find", o_.lr_find}, {"seed", cfg_.seed}}},
             {"space", space.to_json()},
             {"rungs", rung_epochs(space.longest_finetune(), o_.eta)},
             {"candidates", candidates},
             {"results", json::array()},
             {"status", "running"},
             {"seconds", 0.0}};
    write_file_atomically(dir_ + "/base_config.json", cfg_.resolved.dump(2) + "\n");
    write_file_atomically(dir_ + "/search_train.csv", list_file(search_.train));
    write_file_atomically(dir_ + "/holdout.csv", list_file(search_.val));
    st_.save();
  }

  /// Each candidate's head run: one directory per distinct head stage, named in candidate order, so
  /// a resumed search finds the same names.
  void name_heads() {
    std::map<std::string, std::string> by_stage;
    for (const Candidate& c : cands_) {
      Candidate head_only = c;
      head_only.unfreeze = 0;
      head_cfg_.push_back(candidate_config(cfg_.resolved, head_only, 0));
      json key = head_cfg_.back().at("stages").at(0);
      if (head_sees_augmentation(key)) key["augment"] = head_cfg_.back().at("data").at("augment");
      head_dir_.push_back(by_stage.emplace(key.dump(), dir_ + "/heads/h" + std::to_string(by_stage.size())).first->second);
    }
  }

  /// Candidate I at RUNG, recorded in tune.json. A candidate whose run fails (a loss that diverged at
  /// a rate the space allowed) gets the worst figure, and the search goes on.
  void run_candidate(size_t i, size_t rung) {
    // A stop asked for between two runs; fit forgets one from before it begins, and so does the
    // search until it has trained something.
    const std::string resume = "tune interrupted; continue it with `tltrain tune --resume " + dir_ + "`";
    TLTRAIN_CHECK(!(trained_any_ && stop_requested()), ErrorKind::Interrupted, resume);
    json rec = {{"candidate", i}, {"rung", rung}, {"head", head_dir_[i]}};
    Figure figure;
    try {
      figure = train_candidate(i, rung, rec);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::Interrupted) TLTRAIN_FAIL(ErrorKind::Interrupted, resume);
      const bool lower = !improved(o_.metric, 1.0, 0.0, 0.0, true);  // a loss: lower is better
      figure = {lower ? 1e300 : -1.0, lower ? -1.0 : 1e300};
      rec["failed"] = e.what();
      failed_.insert(i);
      log::warn("tune: candidate " + std::to_string(i) + " failed, ranked last: " + e.what());
    }
    rec["value"] = figure.value;
    rec["tiebreak"] = figure.tiebreak;
    got_[{i, rung}] = figure;
    st_.j["results"].push_back(rec);
    st_.j["seconds"] = elapsed();
    st_.save();
    log::info("tune: candidate " + std::to_string(i) + " rung " + std::to_string(rung) + ": " + config::name_of(o_.metric) + " " +
              std::to_string(figure.value) + " (" + config::name_of(tiebreak_of(o_.metric)) + " " + std::to_string(figure.tiebreak) + ")");
  }

  /// Candidate I's head run (trained once, then read), and its fine-tune stage at RUNG's epochs from
  /// the head's last weights; what it ran goes into REC.
  Figure train_candidate(size_t i, size_t rung, json& rec) {
    const Candidate& c = cands_[i];
    const Outcome head = run_once(trial_config(head_cfg_[i], head_dir_[i], o_.metric, dir_), search_, shared_for(i), "");
    trained_any_ |= head.trained;
    Figure figure = head.figure;
    rec["head_value"] = head.figure.value;
    if (c.unfreeze != 0) {
      const int64_t epochs = c.epochs_at(rungs_[rung]);
      json ft_json = candidate_config(cfg_.resolved, c, epochs);
      ft_json["stages"] = json::array({ft_json["stages"][1]});
      // Named by its epochs: a candidate shorter than two rungs trains its schedule once.
      const std::string tdir = dir_ + "/trials/c" + std::to_string(i) + "_e" + std::to_string(epochs);
      const Outcome ft = run_once(trial_config(ft_json, tdir, o_.metric, dir_), search_, nullptr, head.last);
      trained_any_ |= ft.trained;
      // A fit's best.pt is the best epoch of either stage: the candidate's figure is too.
      if (better(o_.metric, ft.figure, head.figure)) figure = ft.figure;
      rec["dir"] = tdir;
      rec["epochs"] = epochs;
    }
    return figure;
  }

  /// The best ceil(n / eta) of ALIVE at RUNG; one that trains the head alone, or whose fine-tune
  /// stage is no longer than the next rung's, has nothing more to train, and its figure carries up.
  std::vector<size_t> promote(std::vector<size_t> alive, size_t rung) {
    std::stable_sort(alive.begin(), alive.end(), [&](size_t a, size_t b) { return better(o_.metric, got_.at({a, rung}), got_.at({b, rung})); });
    alive.resize(static_cast<size_t>(std::ceil(static_cast<double>(alive.size()) / static_cast<double>(o_.eta))));
    for (size_t i : alive)
      if ((cands_[i].unfreeze == 0 || cands_[i].epochs_at(rungs_[rung]) == cands_[i].epochs_at(rungs_[rung + 1])) &&
          !got_.count({i, rung + 1})) {
        got_[{i, rung + 1}] = got_.at({i, rung});
        st_.j["results"].push_back({{"candidate", i}, {"rung", rung + 1}, {"value", got_.at({i, rung}).value},
                                    {"tiebreak", got_.at({i, rung}).tiebreak}, {"carried", true}});
      }
    st_.save();
    return alive;
  }

  const config::RunConfig& cfg_;
  const TuneOptions& o_;
  std::string dir_;
  std::chrono::steady_clock::time_point started_;
  State st_;
  double spent_before_ = 0;
  data::Dataset train_;
  data::Datasets search_;
  std::map<double, std::unique_ptr<SharedFeatures>> shared_;  ///< by augmentation factor (0: un-augmented); over train_
  std::vector<int64_t> rungs_;
  std::vector<Candidate> cands_;
  std::vector<json> head_cfg_;
  std::vector<std::string> head_dir_;
  std::map<std::pair<size_t, size_t>, Figure> got_;  ///< (candidate, rung) → figure
  std::string stop_reason_;
  bool trained_any_ = false;
  std::set<size_t> failed_;
};

}  // namespace

TuneResult tune(const config::RunConfig& cfg, const TuneOptions& o) {
  TLTRAIN_CHECK(o.trials >= 1 && o.eta >= 2, ErrorKind::Usage, "--trials must be >= 1 and --eta >= 2");
  TLTRAIN_CHECK(o.holdout > 0 && o.holdout <= 0.5, ErrorKind::Usage, "--holdout must be in (0, 0.5], got " + std::to_string(o.holdout));
  TLTRAIN_CHECK(o.metric == config::Metric::ValAccuracy || o.metric == config::Metric::ValLoss, ErrorKind::Usage,
                "--metric " + config::name_of(o.metric) + " judges the training images; the search judges the holdout: val_accuracy or val_loss");
  TLTRAIN_CHECK(o.budget_s > 0, ErrorKind::Usage, "--budget must be > 0");
  SearchSpace::around(cfg);  // refuses a config without a head stage before any work
  Search s(cfg, o);
  s.run();
  return s.finish();
}

std::pair<config::RunConfig, TuneOptions> load_tune_dir(const std::string& dir) {
  TLTRAIN_CHECK(fs::exists(dir + "/tune.json") && fs::exists(dir + "/base_config.json"), ErrorKind::Data,
                "'" + dir + "' is not a tltrain tune directory (no tune.json and base_config.json)");
  const json t = config::parse_json_file(dir + "/tune.json");
  TuneOptions o;
  try {
    const json& opt = t.at("options");
    o.budget_s = opt.at("budget_s").get<double>();
    o.trials = opt.at("trials").get<int64_t>();
    o.metric = config::from_name<config::Metric>(opt.at("metric").get<std::string>());
    o.holdout = opt.at("holdout").get<double>();
    o.eta = opt.at("eta").get<int64_t>();
    o.lr_find = opt.at("lr_find").get<bool>();
  } catch (const json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + dir + "/tune.json' has no complete options (" + e.what() + ")");
  }
  o.resume = true;
  auto cfg = config::parse_run_config(config::parse_json_file(dir + "/base_config.json"), dir + "/base_config.json");
  // Its runs and their records name the folder it started in: a search resumes there.
  std::error_code ec;
  TLTRAIN_CHECK(fs::equivalent(dir, cfg.output_dir + "/tune", ec), ErrorKind::Data,
                "'" + dir + "' was started as " + cfg.output_dir + "/tune: resume it there (a moved search's runs name the old place)");
  return {cfg, o};
}

}  // namespace tltrain::train
