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

namespace fs = std::filesystem;

namespace tltrain::eval {

using config::json;

namespace {

constexpr int kThumb = 96;         ///< longer side of a mistake thumbnail, px
constexpr size_t kMaxMistakes = 24;  ///< the page stays small (~4 KB per thumbnail)

std::string escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v, int precision = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * v);
  return buf;
}

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

/// Round tick steps (1, 2, 5 × 10^k) covering [LO, HI] with about N intervals.
std::vector<double> nice_ticks(double lo, double hi, int n, double& out_lo, double& out_hi) {
  if (!(hi > lo)) {
    double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  double raw = (hi - lo) / n;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double norm = raw / mag;
  double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  out_lo = std::floor(lo / step + 1e-9) * step;
  out_hi = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (double v = out_lo; v <= out_hi + step * 1e-6; v += step) ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return ticks;
}

struct Series {
  Series(std::string n, std::string c, bool d = false) : name(std::move(n)), color(std::move(c)), dashed(d) {}
  std::string name, color;
  bool dashed = false;
  std::vector<std::pair<double, double>> points;
  /// When set (one per point): the value held from starts[i] to points[i].x, drawn as steps.
  std::vector<double> starts;
};

struct Boundary {
  double x;
  std::string label;  ///< the stage that starts here
};

struct ChartSpec {
  std::string id, title, x_label, y_label;
  std::optional<std::pair<double, double>> y_range;  ///< fixed y domain (accuracy: [0, 1])
  bool integer_x = false;                            ///< epochs: only whole-number x ticks
  std::string first_stage_label;                     ///< written at the left edge
};

/// A line chart as inline SVG: class="series" polylines (one per non-empty series), class="point"
/// markers so a one-epoch run still shows something, dashed class="stage-boundary" lines.
std::string line_chart(const ChartSpec& spec, const std::vector<Series>& all_series, const std::vector<Boundary>& boundaries) {
  const double W = 560, H = 320, ml = 64, mr = 16, mt = 44, mb = 46;
  const double pw = W - ml - mr, ph = H - mt - mb;
  std::vector<const Series*> series;
  for (const auto& s : all_series)
    if (!s.points.empty()) series.push_back(&s);

  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto* s : series) {
    for (auto [x, y] : s->points) {
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    for (double x : s->starts) xmin = std::min(xmin, x);
  }
  std::ostringstream o;
  o << "<figure class=\"chart-box\"><svg class=\"chart\" id=\"" << spec.id << "\" viewBox=\"0 0 " << W << " " << H << "\" width=\"" << W
    << "\" height=\"" << H << "\" role=\"img\" aria-label=\"" << escape(spec.title) << "\">\n";
  o << "<text class=\"title\" x=\"" << ml << "\" y=\"18\">" << escape(spec.title) << "</text>\n";
  if (series.empty()) {
    o << "<text class=\"empty\" x=\"" << W / 2 << "\" y=\"" << H / 2 << "\" text-anchor=\"middle\">no data in log.jsonl</text></svg></figure>\n";
    return o.str();
  }
  if (xmax == xmin) xmin -= 1, xmax += 1;
  double y0, y1;
  std::vector<double> yt;
  if (spec.y_range) {
    y0 = spec.y_range->first, y1 = spec.y_range->second;
    yt = nice_ticks(y0, y1, 5, y0, y1);
  } else {
    yt = nice_ticks(std::min(0.0, ymin), ymax, 5, y0, y1);
  }
  double x0 = xmin, x1 = xmax;
  auto X = [&](double x) { return ml + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return mt + ph - (y - y0) / (y1 - y0) * ph; };

  // Grid and axes.
  for (double t : yt) {
    o << "<line class=\"grid\" x1=\"" << ml << "\" x2=\"" << ml + pw << "\" y1=\"" << px(Y(t)) << "\" y2=\"" << px(Y(t)) << "\"/>"
      << "<text class=\"tick\" x=\"" << ml - 6 << "\" y=\"" << px(Y(t) + 4) << "\" text-anchor=\"end\">" << num(t, 3) << "</text>\n";
  }
  double xd0, xd1;
  std::vector<double> xt = nice_ticks(x0, x1, 6, xd0, xd1);
  for (double t : xt) {
    if (t < x0 - 1e-9 || t > x1 + 1e-9) continue;
    if (spec.integer_x && std::abs(t - std::round(t)) > 1e-9) continue;
    o << "<line class=\"tickmark\" x1=\"" << px(X(t)) << "\" x2=\"" << px(X(t)) << "\" y1=\"" << mt + ph << "\" y2=\"" << mt + ph + 4
      << "\"/><text class=\"tick\" x=\"" << px(X(t)) << "\" y=\"" << mt + ph + 17 << "\" text-anchor=\"middle\">" << num(t, 6) << "</text>\n";
  }
  o << "<line class=\"axis\" x1=\"" << ml << "\" x2=\"" << ml + pw << "\" y1=\"" << mt + ph << "\" y2=\"" << mt + ph << "\"/>"
    << "<line class=\"axis\" x1=\"" << ml << "\" x2=\"" << ml << "\" y1=\"" << mt << "\" y2=\"" << mt + ph << "\"/>\n";
  o << "<text class=\"label\" x=\"" << ml + pw / 2 << "\" y=\"" << H - 8 << "\" text-anchor=\"middle\">" << escape(spec.x_label) << "</text>";
  o << "<text class=\"label\" transform=\"translate(14," << mt + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << escape(spec.y_label)
    << "</text>\n";

  // Stages: a dashed line where each later stage starts, its name beside it.
  if (!spec.first_stage_label.empty())
    o << "<text class=\"stage-label\" x=\"" << ml + 4 << "\" y=\"" << mt + 12 << "\">" << escape(spec.first_stage_label) << "</text>\n";
  for (const auto& b : boundaries) {
    double bx = X(b.x);
    // Near the right edge the name goes left of the line instead of being clipped.
    bool left = bx + 4 + 6.5 * static_cast<double>(b.label.size()) > ml + pw;
    o << "<line class=\"stage-boundary\" x1=\"" << px(bx) << "\" x2=\"" << px(bx) << "\" y1=\"" << mt << "\" y2=\"" << mt + ph << "\"/>"
      << "<text class=\"stage-label\" x=\"" << px(left ? bx - 4 : bx + 4) << "\" y=\"" << mt + 12 << "\""
      << (left ? " text-anchor=\"end\"" : "") << ">" << escape(b.label) << "</text>\n";
  }

  // Data.
  for (const auto* s : series) {
    std::ostringstream pts;
    size_t n_pts = 0;
    for (size_t i = 0; i < s->points.size(); ++i) {
      auto [x, y] = s->points[i];
      if (i < s->starts.size()) pts << px(X(s->starts[i])) << "," << px(Y(y)) << " ", ++n_pts;
      pts << px(X(x)) << "," << px(Y(y)) << " ", ++n_pts;
    }
    if (n_pts >= 2)
      o << "<polyline class=\"series\" data-name=\"" << escape(s->name) << "\" fill=\"none\" stroke=\"" << s->color << "\""
        << (s->dashed ? " stroke-dasharray=\"6 4\"" : "") << " points=\"" << pts.str() << "\"/>\n";
    for (auto [x, y] : s->points)
      o << "<circle class=\"point\" cx=\"" << px(X(x)) << "\" cy=\"" << px(Y(y)) << "\" r=\"2.5\" fill=\"" << s->color << "\"><title>"
        << escape(s->name) << " at " << num(x, 6) << ": " << num(y, 5) << "</title></circle>";
    o << "\n";
  }
  // Legend, in the top margin.
  double lx = ml;
  for (const auto* s : series) {
    o << "<line x1=\"" << px(lx) << "\" x2=\"" << px(lx + 22) << "\" y1=\"32\" y2=\"32\" stroke=\"" << s->color << "\" stroke-width=\"2\""
      << (s->dashed ? " stroke-dasharray=\"6 4\"" : "") << "/><text class=\"legend\" x=\"" << px(lx + 27) << "\" y=\"36\">" << escape(s->name)
      << "</text>";
    lx += 40 + 7.0 * static_cast<double>(s->name.size());
  }
  o << "\n</svg></figure>\n";
  return o.str();
}

/// Light blue → dark blue by the share of the true class's samples.
std::string heat_color(double f) {
  f = std::clamp(f, 0.0, 1.0);
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * f)); };
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", mix(247, 8), mix(251, 48), mix(255, 107));
  return buf;
}

