// The cv report: RUN_DIR/cv_report.html from RUN_DIR/cv.json (train::cross_validate).
#include <filesystem>
#include <sstream>

#include "html.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/eval/report.h"

namespace fs = std::filesystem;

namespace tltrain::eval {

using config::json;
using namespace html;

namespace {

std::string metrics_table(const json& metrics, size_t folds) {
  std::ostringstream o;
  o << "<table id=\"cv-metrics\"><thead><tr><th>metric</th><th>mean</th><th>± std</th><th>95% interval of the mean</th>";
  for (size_t f = 0; f < folds; ++f) o << "<th>" << f + 1 << "</th>";
  o << "</tr></thead><tbody>\n";
  for (const auto& [key, m] : metrics.items()) {
    const double mean = m.at("mean").get<double>(), ci = m.at("ci95").get<double>();
    o << "<tr><td>" << escape(key) << "</td><td>" << num(mean, 4) << "</td><td>" << num(m.at("std").get<double>(), 3) << "</td><td>["
      << num(mean - ci, 4) << ", " << num(mean + ci, 4) << "]</td>";
    for (const auto& v : m.at("values")) o << "<td>" << num(v.get<double>(), 4) << "</td>";
    o << "</tr>\n";
  }
  o << "</tbody></table>\n";
  return o.str();
}

std::string folds_table(const json& folds, bool repeated) {
  std::ostringstream o;
  o << "<table id=\"cv-folds\"><thead><tr><th>fold</th><th>training images</th><th>validation images</th><th>best epoch</th>"
       "<th>val_accuracy</th><th>val_loss</th><th>run</th></tr></thead><tbody>\n";
  for (const auto& f : folds) {
    const json& b = f.at("best");
 o << "<tr><td>" << (repeated ? "repeat " + std::to_string(f.value("repeat", 1)) + ", " : "") << "fold " << f.value("fold", 0) << "</td><td>" << f.value("train_images", 0) << "</td><td>" << f.value("val_images", 0)
      << "</td><td>" << escape(b.value("stage_name", "")) << " " << b.value("epoch", 0) << "</td><td>"
      << (b.contains("val_accuracy") ? percent(b["val_accuracy"].get<double>()) : "—") << "</td><td>"
      << (b.contains("val_loss") ? num(b["val_loss"].get<double>(), 4) : "—") << "</td><td class=\"file\">" << escape(f.value("dir", ""))
      << "</td></tr>\n";
  }
  o << "</tbody></table>\n";
  return o.str();
}

}  // namespace

std::string write_cv_report(const std::string& dir) {
  const std::string path = dir + "/cv.json";
  json cv;
  try {
    cv = json::parse(read_file(path, "cv summary"));
  } catch (const json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not valid JSON (" + e.what() + ")");
  }
  TLTRAIN_CHECK(cv.value("status", "") == "done", ErrorKind::Data,
                "'" + dir + "' holds an unfinished cv run: finish it with `tltrain cv --resume " + dir + "`");
  const json& opt = cv.at("options");
  const json& folds = cv.at("folds");
  std::ostringstream h;
  h << page_head("tltrain cv report: " + fs::path(dir).filename().string());
  h << "<h1>Cross-validation: " << escape(fs::path(dir).filename().string()) << "</h1>\n<p class=\"sub\">"
    << escape(fs::absolute(dir).string()) << " · " << opt.value("folds", 0) << " stratified folds"
    << (opt.value("repeats", 1) > 1 ? " × " + std::to_string(opt.value("repeats", 1)) + " repeats" : "") << " of "
    << opt.value("images", 0) << " images (" << escape(opt.value("source", "")) << "), seed " << opt.value("seed", 0)
    << "; each fold's best epoch by " << escape(opt.value("monitor", "")) << "</p>\n";
  h << "<section id=\"metrics\"><h2>Metrics over the folds</h2>\n" << metrics_table(cv.at("metrics"), folds.size())
    << "<p class=\"caption\">The interval is Student's t over the folds' values; folds share training images, so it is a "
       "guide to the spread, not an exact confidence interval.</p></section>\n";
  h << "<section id=\"folds\"><h2>Folds</h2>\n" << folds_table(folds, opt.value("repeats", 1) > 1) << "</section>\n";
  h << "<section id=\"oof\"><h2>Out-of-fold predictions</h2>\n<p>Every image predicted by the fold that held it out "
       "(<code>oof_predictions.csv</code>).</p>\n";
  for (const auto& r : cv.at("out_of_fold")) {
    h << "<p>" << (cv.at("out_of_fold").size() > 1 ? "Repeat " + std::to_string(r.value("repeat", 1)) + ": " : "")
      << "accuracy <b>" << percent(r.value("accuracy", 0.0)) << "</b> over " << r.value("images", 0) << " images</p>\n";
    bool any = false;
    for (const auto& row : r.at("confusion"))
      for (const auto& c : row) any = any || c.get<int64_t>() > 0;
    if (any && &r == &cv.at("out_of_fold")[0])
      h << "<figure>" << confusion_svg({{"classes", opt.at("classes")}, {"confusion", r.at("confusion")}})
        << "<figcaption class=\"caption\">Out-of-fold confusion matrix: rows are true classes.</figcaption></figure>\n";
  }
  h << "</section>\n" << page_tail();
  const std::string out = dir + "/cv_report.html";
  write_file_atomically(out, h.str());
  return out;
}

}  // namespace tltrain::eval
