// `tltrain tune` (train::tune) on the tiny backbone: the space sampled from the seed, the rungs,
// successive halving keeping the best, one head run per head stage reused by the later rungs, a
// search interrupted and resumed ending as an uninterrupted one, the validation set never read,
// and the winner written as a plain config.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "test_util.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/dist/context.h"
#include "tltrain/eval/report.h"
#include "tltrain/train/trainer.h"
#include "tltrain/train/tune.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

struct Squares {
  test::TempDir dir{"tune"};
  Squares() {
    test::write_color_dataset(dir / "train", {"blue", "green", "red"}, 10);
    // The validation set the user reports: files no decoder reads, so any run that touched them
    // would fail or log them as skipped.
    for (const char* c : {"blue", "green", "red"})
      for (int i = 0; i < 3; ++i) test::write_text(dir / ("val/" + std::string(c) + "/" + std::to_string(i) + ".png"), "not an image");
  }
  config::RunConfig config(const std::string& out) const {
    json c = {{"seed", 11},
              {"device", "cpu"},
              {"threads", {{"intra_op", 1}, {"loader", 2}}},
              {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}, {"image_size", 16},
                        {"augment", {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}, {"rotation_range", 10}}}}},
              {"model", {{"backbone", test::tiny_backbone()}}},
              {"output_dir", dir / out},
              {"stages", json::array({{{"name", "head"}, {"epochs", 2}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.01}}}},
                                      {{"name", "finetune"}, {"epochs", 4}, {"trainable", {{"fraction", 0.5}}},
                                       {"optimizer", {{"name", "sgd"}, {"lr", 0.01}, {"momentum", 0.9}}}}})}};
    return config::parse_run_config(c, "tune.json");
  }
};

train::TuneOptions quick() {
  train::TuneOptions o;
  o.trials = 6;
  o.lr_find = false;
  o.budget_s = 3600;
  return o;
}

size_t lines_of(const std::string& path) {
  std::ifstream f(path);
  size_t n = 0;
  for (std::string line; std::getline(f, line);) ++n;
  return n;
}

}  // namespace

