#include "tltrain/eval/metrics.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/log.h"

namespace tltrain::eval {

namespace {

double ratio(double num, double den) { return den > 0 ? num / den : 0.0; }

/// Strict '>' keeps the lower index on ties, as the header promises.
int64_t argmax_row(const float* row, int64_t c) {
  int64_t best = 0;
  for (int64_t j = 1; j < c; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}

/// Classes ranked ahead of LABEL under the same order as argmax (higher value, then lower index),
/// so top-1 accuracy and top-k accuracy with k = 1 always agree.
int64_t rank_of(const float* row, int64_t c, int64_t label) {
  int64_t ahead = 0;
  for (int64_t j = 0; j < c; ++j)
    if (row[j] > row[label] || (row[j] == row[label] && j < label)) ++ahead;
  return ahead;
}

using log::fixed;

std::string pad_right(const std::string& s, size_t w) { return s.size() >= w ? s : s + std::string(w - s.size(), ' '); }
std::string pad_left(const std::string& s, size_t w) { return s.size() >= w ? s : std::string(w - s.size(), ' ') + s; }

}  // namespace

ClassificationReport evaluate(const std::vector<float>& probs, const std::vector<int64_t>& labels,
                              const std::vector<std::string>& classes, const std::vector<std::string>& paths,
                              double loss, int64_t topk, double threshold) {
  const int64_t c = static_cast<int64_t>(classes.size());
  const int64_t n = static_cast<int64_t>(labels.size());
  TLTRAIN_ASSERT(c > 0, "evaluate needs at least one class");
  TLTRAIN_ASSERT(probs.size() == static_cast<size_t>(n * c),
                 "probs has " + std::to_string(probs.size()) + " values, expected samples*classes = " +
                     std::to_string(n) + "*" + std::to_string(c));
  TLTRAIN_ASSERT(paths.empty() || paths.size() == labels.size(),
                 "paths has " + std::to_string(paths.size()) + " entries for " + std::to_string(n) + " samples");
  TLTRAIN_ASSERT(topk >= 1, "topk must be >= 1");
  for (int64_t i = 0; i < n; ++i)
    TLTRAIN_ASSERT(labels[i] >= 0 && labels[i] < c,
                   "label " + std::to_string(labels[i]) + " of sample " + std::to_string(i) + " is outside [0, " +
                       std::to_string(c) + ")");

  ClassificationReport r;
  r.classes = classes;
  r.samples = n;
  r.loss = loss;
  r.topk = std::min(topk, c);
  r.confusion.assign(c, std::vector<int64_t>(c, 0));

  int64_t correct = 0, topk_correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = probs.data() + i * c;
    const int64_t label = labels[i], pred = c == 2 ? (row[1] > threshold ? 1 : 0) : argmax_row(row, c);
    ++r.confusion[label][pred];
    if (pred == label) {
      ++correct;
    } else {
      r.mistakes.push_back({paths.empty() ? std::string() : paths[i], label, pred, static_cast<double>(row[pred])});
    }
    if (rank_of(row, c, label) < r.topk) ++topk_correct;
  }
  r.accuracy = ratio(correct, n);
  if (c == 2) {
    std::vector<double> scores;
    std::vector<bool> positive;
    for (int64_t i = 0; i < n; ++i) {
      scores.push_back(probs[static_cast<size_t>(2 * i + 1)]);
      positive.push_back(labels[i] == 1);
    }
    r.threshold = threshold;
    r.roc_auc = roc_auc(scores, positive);
    r.average_precision = average_precision(scores, positive);
  }
  r.topk_accuracy = ratio(topk_correct, n);
  // Stable: equally confident mistakes keep the dataset's order, so reports are reproducible.
  std::stable_sort(r.mistakes.begin(), r.mistakes.end(),
                   [](const Mistake& a, const Mistake& b) { return a.confidence > b.confidence; });

