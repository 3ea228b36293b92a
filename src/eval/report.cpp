#include "tltrain/eval/report.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/skipped.h"
#include "html.h"
#include "lr_find_page.h"

namespace fs = std::filesystem;

namespace tltrain::eval {

using config::json;
using namespace html;

namespace {

constexpr int kThumb = 96;         ///< longer side of a mistake thumbnail, px
constexpr size_t kMaxMistakes = 24;  ///< the page stays small (~4 KB per thumbnail)


std::string base64(const std::vector<unsigned char>& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint32_t(in[i]) << 16) | (uint32_t(in[i + 1]) << 8) | in[i + 2];
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += t[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint32_t(in[i]) << 16;
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint32_t(in[i]) << 16) | (uint32_t(in[i + 1]) << 8);
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

/// A number from a log entry, or nullopt when absent, null or not finite (a diverged epoch).
std::optional<double> field(const json& e, const char* key) {
  if (!e.contains(key) || !e[key].is_number()) return std::nullopt;
  double v = e[key].get<double>();
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}


/// PATH as an inline JPEG no larger than kThumb, or "" when it cannot be decoded any more.
std::string thumbnail_uri(const std::string& path, std::string& why) {
  data::DecodeOptions d;
  d.min_short_side = kThumb;  // a reduced JPEG decode is enough for 96 px
  data::DecodeResult r = data::decode_file(path, d);
  if (!r.ok()) {
    why = r.reason();
    return "";
  }
  // Small images (Fashion-MNIST's 28 px) are enlarged with visible pixels rather than blurred.
  double s = static_cast<double>(kThumb) / std::max(r.image.cols, r.image.rows);
  cv::Mat small;
  cv::resize(r.image, small, cv::Size(), s, s, s < 1 ? cv::INTER_AREA : cv::INTER_NEAREST);
  std::vector<unsigned char> jpg;
  if (!cv::imencode(".jpg", small, jpg, {cv::IMWRITE_JPEG_QUALITY, 85})) {
    why = "could not encode a thumbnail";
    return "";
  }
  return "data:image/jpeg;base64," + base64(jpg);
}

std::string mistakes_html(const json& ev) {
  const auto classes = ev.at("classes").get<std::vector<std::string>>();
  const json& ms = ev.at("mistakes");
  std::ostringstream o;
  auto name_of = [&](int64_t k) { return k >= 0 && static_cast<size_t>(k) < classes.size() ? classes[static_cast<size_t>(k)] : "?"; };
  size_t shown = std::min(ms.size(), kMaxMistakes);
  o << "<p>" << ms.size() << " misclassified image" << (ms.size() == 1 ? "" : "s");
  if (shown < ms.size()) o << "; the " << shown << " most confident are shown";
  o << ". Caption: true class → predicted class (the predicted class's probability).</p>\n";
  if (ms.empty()) return o.str() + "<p class=\"none\">No mistakes on this data.</p>\n";
  o << "<div class=\"mistakes\">\n";
  for (size_t i = 0; i < shown; ++i) {
    const json& m = ms[i];
    std::string path = m.value("path", std::string());
    std::string why, uri = path.empty() ? "" : thumbnail_uri(path, why);
    if (path.empty()) why = "no path recorded";
    o << "<figure class=\"mistake\" title=\"" << escape(path) << "\">";
    if (!uri.empty())
      o << "<img class=\"thumb\" alt=\"" << escape(fs::path(path).filename().string()) << "\" src=\"" << uri << "\">";
    else
      o << "<div class=\"thumb-missing\">" << escape(why) << "</div>";
    o << "<figcaption><b>" << escape(name_of(m.value("label", int64_t{-1}))) << "</b> → <b class=\"wrong\">"
      << escape(name_of(m.value("predicted", int64_t{-1}))) << "</b> (" << percent(m.value("confidence", 0.0)) << ")<br><span class=\"file\">"
      << escape(shorten(fs::path(path).filename().string(), 28)) << "</span></figcaption></figure>\n";
  }
  o << "</div>\n";
  return o.str();
}

std::string per_class_table(const json& ev) {
  std::ostringstream o;
  const bool ap = ev.contains("multilabel");
  o << "<table class=\"per-class\"><thead><tr><th>class</th>" << (ap ? "<th>AP</th>" : "")
    << "<th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>\n";
  for (const auto& c : ev.at("per_class"))
    o << "<tr><td>" << escape(c.value("name", std::string())) << "</td>"
      << (ap ? "<td>" + (c["average_precision"].is_number() ? num(c["average_precision"].get<double>(), 3) : std::string("n/a")) + "</td>" : "")
      << "<td>" << num(c.value("precision", 0.0), 3) << "</td><td>"
      << num(c.value("recall", 0.0), 3) << "</td><td>" << num(c.value("f1", 0.0), 3) << "</td><td>" << c.value("support", int64_t{0})
      << "</td></tr>\n";
  o << "<tr class=\"avg\"><td>macro avg</td>" << (ap ? "<td></td>" : "") << "<td>" << num(ev.value("macro_precision", 0.0), 3) << "</td><td>"
    << num(ev.value("macro_recall", 0.0), 3) << "</td><td>" << num(ev.value("macro_f1", 0.0), 3) << "</td><td>" << ev.value("samples", int64_t{0})
    << "</td></tr></tbody></table>\n";
  return o.str();
}

json read_json(const std::string& path) {
  try {
    return json::parse(read_file(path, "run file"));
  } catch (const json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not valid JSON (" + e.what() + ")");
  }
}

json read_log(const std::string& path) {
  json history = json::array();
  std::istringstream in(read_file(path, "training log"));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      history.push_back(json::parse(line));
    } catch (const json::exception& e) {
      TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' line " + std::to_string(n) + " is not JSON (" + e.what() + ")");
    }
  }
  return history;
}