TEST(TuneSpace, SamplesTheSameCandidatesFromTheSameSeedWithinTheSpace) {
  Squares p;
  const auto space = train::SearchSpace::around(p.config("space"));
  EXPECT_DOUBLE_EQ(space.head_lr.first, 0.001);
  EXPECT_DOUBLE_EQ(space.head_lr.second, 0.1);
  EXPECT_EQ(space.head_epochs, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(space.optimizers, (std::vector<std::string>{"sgd", "adam"}));
  EXPECT_EQ(space.finetune_epochs, (std::vector<int64_t>{2, 4, 8, 12})) << "half to three times the config's";
  const auto a = space.sample(20, 7), b = space.sample(20, 7), c = space.sample(20, 8);
  ASSERT_EQ(a.size(), 20u);
  std::set<double> unfreeze;
  std::set<int64_t> ft_epochs;
  for (size_t i = 0; i < a.size(); ++i) {
    ft_epochs.insert(a[i].finetune_epochs);
    EXPECT_EQ(a[i].to_json(), b[i].to_json());
    EXPECT_GE(a[i].head_lr, 0.001);
    EXPECT_LE(a[i].head_lr, 0.1);
    EXPECT_GE(a[i].finetune_lr, 0.001);
    EXPECT_LE(a[i].finetune_lr, 0.1);
    unfreeze.insert(a[i].unfreeze);
  }
  EXPECT_GE(unfreeze.size(), 3u) << "20 draws cover most of the 5 depths";
  EXPECT_GE(ft_epochs.size(), 3u) << "20 draws cover most of the 4 schedules";
  std::set<std::pair<double, int64_t>> heads;
  for (const auto& k : a) heads.insert({k.head_lr, k.head_epochs});
  EXPECT_EQ(heads.size(), 7u) << "20 candidates in families of 3 around 7 head stages";
  EXPECT_EQ(a[0].head_lr, a[7].head_lr) << "candidate i fine-tunes head i mod 7";
  EXPECT_EQ(a[0].epochs_at(100), a[0].finetune_epochs) << "a rung longer than the candidate's schedule trains its schedule";
  EXPECT_NE(a[0].to_json(), c[0].to_json()) << "another seed, other candidates";

  // A candidate's config: its values in the two stages, the augmentation scaled, and nothing
  // but the head for a head-only candidate.
  train::Candidate k = a[0];
  k.unfreeze = 0.3;
  k.optimizer = "adam";
  k.augment = 1.5;
  const json j = train::candidate_config(p.config("space").resolved, k, 3);
  EXPECT_DOUBLE_EQ(j["stages"][0]["optimizer"]["lr"].get<double>(), k.head_lr);
  EXPECT_EQ(j["stages"][1]["trainable"], json({{"fraction", 0.3}}));
  EXPECT_EQ(j["stages"][1]["optimizer"], json({{"name", "adam"}, {"lr", k.finetune_lr}})) << "sgd's momentum does not travel to adam";
  EXPECT_EQ(j["stages"][1]["epochs"], 3);
  EXPECT_DOUBLE_EQ(j["data"]["augment"]["rotation_range"].get<double>(), 15);
  EXPECT_DOUBLE_EQ(j["data"]["augment"]["random_resized_crop"]["scale"][0].get<double>(), 0.25);
  EXPECT_NO_THROW(config::parse_run_config(j, "candidate.json"));
  k.unfreeze = 0;
  EXPECT_EQ(train::candidate_config(p.config("space").resolved, k, 3)["stages"].size(), 1u);
  // The config itself is a candidate whose config is the config's.
  const auto own = train::Candidate::of_config(p.config("space"));
  EXPECT_LT(own.unfreeze, 0);
  EXPECT_EQ(own.finetune_epochs, 4);
  const json same = train::candidate_config(p.config("space").resolved, own, 4);
  EXPECT_EQ(same["stages"], p.config("space").resolved["stages"]);
  EXPECT_EQ(same["data"], p.config("space").resolved["data"]);

  EXPECT_EQ(train::rung_epochs(9, 3), (std::vector<int64_t>{1, 3, 9}));
  EXPECT_EQ(train::rung_epochs(4, 3), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(train::rung_epochs(1, 3), (std::vector<int64_t>{1}));
  EXPECT_DOUBLE_EQ(train::parse_duration("30m"), 1800);
  EXPECT_DOUBLE_EQ(train::parse_duration("1.5h"), 5400);
  EXPECT_DOUBLE_EQ(train::parse_duration("45"), 45);
  test::expect_error([] { train::parse_duration("soon"); }, ErrorKind::Usage, "--budget 'soon'");
}

TEST(Tune, HalvesTheCandidatesReusesEachHeadAndNeverReadsTheValidationSet) {
  Squares p;
  const auto cfg = p.config("search");
  auto with_range_test = quick();
  with_range_test.lr_find = true;  // its range run is among those that must not name the validation set
  const auto r = train::tune(cfg, with_range_test);
  EXPECT_TRUE(fs::exists(r.dir + "/lr_find/lr_find.json"));
  const json& s = r.summary;
  EXPECT_EQ(s.at("status"), "done");
  EXPECT_EQ(s.at("rungs"), json({2, 4, 12})) << "up to the space's longest fine-tune stage, 3 x 4 epochs";
  std::map<size_t, std::map<size_t, double>> at;  // rung → candidate → value
  std::map<size_t, double> loss_at_first;          // candidate → its tie-breaker (val_loss) at rung 0
  std::map<size_t, std::set<std::string>> heads_of;
  for (const auto& x : s.at("results")) {
    at[x.at("rung")][x.at("candidate")] = x.at("value");
    if (x.at("rung") == 0) loss_at_first[x.at("candidate")] = x.at("tiebreak");
    if (x.contains("head")) heads_of[x.at("candidate")].insert(x.at("head").get<std::string>());
    if (!x.contains("dir")) continue;
    // A fine-tune trial trains the rung's epochs, or the candidate's own schedule when shorter.
    const auto cand = train::Candidate::from_json(s.at("candidates").at(x.at("candidate").get<size_t>()));
    const int64_t epochs = std::min(cand.finetune_epochs, s.at("rungs").at(x.at("rung").get<size_t>()).get<int64_t>());
    EXPECT_EQ(x.at("epochs"), epochs);
    EXPECT_EQ(lines_of(x.at("dir").get<std::string>() + "/log.jsonl"), static_cast<size_t>(epochs)) << x.dump();
  }
  ASSERT_EQ(at[0].size(), 6u);
  EXPECT_EQ(train::Candidate::from_json(s.at("candidates").at(0)).to_json(), train::Candidate::of_config(cfg).to_json())
      << "the config itself is the first candidate";
  // Promoted: the best ceil(n / 3) by accuracy, then the config itself on a tie, then the lower
  // loss; and the config itself, whatever its place.
  std::map<size_t, std::map<size_t, double>> loss_at;  // rung → candidate → tie-breaker
  for (const auto& x : s.at("results")) loss_at[x.at("rung")][x.at("candidate")] = x.at("tiebreak");
  const auto ranked = [&](size_t rung) {
    std::vector<size_t> order;
    for (const auto& entry : at[rung]) order.push_back(entry.first);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (at[rung][a] != at[rung][b]) return at[rung][a] > at[rung][b];
      if ((a == 0) != (b == 0)) return a == 0;
      return loss_at[rung][a] < loss_at[rung][b];
    });
    return order;
  };
  const auto keys = [&](size_t rung) {
    std::set<size_t> k;
    for (const auto& entry : at[rung]) k.insert(entry.first);
    return k;
  };
  const auto first = ranked(0), second = ranked(1);
  EXPECT_EQ(keys(1), (std::set<size_t>{first[0], first[1], 0})) << "rung 1 is not the first rung's two best and the config";
  EXPECT_EQ(keys(2), (std::set<size_t>{second[0], 0})) << "rung 2 is not rung 1's best and the config";
  EXPECT_EQ(s.at("best").at("candidate"), ranked(2)[0]);
  for (const auto& [c, loss] : loss_at_first) EXPECT_GT(loss, 0) << "candidate " << c << " has no tie-breaker";
  // One head run per head stage, shared by the candidates that have it and trained once however
  // many of them and their rungs use it: the config's, and the 2 that the 5 drawn share.
  std::map<std::string, std::set<size_t>> users;  // head run → candidates
  for (const auto& [c, dirs] : heads_of) {
    ASSERT_EQ(dirs.size(), 1u) << "candidate " << c << " has more than one head run";
    const auto cand = train::Candidate::from_json(s.at("candidates").at(c));
    EXPECT_EQ(lines_of(*dirs.begin() + "/log.jsonl"), static_cast<size_t>(cand.head_epochs)) << *dirs.begin();
    users[*dirs.begin()].insert(c);
  }
  EXPECT_EQ(users.size(), 3u);
  EXPECT_EQ(heads_of[1], heads_of[3]) << "candidates 1 and 3 share a head stage, hence one head run";
  EXPECT_EQ(heads_of[2], heads_of[4]);
  EXPECT_NE(heads_of[1], heads_of[2]);
  // Nothing under the search's runs names the validation folder.
  for (const auto& e : fs::recursive_directory_iterator(r.dir)) {
    if (!e.is_regular_file() || e.path().extension() == ".pt") continue;
    const std::string name = e.path().filename().string();
    if (name == "base_config.json" || name == "best_config.json") continue;  // the user's config, as given
    std::ifstream f(e.path());
    const std::string text{std::istreambuf_iterator<char>(f), {}};
    EXPECT_EQ(text.find(p.dir / "val"), std::string::npos) << e.path() << " names the validation set";
  }
  // The winner as a plain config of the user's data, ready for fit.
  const auto best = config::load_run_config(r.best_config);
  EXPECT_EQ(best.data.val, p.dir / "val");
  EXPECT_EQ(best.output_dir, r.dir + "/best");
  EXPECT_EQ(s.at("best").at("rung"), 2);
  EXPECT_EQ(eval::tune_ranking(s)[0].at("candidate"), s.at("best").at("candidate"));
  EXPECT_TRUE(fs::exists(eval::write_tune_report(r.dir)));
  test::expect_error([&] { train::tune(cfg, quick()); }, ErrorKind::Usage, "already holds a search");
  auto on_training = quick();
  on_training.metric = config::Metric::Accuracy;
  test::expect_error([&] { train::tune(p.config("other"), on_training); }, ErrorKind::Usage, "the search judges the holdout");
  json no_head = p.config("other").resolved;
  no_head["stages"] = json::array({no_head["stages"][1]});
  test::expect_error([&] { train::tune(config::parse_run_config(no_head, "no_head.json"), quick()); }, ErrorKind::Usage,
                     "must have \"trainable\": \"head\"");
}

