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

ClassificationReport evaluate_multilabel(const std::vector<float>& probs, const std::vector<uint8_t>& targets,
                                         const std::vector<std::string>& classes, double loss, double threshold) {
  ClassificationReport r;
  const size_t c = classes.size();
  r.classes = classes;
  r.samples = c > 0 ? static_cast<int64_t>(probs.size() / c) : 0;
  r.loss = loss;
  r.topk = 0;
  r.threshold = threshold;
  const auto m = ranking::multilabel(probs, targets, c, threshold);
  r.accuracy = m.subset_accuracy;
  for (size_t k = 0; k < c; ++k) {
    r.per_class.push_back({classes[k], m.precision[k], m.recall[k], m.f1[k], m.support[k], m.average_precision[k]});
    r.macro_precision += m.precision[k] / static_cast<double>(c);
    r.macro_recall += m.recall[k] / static_cast<double>(c);
  }
  r.macro_f1 = m.macro_f1;
  // sklearn's micro average stands in the "weighted" row: each (image, class) decision counts once.
  r.weighted_precision = m.micro_precision;
  r.weighted_recall = m.micro_recall;
  r.weighted_f1 = m.micro_f1;
  r.multilabel = m;
  return r;
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
  if (r.multilabel) {
    const auto& m = *r.multilabel;
    j["threshold"] = r.threshold;
    j["multilabel"] = {{"mean_average_precision", m.mean_average_precision ? config::json(*m.mean_average_precision) : config::json(nullptr)},
                       {"micro_precision", m.micro_precision}, {"micro_recall", m.micro_recall}, {"micro_f1", m.micro_f1},
                       {"macro_f1", m.macro_f1}, {"exact_match", m.subset_accuracy}, {"hamming_loss", m.hamming_loss}};
    for (size_t k = 0; k < r.per_class.size(); ++k) {
      const auto& ap = r.per_class[k].average_precision;
      j["per_class"][k]["average_precision"] = ap ? config::json(*ap) : config::json(nullptr);
    }
  } else if (r.classes.size() == 2) {
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

namespace {

std::string format_multilabel(const ClassificationReport& r) {
  const auto& m = *r.multilabel;
  std::ostringstream out;
  out << "samples " << r.samples << "   mAP " << (m.mean_average_precision ? fixed(*m.mean_average_precision) : std::string("n/a"))
      << "   micro F1 " << fixed(m.micro_f1) << "   macro F1 " << fixed(m.macro_f1) << "   exact match " << fixed(m.subset_accuracy)
      << "   Hamming loss " << fixed(m.hamming_loss) << "   loss " << fixed(r.loss) << "   threshold " << fixed(r.threshold, 2) << "\n";
  if (r.skipped.count() > 0) out << "not counted in samples: " << r.skipped.warning(0, "") << "\n";
  size_t name_w = std::string("micro avg").size();
  for (const auto& name : r.classes) name_w = std::max(name_w, name.size());
  const size_t num_w = 10;
  out << "\n" << pad_right("class", name_w) << pad_left("AP", num_w) << pad_left("precision", num_w) << pad_left("recall", num_w)
      << pad_left("f1", num_w) << pad_left("support", num_w) << "\n";
  for (const auto& k : r.per_class)
    out << pad_right(k.name, name_w) << pad_left(k.average_precision ? fixed(*k.average_precision) : std::string("n/a"), num_w)
        << pad_left(fixed(k.precision), num_w) << pad_left(fixed(k.recall), num_w) << pad_left(fixed(k.f1), num_w)
        << pad_left(std::to_string(k.support), num_w) << "\n";
  out << pad_right("micro avg", name_w) << pad_left("", num_w) << pad_left(fixed(m.micro_precision), num_w)
      << pad_left(fixed(m.micro_recall), num_w) << pad_left(fixed(m.micro_f1), num_w) << "\n";
  return out.str();
}

}  // namespace

std::string format_report(const ClassificationReport& r, size_t max_mistakes) {
  std::ostringstream out;
  const size_t c = r.classes.size();
  auto name_of = [&](int64_t k) {
    return k >= 0 && static_cast<size_t>(k) < c ? r.classes[k] : std::to_string(k);
  };

  if (r.multilabel) return format_multilabel(r);
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