std::string card(const std::string& value, const std::string& key) {
  return "<div class=\"card\"><div class=\"v\">" + escape(value) + "</div><div class=\"k\">" + escape(key) + "</div></div>";
}

/// One row per (what, split): the count and its reasons' kinds, from a skipped.json-shaped object.
std::string skipped_rows(const std::string& what, const json& skipped) {
  std::ostringstream h;
  if (!skipped.is_object() || !skipped.contains("files")) return "";
  std::map<std::string, std::map<std::string, int64_t>> kinds;  // split → kind → count
  for (const auto& f : skipped["files"])
    kinds[f.value("split", std::string("?"))][data::reason_kind(f.value("reason", std::string("?")))]++;
  for (const auto& [split, by_kind] : kinds) {
    int64_t n = 0;
    std::string reasons;
    for (const auto& [kind, count] : by_kind) {
      n += count;
      reasons += (reasons.empty() ? "" : "; ") + escape(kind) + " " + std::to_string(count);
    }
    h << "<tr><td>" << escape(what) << "</td><td>" << escape(split) << "</td><td>" << n << "</td><td>" << reasons << "</td></tr>\n";
  }
  return h.str();
}

std::string skipped_section(const std::optional<json>& training, const std::optional<json>& ev) {
  std::ostringstream h;
  h << "<section id=\"skipped\"><h2>Files left out</h2>\n";
  const std::string rows = (training ? skipped_rows("training", *training) : "") +
                           (ev && ev->contains("skipped") ? skipped_rows("evaluation", (*ev)["skipped"]) : "");
  if (!training) {
    h << "<p class=\"note\">No skipped.json in this run directory (written by fit since files left out are recorded).</p>\n";
  } else if (rows.empty()) {
    h << "<p class=\"note\" id=\"skipped-none\">No file was left out: every file under the data folders was an image that decoded.</p>\n";
  }
  if (!rows.empty())
    h << "<table id=\"skipped-table\"><tr><th>during</th><th>split</th><th>files</th><th>why</th></tr>\n" << rows
      << "</table>\n<p class=\"caption\">Every file is listed with its reason in skipped.json (training) and in eval.json's "
         "\"skipped\" (evaluation).</p>\n";
  h << "</section>\n";
  return h.str();
}