TEST(Tune, AnInterruptedSearchResumesToTheUninterruptedOnesResult) {
  Squares p;
  const auto straight = train::tune(p.config("straight"), quick());

  // Ctrl-C once three results are in; then --resume.
  const auto cfg = p.config("stopped");
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    const std::string state = cfg.output_dir + "/tune/tune.json";
    while (!done) {
      if (fs::exists(state)) {
        try {
          // Asked again until the search stops: fit forgets a stop asked just before it begins.
          if (config::parse_json_file(state).at("results").size() >= 3) train::request_stop();
        } catch (const std::exception&) {  // read between rename and write: try again
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  bool interrupted = false;
  try {
    train::tune(cfg, quick());
  } catch (const Error& e) {
    interrupted = e.kind() == ErrorKind::Interrupted;
  }
  done = true;
  stopper.join();
  ASSERT_TRUE(interrupted) << "the search ended before the stop: the test proved nothing";
  const size_t kept = config::parse_json_file(cfg.output_dir + "/tune/tune.json").at("results").size();
  EXPECT_GE(kept, 3u);
  auto [again_cfg, again_opts] = train::load_tune_dir(cfg.output_dir + "/tune");
  EXPECT_TRUE(again_opts.resume);
  const auto resumed = train::tune(again_cfg, again_opts);
  EXPECT_EQ(resumed.summary.at("status"), "done");
  EXPECT_EQ(resumed.summary.at("candidates"), straight.summary.at("candidates"));
  EXPECT_EQ(eval::tune_ranking(resumed.summary), eval::tune_ranking(straight.summary));
}


TEST(TuneCli, TuneAndLrFindRunFromTheCommandLineAndResume) {
  Squares p;
  const std::string file = p.dir / "squares.json";
  test::write_text(file, p.config("cli").resolved.dump(2));
  auto r = test::run_tltrain("tune --config " + file + " --budget 10m --trials 3 --no-lr-find");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank  cand  rung  val_accuracy"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("wrote " + (p.dir / "cli/tune/best_config.json")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tltrain fit --config " + (p.dir / "cli/tune/best_config.json")), std::string::npos) << r.output;
  // A finished search resumed has nothing left to train and names the same winner.
  const json before = config::parse_json_file(p.dir / "cli/tune/tune.json").at("best");
  r = test::run_tltrain("tune --resume " + (p.dir / "cli/tune") + " --budget 20m");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("info: stage"), std::string::npos) << "a finished search trained again: " << r.output;
  const json after = config::parse_json_file(p.dir / "cli/tune/tune.json");
  EXPECT_EQ(after.at("best").at("candidate"), before.at("candidate"));
  EXPECT_DOUBLE_EQ(after.at("options").at("budget_s").get<double>(), 600) << "the recorded budget is the search's first";
  r = test::run_tltrain("tune --budget 1m");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  r = test::run_tltrain("tune --config " + file + " --budget soon");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  EXPECT_NE(r.output.find("--budget 'soon'"), std::string::npos) << r.output;

  r = test::run_tltrain("lr-find --config " + file + " --steps 12 --end-lr 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("suggested learning rates: valley"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--set stages[0].optimizer.lr="), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(p.dir / "cli/lr_find/stage0/lr_find.html"));
}