  for (int64_t k = 0; k < c; ++k) {
    ClassMetrics m;
    m.name = classes[k];
    int64_t predicted = 0;
    for (int64_t t = 0; t < c; ++t) {
      predicted += r.confusion[t][k];
      m.support += r.confusion[k][t];
    }
    const double tp = static_cast<double>(r.confusion[k][k]);
    m.precision = ratio(tp, predicted);
    m.recall = ratio(tp, m.support);
    // 2PR/(P+R) written in counts: defined whenever the class was predicted or present.
    m.f1 = ratio(2 * tp, static_cast<double>(predicted + m.support));
    r.macro_precision += m.precision / c;
    r.macro_recall += m.recall / c;
    r.macro_f1 += m.f1 / c;
    if (n > 0) {
      const double w = static_cast<double>(m.support) / n;
      r.weighted_precision += w * m.precision;
      r.weighted_recall += w * m.recall;
      r.weighted_f1 += w * m.f1;
    }
    r.per_class.push_back(m);
  }
  return r;
}

namespace {
/// Indices of SCORES, highest score first (ties in input order).
std::vector<size_t> by_score_descending(const std::vector<double>& scores) {
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}
}  // namespace

std::optional<double> roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive) {
  // Mann-Whitney: the share of (positive, negative) pairs ranked right, a tie counting half.
  const auto order = by_score_descending(scores);
  double pos = 0, neg = 0, right = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    double tie_pos = 0, tie_neg = 0;
    for (; j < order.size() && scores[order[j]] == scores[order[i]]; ++j) (positive[order[j]] ? tie_pos : tie_neg) += 1;
    right += tie_neg * pos + 0.5 * tie_neg * tie_pos;  // each negative here is below every positive seen so far
    pos += tie_pos;
    neg += tie_neg;
    i = j;
  }
  if (pos == 0 || neg == 0) return std::nullopt;
  return right / (pos * neg);
}

std::optional<double> average_precision(const std::vector<double>& scores, const std::vector<bool>& positive) {
  const auto order = by_score_descending(scores);
  double total_pos = 0;
  for (bool p : positive) total_pos += p;
  if (total_pos == 0) return std::nullopt;
  double tp = 0, seen = 0, ap = 0, last_recall = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    for (; j < order.size() && scores[order[j]] == scores[order[i]]; ++j) {
      tp += positive[order[j]];
      seen += 1;
    }
    const double recall = tp / total_pos;
    ap += (recall - last_recall) * (tp / seen);
    last_recall = recall;
    i = j;
  }
  return ap;
}

config::json to_json(const ClassificationReport& r) {
  config::json j;
  j["classes"] = r.classes;
  j["samples"] = r.samples;
  j["skipped"] = r.skipped.to_json();
  j["loss"] = r.loss;
  j["accuracy"] = r.accuracy;
  j["topk"] = r.topk;
  j["topk_accuracy"] = r.topk_accuracy;
  j["per_class"] = config::json::array();
  for (const auto& m : r.per_class)
    j["per_class"].push_back(
        {{"name", m.name}, {"precision", m.precision}, {"recall", m.recall}, {"f1", m.f1}, {"support", m.support}});
  j["macro_precision"] = r.macro_precision;
  j["macro_recall"] = r.macro_recall;
  j["macro_f1"] = r.macro_f1;
  j["weighted_precision"] = r.weighted_precision;
  j["weighted_recall"] = r.weighted_recall;
  j["weighted_f1"] = r.weighted_f1;
  j["confusion"] = r.confusion;
  if (r.classes.size() == 2) {
    j["threshold"] = r.threshold;
    j["roc_auc"] = r.roc_auc ? config::json(*r.roc_auc) : config::json(nullptr);
    j["average_precision"] = r.average_precision ? config::json(*r.average_precision) : config::json(nullptr);
  }
  j["mistakes"] = config::json::array();
  for (const auto& m : r.mistakes)
    j["mistakes"].push_back(
        {{"path", m.path}, {"label", m.label}, {"predicted", m.predicted}, {"confidence", m.confidence}});
  return j;
}

