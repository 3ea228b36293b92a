#pragma once
// Inside the report box: HTML escaping, number formats and the inline-SVG charts (line charts
// of the training curves, the confusion matrix) that report.html is made of.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tltrain/config/json_reader.h"

namespace tltrain::eval::html {

std::string escape(const std::string& s);

/// A report page's start (doctype, TITLE, the shared style) and end (the script that counts what
/// was drawn, for the headless-browser test).
std::string page_head(const std::string& title);
std::string page_tail();
std::string num(double v, int precision = 4);  ///< %g with PRECISION significant digits
std::string px(double v);                      ///< an SVG coordinate, one decimal
std::string percent(double v);                 ///< 0.953 → "95.3%"
std::string shorten(const std::string& s, size_t n);  ///< at most N bytes, "…" when cut

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
std::string line_chart(const ChartSpec& spec, const std::vector<Series>& all_series, const std::vector<Boundary>& boundaries);

/// EV's confusion matrix (eval.json) as an SVG heat map, rows true classes, colour the row's share.
std::string confusion_svg(const config::json& ev);

}  // namespace tltrain::eval::html