TEST(TuneCli, TrialsRunOnePerRankUnderALaunchAndRankAsOneProcessDoes) {
  if (!dist::gloo_available()) GTEST_SKIP() << "this build has no c10d Gloo (install libgloo-dev)";
  Squares p;
  const std::string file = p.dir / "squares.json";
  json c = p.config("unused").resolved;
  test::write_color_dataset(p.dir / "val_ok", {"blue", "green", "red"}, 3);  // the winner's fit reports on it
  c["data"]["val"] = p.dir / "val_ok";
  test::write_text(file, c.dump(2));
  const std::string search = " --budget 10m --trials 4 --no-lr-find --set output_dir=";
  auto one = test::run_tltrain("tune --config " + file + search + (p.dir / "one"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = test::run_tltrain("launch --nproc 2 -- tune --config " + file + " --fit" + search + (p.dir / "two"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const json a = config::parse_json_file(p.dir / "one/tune/tune.json"), b = config::parse_json_file(p.dir / "two/tune/tune.json");
  // The same trials, value for value, whichever process trained each.
  EXPECT_EQ(eval::tune_ranking(a), eval::tune_ranking(b));
  for (const char* k : {"candidate", "rung", "value", "tiebreak"}) EXPECT_EQ(a.at("best").at(k), b.at("best").at(k)) << k;
  std::set<int> ranks;
  for (const auto& x : b.at("results"))
    if (!x.value("carried", false)) ranks.insert(x.at("rank").get<int>());
  EXPECT_EQ(ranks, (std::set<int>{0, 1})) << "one rank trained every trial";
  size_t tables = 0;
  for (size_t at = two.output.find("rank  cand  rung"); at != std::string::npos; at = two.output.find("rank  cand  rung", at + 1)) ++tables;
  EXPECT_EQ(tables, 1u) << "rank 0 alone prints the ranking: " << two.output;
  // --fit: the winner trained data-parallel on the same launch.
  EXPECT_NE(two.output.find("data-parallel: 2 ranks"), std::string::npos) << two.output;
  EXPECT_TRUE(fs::exists(p.dir / "two/tune/best/checkpoints/best.pt"));
}

TEST(Tune, ABudgetSpentMidSearchNamesTheBestSoFarAndAChangedTrainingFolderIsRefused) {
  Squares p;
  const auto cfg = p.config("partial");
  std::atomic<bool> done{false};
  std::thread stopper([&] {  // Ctrl-C once two results are in (as in the resume test)
    const std::string state = cfg.output_dir + "/tune/tune.json";
    while (!done) {
      try {
        if (fs::exists(state) && config::parse_json_file(state).at("results").size() >= 2) train::request_stop();
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  try {
    train::tune(cfg, quick());
  } catch (const Error&) {
  }
  done = true;
  stopper.join();
  const json stopped = config::parse_json_file(cfg.output_dir + "/tune/tune.json");
  ASSERT_GE(stopped.at("results").size(), 2u);
  ASSERT_LT(stopped.at("results").size(), 6u) << "the search finished its first rung before the stop: the test proved nothing";
  // Resumed with the budget it has already spent: no candidate starts, and the winner is the best
  // first-rung result so far.
  auto [again_cfg, again] = train::load_tune_dir(cfg.output_dir + "/tune");
  again.budget_s = stopped.at("seconds").get<double>();
  const auto r = train::tune(again_cfg, again);
  EXPECT_EQ(r.summary.at("status"), "budget spent");
  EXPECT_EQ(r.summary.at("results").size(), stopped.at("results").size()) << "a candidate started after the budget";
  std::vector<json> firsts;
  for (const auto& x : stopped.at("results")) firsts.push_back(x);
  std::stable_sort(firsts.begin(), firsts.end(), [](const json& a, const json& b) {
    if (a.at("value") != b.at("value")) return a.at("value").get<double>() > b.at("value").get<double>();
    if ((a.at("candidate") == 0) != (b.at("candidate") == 0)) return a.at("candidate") == 0;  // the config on a tie
    return a.at("tiebreak").get<double>() < b.at("tiebreak").get<double>();
  });
  EXPECT_EQ(r.summary.at("best").at("candidate"), firsts[0].at("candidate"));
  EXPECT_EQ(r.summary.at("best").at("rung"), 0);
  EXPECT_TRUE(fs::exists(r.best_config));
  // One more image in the training folder: the search's split is no longer the one it judged.
  test::write_color_dataset(p.dir / "more", {"red"}, 1);
  for (const auto& e : fs::directory_iterator(p.dir / "more/red")) fs::copy_file(e.path(), p.dir / "train/red/extra.png");
  test::expect_error([&] { train::tune(again_cfg, again); }, ErrorKind::Data, "has changed since the search");
}

TEST(Tune, ABudgetSpentDuringALaterRungJudgesTheRungBeforeIt) {
  Squares p;
  // A search whose last rung holds a figure carried up (the config's 4-epoch schedule is done at
  // rung 1) beside one still to train: the searches are deterministic, so the first such trial
  // count is the same on every run.
  train::TuneResult full;
  json state;
  for (int64_t trials : {6, 9, 12, 15}) {
    auto o = quick();
    o.trials = trials;
    full = train::tune(p.config("cut" + std::to_string(trials)), o);
    bool carried = false, trained = false;
    for (const auto& x : full.summary.at("results"))
      if (x.at("rung") == 2) (x.value("carried", false) ? carried : trained) = true;
    if (carried && trained) {
      state = full.summary;
      break;
    }
  }
  ASSERT_FALSE(state.is_null()) << "no search had both: the test could not fail";
  // As if the budget had run out once the last rung had started: its trained results are gone,
  // and the resumed search may start nothing more.
  json kept = json::array();
  for (const auto& x : state.at("results"))
    if (x.at("rung") != 2 || x.value("carried", false)) kept.push_back(x);
  state["results"] = kept;
  state.erase("best");
  test::write_text(full.dir + "/tune.json", state.dump());
  auto [again_cfg, again] = train::load_tune_dir(full.dir);
  again.budget_s = state.at("seconds").get<double>();
  const auto r = train::tune(again_cfg, again);
  EXPECT_EQ(r.summary.at("status"), "budget spent");
  EXPECT_EQ(r.summary.at("best").at("rung"), 1) << "a figure carried into the unfinished rung won";
  EXPECT_EQ(eval::tune_ranking(r.summary)[0].at("candidate"), r.summary.at("best").at("candidate"));
  EXPECT_EQ(eval::tune_ranking(r.summary)[0].at("rung"), 1);
}

TEST(Tune, ABudgetSpentBeforeAnyCandidateSaysSoAndAResumeWithMoreFinishes) {
  Squares p;
  const auto cfg = p.config("budget");
  auto o = quick();
  o.budget_s = 1e-9;  // spent before the first candidate starts
  test::expect_error([&] { train::tune(cfg, o); }, ErrorKind::Usage, "ended before any candidate finished");
  const json state = config::parse_json_file(cfg.output_dir + "/tune/tune.json");
  EXPECT_EQ(state.at("results").size(), 0u);
  EXPECT_EQ(state.at("candidates").size(), 6u) << "the search's candidates are recorded before it trains";
  auto [again_cfg, again] = train::load_tune_dir(cfg.output_dir + "/tune");
  EXPECT_DOUBLE_EQ(again.budget_s, 1e-9);
  again.budget_s = 3600;
  const auto r = train::tune(again_cfg, again);
  EXPECT_EQ(r.summary.at("status"), "done");
  EXPECT_EQ(r.summary.at("candidates"), state.at("candidates"));
  EXPECT_TRUE(fs::exists(r.best_config));
}