std::string shorten(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 1) + "…"; }

/// Rows are true classes, columns predictions; colour is the row share so rare classes show too.
std::string confusion_svg(const json& ev) {
  const auto classes = ev.at("classes").get<std::vector<std::string>>();
  const auto cm = ev.at("confusion").get<std::vector<std::vector<int64_t>>>();
  const size_t n = classes.size();
  const double cell = std::clamp(520.0 / static_cast<double>(std::max<size_t>(n, 1)), 8.0, 64.0);
  size_t longest = 4;
  for (const auto& c : classes) longest = std::max(longest, std::min<size_t>(c.size(), 18));
  const double label_w = 7.0 * static_cast<double>(longest) + 12;
  const bool labels = cell >= 10, counts = cell >= 22;
  const double ox = label_w + 28, oy = 30, grid = cell * static_cast<double>(n);
  const double W = ox + grid + 20, H = oy + grid + label_w * 0.75 + 40;
  std::ostringstream o;
  o << "<svg class=\"heatmap\" id=\"plot-confusion\" viewBox=\"0 0 " << px(W) << " " << px(H) << "\" width=\"" << px(W) << "\" height=\""
    << px(H) << "\" role=\"img\" aria-label=\"confusion matrix\">\n";
  o << "<text class=\"label\" x=\"" << px(ox + grid / 2) << "\" y=\"18\" text-anchor=\"middle\">predicted class</text>";
  o << "<text class=\"label\" transform=\"translate(14," << px(oy + grid / 2) << ") rotate(-90)\" text-anchor=\"middle\">true class</text>\n";
  for (size_t i = 0; i < n; ++i) {
    int64_t row = 0;
    for (size_t j = 0; j < n; ++j) row += cm[i][j];
    for (size_t j = 0; j < n; ++j) {
      double f = row > 0 ? static_cast<double>(cm[i][j]) / static_cast<double>(row) : 0.0;
      double x = ox + cell * static_cast<double>(j), y = oy + cell * static_cast<double>(i);
      o << "<rect class=\"cell" << (i == j ? " diag" : "") << "\" x=\"" << px(x) << "\" y=\"" << px(y) << "\" width=\"" << px(cell)
        << "\" height=\"" << px(cell) << "\" fill=\"" << heat_color(f) << "\" data-count=\"" << cm[i][j] << "\"><title>true "
        << escape(classes[i]) << ", predicted " << escape(classes[j]) << ": " << cm[i][j] << " (" << percent(f) << " of the class)</title></rect>";
      if (counts && cm[i][j] > 0)
        o << "<text class=\"count\" x=\"" << px(x + cell / 2) << "\" y=\"" << px(y + cell / 2 + 4) << "\" text-anchor=\"middle\" fill=\""
          << (f > 0.5 ? "#fff" : "#222") << "\" style=\"fill:" << (f > 0.5 ? "#fff" : "#222") << "\">" << cm[i][j] << "</text>";
    }
    o << "\n";
    if (labels)
      o << "<text class=\"class-name\" x=\"" << px(ox - 6) << "\" y=\"" << px(oy + cell * (static_cast<double>(i) + 0.5) + 4)
        << "\" text-anchor=\"end\">" << escape(shorten(classes[i], 18)) << "</text>\n";
  }
  if (labels)
    for (size_t j = 0; j < n; ++j) {
      double x = ox + cell * (static_cast<double>(j) + 0.5), y = oy + grid + 10;
      o << "<text class=\"class-name\" transform=\"translate(" << px(x + 4) << "," << px(y) << ") rotate(-40)\" text-anchor=\"end\">"
        << escape(shorten(classes[j], 18)) << "</text>\n";
    }
  o << "<rect x=\"" << px(ox) << "\" y=\"" << px(oy) << "\" width=\"" << px(grid) << "\" height=\"" << px(grid)
    << "\" fill=\"none\" stroke=\"#888\"/>\n</svg>\n";
  return o.str();
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
  o << "<table class=\"per-class\"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>\n";
  for (const auto& c : ev.at("per_class"))
    o << "<tr><td>" << escape(c.value("name", std::string())) << "</td><td>" << num(c.value("precision", 0.0), 3) << "</td><td>"
      << num(c.value("recall", 0.0), 3) << "</td><td>" << num(c.value("f1", 0.0), 3) << "</td><td>" << c.value("support", int64_t{0})
      << "</td></tr>\n";
  o << "<tr class=\"avg\"><td>macro avg</td><td>" << num(ev.value("macro_precision", 0.0), 3) << "</td><td>"
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

const char* kStyle = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1260px;padding:0 16px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 12px}.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}.card .v{font-size:20px;font-weight:600}.card .k{color:#666;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}.chart-box figcaption,.caption{color:#666;font-size:12px;max-width:1140px}
svg text{font-family:inherit;font-size:11px;fill:#333}svg .title{font-size:13px;font-weight:600}svg .label{font-size:12px;fill:#555}
svg .grid{stroke:#eee}svg .axis{stroke:#888}svg .tickmark{stroke:#888}svg .tick{fill:#666}
svg .series{stroke-width:2;stroke-linejoin:round}svg .stage-boundary{stroke:#999;stroke-dasharray:4 4}svg .stage-label{fill:#777;font-style:italic;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .cell{stroke:#fff;stroke-width:.5}svg .count{font-size:11px}
.cm-row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
table{border-collapse:collapse}td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:right}td:first-child,th:first-child{text-align:left}
tr.avg td{font-weight:600;border-top:1px solid #ccc}
.mistakes{display:flex;flex-wrap:wrap;gap:10px}.mistake{width:132px;border:1px solid #ddd;border-radius:6px;padding:6px;text-align:center}
.mistake img{max-width:96px;max-height:96px;display:block;margin:0 auto 4px}.mistake figcaption{font-size:12px;word-break:break-all}
.wrong{color:#b00}.file{color:#888;font-size:11px}.thumb-missing{height:96px;color:#b00;font-size:11px;overflow:hidden}
pre{background:#f7f7f7;border:1px solid #ddd;padding:10px;font-size:12px;overflow:auto;max-height:600px}
.note{color:#666}
)";

/// Runs when the page is opened: counts what was actually drawn, so a headless browser (and the
/// test that drives it) can tell a page that renders from one that merely parses.
const char* kCheckScript = R"(
window.addEventListener('load', function () {
  var problems = [];
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    var lines = 0, points = 0;
    svg.querySelectorAll('polyline.series').forEach(function (p) {
      var b = p.getBBox();
      if (p.points.numberOfItems >= 2 && (b.width > 0 || b.height > 0)) lines++;
    });
    svg.querySelectorAll('circle.point').forEach(function (c) { if (c.getBBox().width > 0) points++; });
    svg.setAttribute('data-drawn-series', lines);
    svg.setAttribute('data-drawn-points', points);
    if (points === 0) problems.push(svg.id + ' draws nothing');
  });
  var cm = document.getElementById('plot-confusion');
  if (cm) {
    var cells = 0;
    cm.querySelectorAll('rect.cell').forEach(function (r) { if (r.getBBox().width > 0) cells++; });
    cm.setAttribute('data-drawn-cells', cells);
    if (cells === 0) problems.push('the confusion matrix draws no cells');
  }
  var thumbs = 0;
  document.querySelectorAll('img.thumb').forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) thumbs++; else problems.push('thumbnail ' + img.alt + ' did not decode');
  });
  document.body.setAttribute('data-drawn-thumbs', thumbs);
  document.body.setAttribute('data-rendered', problems.length ? 'fail: ' + problems.join('; ') : 'ok');
});
)";

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

  // Curves against the global epoch; stage boundaries halfway between a stage's last epoch and
  // the next one's first (early stopping can leave a gap).
  Series loss{"train loss", "#1f77b4"}, val_loss{"val loss", "#ff7f0e", true};
  Series acc{"train accuracy", "#1f77b4"}, val_acc{"val accuracy", "#ff7f0e", true};
  Series lr{"head lr", "#2ca02c"}, lr_bb{"backbone lr", "#9467bd", true};
  std::vector<Boundary> epoch_bounds, step_bounds;
  auto stage_label = [](const json& e) {
    return "stage " + std::to_string(e.value("stage", 0)) + (e.contains("stage_name") && e["stage_name"].is_string()
                                                                   ? ": " + e["stage_name"].get<std::string>()
                                                                   : std::string());
  };
  double best_val_acc = -1, total_seconds = 0;
  for (size_t i = 0; i < history.size(); ++i) {
    const json& e = history[i];
    auto ge = field(e, "global_epoch");
    double x = ge ? *ge : static_cast<double>(i + 1);
    if (auto v = field(e, "loss")) loss.points.emplace_back(x, *v);
    if (auto v = field(e, "val_loss")) val_loss.points.emplace_back(x, *v);
    if (auto v = field(e, "accuracy")) acc.points.emplace_back(x, *v);
    if (auto v = field(e, "val_accuracy")) {
      val_acc.points.emplace_back(x, *v);
      best_val_acc = std::max(best_val_acc, *v);
    }
    // An epoch's rate is held over its steps: from the previous epoch's last step to its own.
    double step = field(e, "step").value_or(x);
    double prev_step = i > 0 ? field(history[i - 1], "step").value_or(0) : 0;
    if (auto v = field(e, "lr")) lr.points.emplace_back(step, *v), lr.starts.push_back(prev_step);
    if (auto v = field(e, "lr_backbone")) lr_bb.points.emplace_back(step, *v), lr_bb.starts.push_back(prev_step);
    total_seconds += field(e, "seconds").value_or(0);
    if (i > 0 && e.value("stage", 0) != history[i - 1].value("stage", 0)) {
      double prev = field(history[i - 1], "global_epoch").value_or(x - 1);
      epoch_bounds.push_back({(prev + x) / 2, stage_label(e)});
      step_bounds.push_back({field(history[i - 1], "step").value_or(step), stage_label(e)});
    }
  }
  const std::string first_stage = stage_label(history[0]);

  std::ostringstream h;
  const std::string name = cfg.value("name", fs::path(run_dir).filename().string());
  std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tltrain report: " << escape(name) << "</title>\n<style>"
    << kStyle << "</style></head>\n<body>\n";
  h << "<h1>Run report: " << escape(name) << "</h1>\n<p class=\"sub\">" << escape(fs::absolute(run_dir).string()) << " · generated " << date
    << " by tltrain</p>\n";

  const json& last = history.back();
  h << "<section id=\"summary\"><div class=\"cards\">";
  h << card(std::to_string(history.size()), "epochs (" + std::to_string(cfg.contains("stages") ? cfg["stages"].size() : 0) + " stages)");
  if (auto v = field(last, "loss")) h << card(num(*v, 4), "final train loss");
  if (auto v = field(last, "accuracy")) h << card(percent(*v), "final train accuracy");
  if (auto v = field(last, "val_accuracy")) h << card(percent(*v), "final val accuracy");
  if (best_val_acc >= 0) h << card(percent(best_val_acc), "best val accuracy");
  if (ev) {
    h << card(percent(ev->value("accuracy", 0.0)), "eval accuracy");
    h << card(percent(ev->value("topk_accuracy", 0.0)), "eval top-" + std::to_string(ev->value("topk", 5)));
  }
  char took[32];
  if (total_seconds < 90) std::snprintf(took, sizeof took, "%.1f s", total_seconds);
  else std::snprintf(took, sizeof took, "%.1f min", total_seconds / 60);
  h << card(took, "training time") << "</div></section>\n";

  h << "<section id=\"curves\"><h2>Training curves</h2>\n<div class=\"charts\">\n";
  h << line_chart({"plot-loss", "Loss", "epoch (across stages)", "cross-entropy", std::nullopt, true, first_stage}, {loss, val_loss},
                  epoch_bounds);
  h << line_chart({"plot-accuracy", "Accuracy", "epoch (across stages)", "top-1 accuracy", std::make_pair(0.0, 1.0), true, first_stage},
                  {acc, val_acc}, epoch_bounds);
  h << line_chart({"plot-lr", "Learning rate", "optimizer step", "learning rate", std::nullopt, false, first_stage}, {lr, lr_bb}, step_bounds);
  h << "</div>\n<p class=\"caption\">Train values are the epoch's running mean over its batches (with augmentation and, where "
       "the stage trains it, dropout); validation is measured after the epoch. Dashed vertical lines mark where a stage starts. "
       "Learning rate: one value per epoch, held over its steps — log.jsonl records the rate of each epoch's last step, so a per-step "
       "schedule (warm-up, cosine) shows only at epoch resolution; the backbone's rate is drawn where a stage trains part of it.</p>\n"
       "</section>\n";

  h << "<section id=\"evaluation\"><h2>Evaluation</h2>\n";
  if (ev) {
    std::string on = ev->contains("data") && (*ev)["data"].is_string() ? (*ev)["data"].get<std::string>() : "";
    std::string ck = ev->contains("checkpoint") && (*ev)["checkpoint"].is_string() ? (*ev)["checkpoint"].get<std::string>() : "";
    h << "<p class=\"note\">From eval.json" << (ck.empty() ? "" : ": " + escape(fs::path(ck).filename().string()))
      << (on.empty() ? "" : " on " + escape(on)) << " — " << ev->value("samples", int64_t{0}) << " images, loss "
      << num(ev->value("loss", 0.0), 4) << ", accuracy " << percent(ev->value("accuracy", 0.0)) << ".</p>\n";
    h << "<div class=\"cm-row\"><figure>" << confusion_svg(*ev)
      << "<figcaption class=\"caption\">Confusion matrix: rows are true classes, columns predictions; the colour is the share of "
         "the row.</figcaption></figure>\n"
      << per_class_table(*ev) << "</div>\n";
    h << "</section>\n<section id=\"mistakes\"><h2>Most confident mistakes</h2>\n" << mistakes_html(*ev) << "</section>\n";
  } else {
    h << "<p class=\"note\">No eval.json in this run directory (the run has no validation data, or it was not evaluated): run "
         "<code>tltrain eval --checkpoint "
      << escape(run_dir) << "/checkpoints/best.pt --data DIR</code> to add the confusion matrix and the mistakes.</p></section>\n";
  }

  std::optional<json> skipped;
  if (fs::exists(run_dir + "/skipped.json")) skipped = read_json(run_dir + "/skipped.json");
  h << skipped_section(skipped, ev);
  h << "<section id=\"config\"><h2>Config (resolved)</h2>\n<pre id=\"config-json\">" << escape(cfg.dump(2)) << "</pre></section>\n";
  h << "<script>" << kCheckScript << "</script>\n</body></html>\n";

  const std::string out = run_dir + "/report.html";
  write_file_atomically(out, h.str());
  return out;
}

}  // namespace tltrain::eval
