#include "tltrain/train/tune.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
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
#include "tltrain/core/threads.h"
#include "tltrain/data/dataset.h"
#include "tltrain/dist/context.h"
#include "tltrain/model/classifier.h"
#include "tltrain/train/callback.h"
#include "tltrain/train/lr_find.h"
#include "tltrain/train/shared_features.h"
#include "tltrain/train/trainer.h"
#include "tune_ranks.h"

namespace fs = std::filesystem;

namespace tltrain::train {

using config::json;

namespace {

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
/// LOCAL_WORLD ranks training trials side by side on one machine share its cores.
config::RunConfig trial_config(json j, const std::string& dir, config::Metric metric, const std::string& tune_dir, int local_world) {
  if (local_world > 1)
    for (const char* k : {"intra_op", "loader"}) j["threads"][k] = threads_or_cores(j["threads"].value(k, int64_t{0}), local_world);
  j["data"]["train"] = tune_dir + "/search_train.csv";
  j["data"]["val"] = tune_dir + "/holdout.csv";
  j["data"]["validation_split"] = 0;
  j["output_dir"] = dir;
  j["monitor"] = config::name_of(metric);
  return config::parse_run_config(j, dir + "/config.json");
}

}  // namespace

namespace {

using tune_detail::OwnRun;
using tune_detail::Ranks;

/// One search: its sets, its candidates and their results, and the state file that records them.
class Search {
 public:
  Search(const config::RunConfig& cfg, const TuneOptions& o, Ranks ranks)
      : cfg_(cfg), o_(o), dir_(cfg.output_dir + "/tune"), started_(std::chrono::steady_clock::now()), ranks_(std::move(ranks)) {
    if (!o.resume)
      TLTRAIN_CHECK(!fs::exists(dir_ + "/tune.json"), ErrorKind::Usage,
                    "'" + dir_ + "' already holds a search; continue it with `tltrain tune --resume " + dir_ + "` or choose another output_dir");
    st_.path = dir_ + "/tune.json";
    if (ranks_.rank == 0) {  // marks from an earlier session; a new search keeps no earlier results either
      fs::remove_all(ranks_.marks());
      if (!o.resume) fs::remove_all(dir_ + "/results");
      if (ranks_.world > 1) fs::create_directories(ranks_.marks());
    }
    if (ranks_.group) ranks_.group->barrier();  // no rank reads the folder before rank 0 has cleared it
    TLTRAIN_CHECK(ranks_.world == 1 || fs::exists(ranks_.marks()), ErrorKind::Usage,
                  "tune: rank " + std::to_string(ranks_.rank) + " does not see rank 0's " + ranks_.marks() +
                      ": the ranks of a search must share its output folder (one machine, or a shared filesystem)");
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
    if (!o.resume && ranks_.rank == 0) start();
    if (ranks_.rank != 0 && !o.resume)  // rank 0 writes the new search's state, after its range test
      ranks_.wait([&] { return fs::exists(dir_ + "/tune.json"); }, "rank 0's range test and candidates", resume_);
    if (ranks_.rank != 0 || o.resume) st_ = {config::parse_json_file(dir_ + "/tune.json"), dir_ + "/tune.json"};
    // The results so far judged this split: a training folder changed since would mix two searches.
    if (o.resume)
      TLTRAIN_CHECK(read_file(dir_ + "/search_train.csv", "the search's training list") == list_file(search_.train) && read_file(dir_ + "/holdout.csv", "the search's holdout list") == list_file(search_.val),
                    ErrorKind::Data,
                    "'" + cfg.data.train + "' has changed since the search in " + dir_ + " began (its images no longer split into " + dir_ +
                        "/search_train.csv and holdout.csv): start a new search in another output_dir");
    spent_before_ = st_.j.value("seconds", 0.0);
    read_state();
    name_heads();
    // Every rank's share of a rung is computed from the state they all hold now: no rank may have
    // recorded a new result before the slowest has read tune.json.
    if (ranks_.group) ranks_.group->barrier();
  }

  /// Successive halving over the rungs, until the last rung or the budget.
  void run() {
    std::vector<size_t> alive(cands_.size());
    for (size_t i = 0; i < alive.size(); ++i) alive[i] = i;
    for (size_t rung = 0; rung < rungs_.size(); ++rung) {
      bool stopped = false;
      for (size_t i : share(alive, rung)) {
        if (take_result(i, rung)) continue;  // trained by an earlier session
        if ((stopped = elapsed() > o_.budget_s)) break;
        run_candidate(i, rung);
      }
      ranks_.mark(rung, stopped);
      stopped = ranks_.all_marked(rung, resume_) || stopped;
      absorb(alive, rung);
      // A rung cut short is judged by the one before it, which every candidate alive finished:
      // otherwise a figure carried up would beat candidates that never got to train.
      if (stopped) return void((stop_reason_ = "budget spent", judged_ = rung > 0 ? rung - 1 : 0));
      if (rung + 1 == rungs_.size()) return;
      alive = promote(alive, rung);
    }
  }

