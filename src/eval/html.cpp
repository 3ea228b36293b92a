#include "html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "tltrain/core/log.h"

namespace tltrain::eval::html {

using config::json;

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

std::string num(double v, int precision) { return log::general(v, precision); }

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

namespace {

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

}  // namespace

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

namespace {

/// Light blue → dark blue by the share of the true class's samples.
std::string heat_color(double f) {
  f = std::clamp(f, 0.0, 1.0);
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * f)); };
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", mix(247, 8), mix(251, 48), mix(255, 107));
  return buf;
}

}  // namespace

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

namespace {

const char* const kStyle = R"(
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
const char* const kCheckScript = R"(
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

}  // namespace

std::string page_head(const std::string& title) {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + escape(title) + "</title>\n<style>" + kStyle +
         "</style></head>\n<body>\n";
}

std::string page_tail() { return std::string("<script>") + kCheckScript + "</script>\n</body></html>\n"; }

}  // namespace tltrain::eval::html