/// The training curves of a history (log.jsonl), against the global epoch; stage boundaries
/// halfway between a stage's last epoch and the next one's first (early stopping can leave a gap).
struct Curves {
  Series loss{"train loss", "#1f77b4"}, val_loss{"val loss", "#ff7f0e", true};
  Series acc{"train accuracy", "#1f77b4"}, val_acc{"val accuracy", "#ff7f0e", true};
  Series lr{"head lr", "#2ca02c"}, lr_bb{"backbone lr", "#9467bd", true};
  std::vector<Boundary> epoch_bounds, step_bounds;
  std::string first_stage;
  double best_val_acc = -1, total_seconds = 0;
};

std::string stage_label(const json& e) {
  return "stage " + std::to_string(e.value("stage", 0)) +
         (e.contains("stage_name") && e["stage_name"].is_string() ? ": " + e["stage_name"].get<std::string>() : std::string());
}

Curves curves_of(const json& history) {
  Curves c;
  c.first_stage = stage_label(history[0]);
  for (size_t i = 0; i < history.size(); ++i) {
    const json& e = history[i];
    auto ge = field(e, "global_epoch");
    double x = ge ? *ge : static_cast<double>(i + 1);
    if (auto v = field(e, "loss")) c.loss.points.emplace_back(x, *v);
    if (auto v = field(e, "val_loss")) c.val_loss.points.emplace_back(x, *v);
    if (auto v = field(e, "accuracy")) c.acc.points.emplace_back(x, *v);
    if (auto v = field(e, "val_accuracy")) {
      c.val_acc.points.emplace_back(x, *v);
      c.best_val_acc = std::max(c.best_val_acc, *v);
    }
    // An epoch's rate is held over its steps: from the previous epoch's last step to its own.
    double step = field(e, "step").value_or(x);
    double prev_step = i > 0 ? field(history[i - 1], "step").value_or(0) : 0;
    if (auto v = field(e, "lr")) c.lr.points.emplace_back(step, *v), c.lr.starts.push_back(prev_step);
    if (auto v = field(e, "lr_backbone")) c.lr_bb.points.emplace_back(step, *v), c.lr_bb.starts.push_back(prev_step);
    c.total_seconds += field(e, "seconds").value_or(0);
    if (i > 0 && e.value("stage", 0) != history[i - 1].value("stage", 0)) {
      double prev = field(history[i - 1], "global_epoch").value_or(x - 1);
      c.epoch_bounds.push_back({(prev + x) / 2, stage_label(e)});
      c.step_bounds.push_back({field(history[i - 1], "step").value_or(step), stage_label(e)});
    }
  }
  return c;
}