  TuneResult finish() {
    // The winner: the best figure at the highest rung any candidate reached.
    size_t best = 0, best_rung = 0;
    bool have = false;
    for (const auto& [key, v] : got_)
      if (key.second <= judged_ && (!have || key.second > best_rung || (key.second == best_rung && ahead(key.first, best, best_rung))))
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

  /// This rank's share of ALIVE's candidates still to train at RUNG: those with one head stage go
  /// to one rank (no two ranks train a head at once), the groups to the least loaded rank, largest
  /// first, with a trial's cost its fine-tune epochs. The same split on every rank.
  std::vector<size_t> share(const std::vector<size_t>& alive, size_t rung) const {
    std::map<std::string, std::vector<size_t>> by_head;
    for (size_t i : alive)
      if (!got_.count({i, rung})) by_head[head_dir_[i]].push_back(i);
    std::vector<std::pair<int64_t, std::vector<size_t>>> groups;
    for (auto& [head, members] : by_head) {
      int64_t cost = 0;
      for (size_t i : members) cost += 1 + (cands_[i].unfreeze != 0 ? cands_[i].epochs_at(rungs_[rung]) : 0);
      groups.emplace_back(cost, members);
    }
    std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second.front() < b.second.front();
    });
    std::vector<int64_t> load(static_cast<size_t>(ranks_.world), 0);
    std::vector<size_t> mine;
    for (const auto& [cost, members] : groups) {
      const auto r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      load[static_cast<size_t>(r)] += cost;
      if (r == ranks_.rank) mine.insert(mine.end(), members.begin(), members.end());
    }
    std::sort(mine.begin(), mine.end());
    return mine;
  }

  /// Candidate I's result at RUNG from DIR/results, when a rank (of this session or an earlier
  /// one) left it there: whether there was one.
  bool take_result(size_t i, size_t rung) {
    if (!fs::exists(ranks_.result_of(i, rung))) return false;
    record(config::parse_json_file(ranks_.result_of(i, rung)));
    return true;
  }

  /// The results at RUNG that other ranks left in DIR/results.
  void absorb(const std::vector<size_t>& alive, size_t rung) {
    for (size_t i : alive)
      if (!got_.count({i, rung})) take_result(i, rung);
  }

