// The learning-rate range test's curve (train::find_lr's lr_find.json) as a chart: in its own
// page beside the json, and in the run report for every test run in RUN_DIR/lr_find/.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "html.h"
#include "lr_find_page.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/eval/report.h"

namespace fs = std::filesystem;

namespace tltrain::eval {

using config::json;
using namespace html;

std::string lr_find_figure(const json& r, const std::string& id) {
  Series smooth("smoothed loss", "#1f77b4"), raw("loss of each step", "#aaaaaa", true);
  double top = 0;
  for (const auto& p : r.at("points"))
    if (std::isfinite(p.at("smoothed").get<double>())) top = std::max(top, p.at("smoothed").get<double>());
  for (const auto& p : r.at("points")) {
    const double x = std::log10(p.at("lr").get<double>()), s = p.at("smoothed").get<double>(), l = p.at("loss").get<double>();
    if (std::isfinite(s)) smooth.points.emplace_back(x, s);
    if (std::isfinite(l)) raw.points.emplace_back(x, std::min(l, 1.5 * top));  // a diverged step would flatten the curve
  }
  const auto& sug = r.at("suggestion");
  std::vector<Boundary> marks;
  for (const char* k : {"valley", "steep", "minimum"})
    marks.push_back({std::log10(sug.at(k).get<double>()), std::string(k) + " " + num(sug.at(k).get<double>(), 2)});
  std::ostringstream h;
  h << line_chart({id, "Learning-rate range test", "log10 learning rate", "loss", std::nullopt, false, ""}, {raw, smooth}, marks)
    << "<p class=\"caption\">" << r.at("points").size() << " steps, the rate growing exponentially"
    << (r.value("diverged", false)
            ? "; stopped where the smoothed loss passed " + num(r.contains("options") ? r["options"].value("diverge", 4.0) : 4.0, 3) + "× its best"
            : "")
    << ". Suggested rates (fastai's): valley " << num(sug.at("valley").get<double>(), 3) << " (its default), steep "
    << num(sug.at("steep").get<double>(), 3) << ", minimum/10 " << num(sug.at("minimum").get<double>(), 3) << ".</p>\n";
  return h.str();
}

std::string lr_find_section(const std::string& run_dir) {
  const std::string root = run_dir + "/lr_find";
  if (!fs::is_directory(root)) return "";
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(root))
    if (fs::exists(e.path() / "lr_find.json")) found.push_back(e.path().string());
  if (found.empty()) return "";
  std::sort(found.begin(), found.end());
  std::ostringstream h;
  h << "<section id=\"lr-find\"><h2>Learning-rate range tests</h2>\n";
  for (const auto& d : found) {
    h << "<h3>" << escape(fs::path(d).filename().string()) << "</h3>\n";
    try {
      h << lr_find_figure(config::parse_json_file(d + "/lr_find.json"), "plot-lr-find-" + fs::path(d).filename().string());
    } catch (const std::exception& e) {  // a damaged test file costs its chart, not the report
      h << "<p class=\"note\">" << escape(d) << "/lr_find.json is unreadable: " << escape(e.what()) << "</p>\n";
    }
  }
  h << "</section>\n";
  return h.str();
}

std::string write_lr_find_page(const std::string& dir) {
  const json r = config::parse_json_file(dir + "/lr_find.json");
  std::ostringstream h;
  h << page_head("tltrain lr-find: " + dir) << "<h1>Learning-rate range test</h1>\n<p class=\"note\">" << escape(dir) << "</p>\n"
    << lr_find_figure(r, "plot-lr-find") << page_tail();
  const std::string path = dir + "/lr_find.html";
  write_file_atomically(path, h.str());
  return path;
}

}  // namespace tltrain::eval