std::string summary_section(const json& cfg, const json& history, const Curves& c, const std::optional<json>& ev) {
  std::ostringstream h;
  const json& last = history.back();
  h << "<section id=\"summary\"><div class=\"cards\">";
  h << card(std::to_string(history.size()), "epochs (" + std::to_string(cfg.contains("stages") ? cfg["stages"].size() : 0) + " stages)");
  if (auto v = field(last, "loss")) h << card(num(*v, 4), "final train loss");
  if (auto v = field(last, "accuracy")) h << card(percent(*v), "final train accuracy");
  if (auto v = field(last, "val_accuracy")) h << card(percent(*v), "final val accuracy");
  if (c.best_val_acc >= 0) h << card(percent(c.best_val_acc), "best val accuracy");
  if (ev) {
    if (ev->contains("multilabel")) {
      const json& m = (*ev)["multilabel"];
      if (auto v = field(m, "mean_average_precision")) h << card(num(*v, 3), "eval mAP");
      if (auto v = field(m, "micro_f1")) h << card(num(*v, 3), "eval micro F1");
      h << card(percent(ev->value("accuracy", 0.0)), "eval exact match");
    } else {
      h << card(percent(ev->value("accuracy", 0.0)), "eval accuracy");
      h << card(percent(ev->value("topk_accuracy", 0.0)), "eval top-" + std::to_string(ev->value("topk", 5)));
    }
    if (auto v = field(*ev, "roc_auc")) h << card(num(*v, 3), "eval ROC-AUC");
    if (auto v = field(*ev, "average_precision")) h << card(num(*v, 3), "eval PR-AUC (AP)");
  }
  char took[32];
  if (c.total_seconds < 90) std::snprintf(took, sizeof took, "%.1f s", c.total_seconds);
  else std::snprintf(took, sizeof took, "%.1f min", c.total_seconds / 60);
  h << card(took, "training time") << "</div></section>\n";
  return h.str();
}

std::string curves_section(const Curves& c) {
  std::ostringstream h;
  h << "<section id=\"curves\"><h2>Training curves</h2>\n<div class=\"charts\">\n";
  h << line_chart({"plot-loss", "Loss", "epoch (across stages)", "cross-entropy", std::nullopt, true, c.first_stage}, {c.loss, c.val_loss},
                  c.epoch_bounds);
  h << line_chart({"plot-accuracy", "Accuracy", "epoch (across stages)", "top-1 accuracy", std::make_pair(0.0, 1.0), true, c.first_stage},
                  {c.acc, c.val_acc}, c.epoch_bounds);
  h << line_chart({"plot-lr", "Learning rate", "optimizer step", "learning rate", std::nullopt, false, c.first_stage}, {c.lr, c.lr_bb},
                  c.step_bounds);
  h << "</div>\n<p class=\"caption\">Train values are the epoch's running mean over its batches (with augmentation and, where "
       "the stage trains it, dropout); validation is measured after the epoch. Dashed vertical lines mark where a stage starts. "
       "Learning rate: one value per epoch, held over its steps — log.jsonl records the rate of each epoch's last step, so a per-step "
       "schedule (warm-up, cosine) shows only at epoch resolution; the backbone's rate is drawn where a stage trains part of it.</p>\n"
       "</section>\n";
  return h.str();
}

std::string evaluation_section(const std::optional<json>& ev, const std::string& run_dir) {
  std::ostringstream h;
  h << "<section id=\"evaluation\"><h2>Evaluation</h2>\n";
  if (!ev) {
    h << "<p class=\"note\">No eval.json in this run directory (the run has no validation data, or it was not evaluated): run "
         "<code>tltrain eval --checkpoint "
      << escape(run_dir) << "/checkpoints/best.pt --data DIR</code> to add the confusion matrix and the mistakes.</p></section>\n";
    return h.str();
  }
  std::string on = ev->contains("data") && (*ev)["data"].is_string() ? (*ev)["data"].get<std::string>() : "";
  std::string ck = ev->contains("checkpoint") && (*ev)["checkpoint"].is_string() ? (*ev)["checkpoint"].get<std::string>() : "";
  h << "<p class=\"note\">From eval.json" << (ck.empty() ? "" : ": " + escape(fs::path(ck).filename().string()))
    << (on.empty() ? "" : " on " + escape(on)) << " — " << ev->value("samples", int64_t{0}) << " images, loss "
    << num(ev->value("loss", 0.0), 4) << ", accuracy " << percent(ev->value("accuracy", 0.0)) << ".</p>\n";
  if (ev->contains("multilabel")) {  // no single predicted class: no confusion matrix or mistakes
    h << per_class_table(*ev) << "</section>\n";
    return h.str();
  }
  h << "<div class=\"cm-row\"><figure>" << confusion_svg(*ev)
    << "<figcaption class=\"caption\">Confusion matrix: rows are true classes, columns predictions; the colour is the share of "
       "the row.</figcaption></figure>\n"
    << per_class_table(*ev) << "</div>\n";
  h << "</section>\n<section id=\"mistakes\"><h2>Most confident mistakes</h2>\n" << mistakes_html(*ev) << "</section>\n";
  return h.str();
}

