// The search's page (train::tune's tune.json): the ranking, and what mattered — for each
// dimension, the mean holdout figure of each of its values over the first rung's candidates.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <sstream>

#include "html.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/fs.h"
#include "tltrain/eval/report.h"

namespace tltrain::eval {

using config::json;
using namespace html;

namespace {

/// The value of dimension KEY in RECIPE as a row label; rates by decade, so they group.
std::string bucket(const std::string& key, const json& recipe) {
  const json& v = recipe.at(key);
  if (key == "head_lr" || key == "finetune_lr") {
    if (key == "finetune_lr" && recipe.at("unfreeze").get<double>() == 0) return "";  // no fine-tune stage
    const double d = std::floor(std::log10(v.get<double>()));
    return "1e" + num(d, 3) + " – 1e" + num(d + 1, 3);
  }
  if (recipe.at("unfreeze").get<double>() == 0 && (key == "optimizer" || key == "backbone_lr_mult" || key == "label_smoothing")) return "";
  if (key == "unfreeze" && v.get<double>() < 0) return "the config's";
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

json tune_ranking(const json& summary) {
  const std::string metric = summary.at("options").at("metric").get<std::string>();
  const bool lower_is_better = metric == "loss" || metric == "val_loss";
  // Each candidate at the highest rung it reached, up to the rung the winner was judged at (a
  // search cut short by its budget judges the last rung every candidate alive finished).
  const size_t cap = summary.contains("best") ? summary.at("best").at("rung").get<size_t>() : SIZE_MAX;
  std::map<size_t, json> top;  // candidate → that result
  for (const auto& r : summary.at("results")) {
    const size_t c = r.at("candidate").get<size_t>(), rung = r.at("rung").get<size_t>();
    if (rung <= cap && (!top.count(c) || rung >= top[c].at("rung").get<size_t>())) top[c] = r;
  }
  std::vector<json> rows;
  for (const auto& [c, r] : top)
    rows.push_back({{"candidate", c}, {"rung", r.at("rung")}, {"value", r.at("value")}, {"tiebreak", r.value("tiebreak", 0.0)},
                    {"recipe", summary.at("candidates").at(c)}});
  // As the search ranks: the metric, then on a tie the config itself (candidate 0), then the
  // other of loss and accuracy.
  std::stable_sort(rows.begin(), rows.end(), [&](const json& a, const json& b) {
    if (a.at("rung") != b.at("rung")) return a.at("rung").get<size_t>() > b.at("rung").get<size_t>();
    const double x = a.at("value").get<double>(), y = b.at("value").get<double>();
    if (x != y) return lower_is_better ? x < y : x > y;
    if ((a.at("candidate") == 0) != (b.at("candidate") == 0)) return a.at("candidate") == 0;
    const double s = a.at("tiebreak").get<double>(), t = b.at("tiebreak").get<double>();
    return lower_is_better ? s > t : s < t;
  });
  return rows;
}

std::string write_tune_report(const std::string& dir) {
  const json s = config::parse_json_file(dir + "/tune.json");
  const std::string metric = s.at("options").at("metric").get<std::string>();
  const json rows = tune_ranking(s);
  std::ostringstream h;
  h << page_head("tltrain tune: " + dir) << "<h1>Recipe search</h1>\n<p class=\"note\">" << escape(dir) << " — " << s.at("candidates").size()
    << " candidates, rungs of " << escape(s.at("rungs").dump()) << " fine-tune epochs, " << escape(metric)
    << " on a holdout of the training images (the validation set is not used); " << escape(s.value("status", "")) << " after "
    << num(s.value("seconds", 0.0) / 60, 3) << " min.</p>\n";
  h << "<section id=\"ranking\"><h2>Ranking</h2>\n<table class=\"ranking\"><tr><th>rank</th><th>candidate</th><th>rung</th><th>"
    << escape(metric) << "</th><th>head lr</th><th>head epochs</th><th>unfreeze</th><th>optimizer</th><th>fine-tune lr</th><th>fine-tune epochs</th>"
    << "<th>backbone ×</th><th>smoothing</th><th>augment ×</th></tr>\n";
  int rank = 0;
  for (const auto& r : rows) {
    const json& c = r.at("recipe");
    const bool head_only = c.at("unfreeze").get<double>() == 0;
    const auto ft = [&](const std::string& v) { return head_only ? std::string("–") : v; };
    h << "<tr><td>" << ++rank << "</td><td>" << r.at("candidate") << "</td><td>" << r.at("rung") << "</td><td>"
      << num(r.at("value").get<double>(), 4) << "</td><td>" << num(c.at("head_lr").get<double>(), 3) << "</td><td>" << c.at("head_epochs")
      << "</td><td>"
      << (head_only ? "head only" : c.at("unfreeze").get<double>() < 0 ? "the config's" : num(c.at("unfreeze").get<double>(), 3)) << "</td><td>"
      << ft(escape(c.at("optimizer").get<std::string>())) << "</td><td>" << ft(num(c.at("finetune_lr").get<double>(), 3)) << "</td><td>"
      << ft(c.at("finetune_epochs").dump()) << "</td><td>"
      << ft(num(c.at("backbone_lr_mult").get<double>(), 3)) << "</td><td>" << ft(num(c.at("label_smoothing").get<double>(), 3))
      << "</td><td>" << num(c.at("augment").get<double>(), 3) << "</td></tr>\n";
  }
  h << "</table></section>\n";

  // What mattered: at the first rung every candidate was measured under the same budget. The
  // fine-tune epochs are left out: there they are the rung's for nearly all, so they show nothing.
  std::map<size_t, double> first;
  for (const auto& r : s.at("results"))
    if (r.at("rung").get<size_t>() == 0) first[r.at("candidate").get<size_t>()] = r.at("value").get<double>();
  h << "<section id=\"what-mattered\"><h2>What mattered</h2>\n<p class=\"caption\">Mean " << escape(metric)
    << " at the first rung of the candidates with each value (count in brackets). Few candidates: a hint, not a measurement.</p>\n";
  for (const std::string key : {"unfreeze", "head_lr", "finetune_lr", "optimizer", "backbone_lr_mult", "label_smoothing", "augment", "head_epochs"}) {
    std::map<std::string, std::pair<double, int>> by;
    for (const auto& [c, v] : first) {
      const std::string b = bucket(key, s.at("candidates").at(c));
      if (b.empty()) continue;
      by[b].first += v;
      by[b].second += 1;
    }
    if (by.empty()) continue;
    h << "<table class=\"mattered\"><tr><th>" << escape(key) << "</th><th>mean " << escape(metric) << "</th></tr>\n";
    for (const auto& [b, sum] : by)
      h << "<tr><td>" << escape(b) << "</td><td>" << num(sum.first / sum.second, 4) << " (" << sum.second << ")</td></tr>\n";
    h << "</table>\n";
  }
  h << "</section>\n" << page_tail();
  const std::string path = dir + "/tune_report.html";
  write_file_atomically(path, h.str());
  return path;
}

}  // namespace tltrain::eval