  /// REC, one candidate's result at one rung, into the search's state.
  void record(const json& rec) {
    const size_t i = rec.at("candidate").get<size_t>(), rung = rec.at("rung").get<size_t>();
    TLTRAIN_CHECK(i < cands_.size() && rung < rungs_.size(), ErrorKind::Data,
                  "a result of candidate " + std::to_string(i) + " at rung " + std::to_string(rung) + " in " + dir_ +
                      "/results, which the search does not have: start the search again in another output_dir");
    const Figure figure = Figure::from_json(rec);
    got_[{i, rung}] = figure;
    if (rec.contains("failed")) failed_.insert(i);
    st_.j["results"].push_back(rec);
    st_.j["seconds"] = elapsed();
    st_.save();
    log::info("tune: candidate " + std::to_string(i) + " rung " + std::to_string(rung) +
              (ranks_.world > 1 ? " (rank " + std::to_string(rec.value("rank", 0)) + ")" : "") + ": " + config::name_of(o_.metric) + " " +
              std::to_string(figure.value) + " (" + config::name_of(tiebreak_of(o_.metric)) + " " + std::to_string(figure.tiebreak) + ")");
  }

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
        if (r.contains("failed")) failed_.insert(c);
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
      log::info("tune: the head's rates are searched around the range test's valley, " + log::general(centre));
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
    TLTRAIN_CHECK(!(trained_any_ && stop_requested()), ErrorKind::Interrupted, resume_);
    json rec = {{"candidate", i}, {"rung", rung}, {"head", head_dir_[i]}, {"rank", ranks_.rank}};
    Figure figure;
    try {
      const OwnRun own(ranks_.rank);
      figure = train_candidate(i, rung, rec);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::Interrupted) TLTRAIN_FAIL(ErrorKind::Interrupted, resume_);
      const bool lower = !improved(o_.metric, 1.0, 0.0, 0.0, true);  // a loss: lower is better
      figure = {lower ? 1e300 : -1.0, lower ? -1.0 : 1e300};
      rec["failed"] = e.what();
      log::warn("tune: candidate " + std::to_string(i) + " failed, ranked last: " + e.what());
    }
    rec["value"] = figure.value;
    rec["tiebreak"] = figure.tiebreak;
    if (ranks_.world > 1) write_file_atomically(ranks_.result_of(i, rung), rec.dump() + "\n");
    record(rec);
  }

  /// Candidate I's head run (trained once, then read), and its fine-tune stage at RUNG's epochs from
  /// the head's last weights; what it ran goes into REC.
  Figure train_candidate(size_t i, size_t rung, json& rec) {
    const Candidate& c = cands_[i];
    const Outcome head = run_once(trial_config(head_cfg_[i], head_dir_[i], o_.metric, dir_, ranks_.local_world), search_, shared_for(i), "");
    trained_any_ |= head.trained;
    Figure figure = head.figure;
    rec["head_value"] = head.figure.value;
    if (c.unfreeze != 0) {
      const int64_t epochs = c.epochs_at(rungs_[rung]);
      json ft_json = candidate_config(cfg_.resolved, c, epochs);
      ft_json["stages"] = json::array({ft_json["stages"][1]});
      // Named by its epochs: a candidate shorter than two rungs trains its schedule once.
      const std::string tdir = dir_ + "/trials/c" + std::to_string(i) + "_e" + std::to_string(epochs);
      const Outcome ft = run_once(trial_config(ft_json, tdir, o_.metric, dir_, ranks_.local_world), search_, nullptr, head.last);
      trained_any_ |= ft.trained;
      // A fit's best.pt is the best epoch of either stage: the candidate's figure is too.
      if (better(o_.metric, ft.figure, head.figure)) figure = ft.figure;
      rec["dir"] = tdir;
      rec["epochs"] = epochs;
    }
    return figure;
  }

  /// Whether candidate A is ahead of B at RUNG: the better metric; on a tie the config itself
  /// (candidate 0), since a recipe is replaced on evidence only, then the tie-breaker. A small
  /// holdout near the ceiling ties most candidates, and there their losses did not predict the
  /// validation set (docs/benchmarks.md).
  bool ahead(size_t a, size_t b, size_t rung) const {
    const Figure &x = got_.at({a, rung}), &y = got_.at({b, rung});
    if (x.value != y.value || (a != 0 && b != 0)) return better(o_.metric, x, y);
    return a == 0 && b != 0;
  }

  /// The best ceil(n / eta) of ALIVE at RUNG, and the config itself, which every rung measures so
  /// that the winner is always set against it; one that trains the head alone, or whose fine-tune
  /// stage is no longer than the next rung's, has nothing more to train, and its figure carries up.
  std::vector<size_t> promote(std::vector<size_t> alive, size_t rung) {
    std::stable_sort(alive.begin(), alive.end(), [&](size_t a, size_t b) { return ahead(a, b, rung); });
    const bool config_alive = std::find(alive.begin(), alive.end(), size_t{0}) != alive.end();
    alive.resize(static_cast<size_t>(std::ceil(static_cast<double>(alive.size()) / static_cast<double>(o_.eta))));
    if (config_alive && std::find(alive.begin(), alive.end(), size_t{0}) == alive.end()) alive.push_back(0);
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
  Ranks ranks_;
  std::string resume_ = "tune interrupted; continue it with `tltrain tune --resume " + dir_ + "`";
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
  size_t judged_ = SIZE_MAX;  ///< the highest rung the winner may come from (a budget stop lowers it)
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
  Ranks ranks{o.group, 0, 1, 1, cfg.output_dir + "/tune"};
  if (o.group) ranks = {o.group, o.group->rank(), o.group->world(), std::max(1, o.group->context().local_world), ranks.dir};
  try {
    Search s(cfg, o, ranks);
    s.run();
    return s.finish();
  } catch (const std::exception& e) {
    // The other ranks wait on files, not on a collective: tell them why this one stops (all of
    // them see Ctrl-C themselves).
    const auto* err = dynamic_cast<const Error*>(&e);
    if (ranks.world > 1 && !(err && err->kind() == ErrorKind::Interrupted) && fs::exists(ranks.marks()))
      write_file_atomically(ranks.failed_of(ranks.rank), e.what());
    throw;
  }
}

TuneResult tune_on_ranks(const config::RunConfig& cfg, TuneOptions o, const std::function<void(const TuneResult&, dist::ProcessGroup*)>& then,
                         double dist_timeout) {
  const dist::DistContext ctx = dist::context_from_env();
  log::set_rank(ctx.rank);
  std::unique_ptr<dist::ProcessGroup> group;
  const torch::Device device = model::resolve_device(cfg.device, ctx.local_rank);
  // A trial is a one-process fit, which takes the first GPU: ranks sharing a machine's GPUs would
  // all train on it.
  TLTRAIN_CHECK(!(ctx.local_world > 1 && device.is_cuda()), ErrorKind::Usage,
                "tune with " + std::to_string(ctx.local_world) + " ranks on one machine trains every trial on GPU 0: run one rank per "
                "machine (--nproc 1), or set \"device\": \"cpu\"");
  if (ctx.distributed()) group = start_process_group(ctx, dist_timeout, device);
  o.group = group.get();
  try {
    auto r = tune(cfg, o);
    if (group) group->barrier();  // rank 0 has written best_config.json, which THEN may read
    if (then) then(r, group.get());
    if (group) group->barrier();  // rank 0 hosts the store: it leaves last
    return r;
  } catch (const std::exception& e) {
    if (group) group->report_failure(e.what());
    throw;
  }
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