/// RUN_DIR/model.svg (train's ModelDiagram) inline, without its XML prolog; a pointer to
/// model.dot when Graphviz was missing; nothing for runs from before the diagram.
std::string model_section(const std::string& run_dir) {
  std::string body;
  if (fs::exists(run_dir + "/model.svg")) {
    const std::string svg = read_file(run_dir + "/model.svg", "model diagram");
    const size_t at = svg.find("<svg");
    if (at == std::string::npos) return "";
    // Inline SVG needs no namespace declarations; without them the page names no URL at all.
    std::string inline_svg = svg.substr(at);
    for (const std::string attr : {" xmlns=\"http://www.w3.org/2000/svg\"", " xmlns:xlink=\"http://www.w3.org/1999/xlink\""})
      if (const size_t a = inline_svg.find(attr); a != std::string::npos) inline_svg.erase(a, attr.size());
    body = "<figure class=\"diagram\">" + inline_svg +
           "<figcaption class=\"caption\">Blocks with their output shapes, the head, and per stage (columns) what is frozen and what "
           "trains.</figcaption></figure>\n";
  } else if (fs::exists(run_dir + "/model.dot")) {
    body = "<p class=\"note\">Graphviz was not installed when the run started: <code>dot -Tsvg model.dot</code> draws the diagram.</p>\n";
  } else {
    return "";
  }
  return "<section id=\"model\"><h2>Model and freeze plan</h2>\n" + body + "</section>\n";
}

}  // namespace

std::string write_report(const std::string& run_dir) {
  const std::string cfg_path = run_dir + "/config.json", log_path = run_dir + "/log.jsonl", eval_path = run_dir + "/eval.json";
  TLTRAIN_CHECK(fs::exists(cfg_path), ErrorKind::Data, "'" + run_dir + "' is not a tltrain run directory (no config.json)");
  TLTRAIN_CHECK(fs::exists(log_path), ErrorKind::Data,
                "'" + run_dir + "' has no log.jsonl: no epoch has finished yet (the report needs at least one)");
  const json cfg = read_json(cfg_path);
  const json history = read_log(log_path);
  TLTRAIN_CHECK(!history.empty(), ErrorKind::Data, "'" + log_path + "' is empty: no epoch has finished yet");
  std::optional<json> ev;
  if (fs::exists(eval_path)) ev = read_json(eval_path);
  std::optional<json> skipped;
  if (fs::exists(run_dir + "/skipped.json")) skipped = read_json(run_dir + "/skipped.json");
  const Curves curves = curves_of(history);

  std::ostringstream h;
  const std::string name = cfg.value("name", fs::path(run_dir).filename().string());
  std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
  h << html::page_head("tltrain report: " + name);
  h << "<h1>Run report: " << escape(name) << "</h1>\n<p class=\"sub\">" << escape(fs::absolute(run_dir).string()) << " · generated " << date
    << " by tltrain</p>\n";
  h << summary_section(cfg, history, curves, ev) << curves_section(curves) << evaluation_section(ev, run_dir)
    << skipped_section(skipped, ev) << lr_find_section(run_dir) << model_section(run_dir);
  h << "<section id=\"config\"><h2>Config (resolved)</h2>\n<pre id=\"config-json\">" << escape(cfg.dump(2)) << "</pre></section>\n";
  h << html::page_tail();

  const std::string out = run_dir + "/report.html";
  write_file_atomically(out, h.str());
  return out;
}

}  // namespace tltrain::eval