std::string format_report(const ClassificationReport& r, size_t max_mistakes) {
  std::ostringstream out;
  const size_t c = r.classes.size();
  auto name_of = [&](int64_t k) {
    return k >= 0 && static_cast<size_t>(k) < c ? r.classes[k] : std::to_string(k);
  };

  out << "samples " << r.samples << "   accuracy " << fixed(r.accuracy) << "   top-" << r.topk << " accuracy "
      << fixed(r.topk_accuracy) << "   loss " << fixed(r.loss) << "\n";
  if (c == 2) {
    auto or_none = [](const std::optional<double>& v) { return v ? fixed(*v) : std::string("n/a (one class only)"); };
    out << "positive class '" << r.classes[1] << "': ROC-AUC " << or_none(r.roc_auc) << "   PR-AUC (average precision) "
        << or_none(r.average_precision) << "   threshold " << fixed(r.threshold, 2) << "\n";
  }
  if (r.skipped.count() > 0)
    out << "not counted in samples: " << r.skipped.warning(0, "") << "\n";
  out << "\n";

  size_t name_w = std::string("weighted avg").size();
  for (const auto& name : r.classes) name_w = std::max(name_w, name.size());
  const size_t num_w = 10;
  auto metrics_row = [&](const std::string& name, double p, double rc, double f, int64_t support) {
    out << pad_right(name, name_w) << pad_left(fixed(p), num_w) << pad_left(fixed(rc), num_w)
        << pad_left(fixed(f), num_w) << pad_left(std::to_string(support), num_w) << "\n";
  };
  out << pad_right("class", name_w) << pad_left("precision", num_w) << pad_left("recall", num_w)
      << pad_left("f1", num_w) << pad_left("support", num_w) << "\n";
  for (const auto& m : r.per_class) metrics_row(m.name, m.precision, m.recall, m.f1, m.support);
  metrics_row("macro avg", r.macro_precision, r.macro_recall, r.macro_f1, r.samples);
  metrics_row("weighted avg", r.weighted_precision, r.weighted_recall, r.weighted_f1, r.samples);

  out << "\nconfusion matrix (rows: true class, columns: predicted class)\n";
  // Each column is as wide as its class name or its largest count, whichever is wider.
  std::vector<size_t> col_w(c);
  for (size_t k = 0; k < c; ++k) {
    col_w[k] = r.classes[k].size();
    for (const auto& row : r.confusion)
      if (k < row.size()) col_w[k] = std::max(col_w[k], std::to_string(row[k]).size());
  }
  size_t row_name_w = 0;
  for (const auto& name : r.classes) row_name_w = std::max(row_name_w, name.size());
  out << std::string(row_name_w, ' ');
  for (size_t k = 0; k < c; ++k) out << "  " << pad_left(r.classes[k], col_w[k]);
  out << "\n";
  for (size_t t = 0; t < r.confusion.size(); ++t) {
    out << pad_right(name_of(static_cast<int64_t>(t)), row_name_w);
    for (size_t k = 0; k < r.confusion[t].size() && k < c; ++k)
      out << "  " << pad_left(std::to_string(r.confusion[t][k]), col_w[k]);
    out << "\n";
  }

  if (r.mistakes.empty()) out << "\nno mistakes\n";
  if (r.mistakes.empty() || max_mistakes == 0) return out.str();
  const size_t shown = std::min(max_mistakes, r.mistakes.size());
  out << "\nmost confident mistakes (" << shown << " of " << r.mistakes.size() << ")\n";
  size_t path_w = std::string("path").size(), true_w = std::string("true").size(),
         pred_w = std::string("predicted").size();
  for (size_t i = 0; i < shown; ++i) {
    const auto& m = r.mistakes[i];
    path_w = std::max(path_w, m.path.empty() ? size_t{1} : m.path.size());
    true_w = std::max(true_w, name_of(m.label).size());
    pred_w = std::max(pred_w, name_of(m.predicted).size());
  }
  out << pad_right("path", path_w) << "  " << pad_right("true", true_w) << "  " << pad_right("predicted", pred_w)
      << "  confidence\n";
  for (size_t i = 0; i < shown; ++i) {
    const auto& m = r.mistakes[i];
    out << pad_right(m.path.empty() ? "-" : m.path, path_w) << "  " << pad_right(name_of(m.label), true_w) << "  "
        << pad_right(name_of(m.predicted), pred_w) << "  " << fixed(m.confidence) << "\n";
  }
  return out.str();
}

}  // namespace tltrain::eval
