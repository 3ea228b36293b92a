#include "tltrain/core/ranking.h"

#include <algorithm>

namespace tltrain::ranking {

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

namespace {
double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
}  // namespace

MultiLabel multilabel(const std::vector<float>& probs, const std::vector<uint8_t>& targets, size_t classes, double threshold) {
  MultiLabel m;
  const size_t n = classes > 0 ? probs.size() / classes : 0;
  double tp_all = 0, predicted_all = 0, positive_all = 0, wrong = 0, exact = 0, ap_sum = 0, ap_count = 0;
  std::vector<bool> row_right(n, true);
  for (size_t c = 0; c < classes; ++c) {
    std::vector<double> scores(n);
    std::vector<bool> positive(n);
    double tp = 0, predicted = 0, pos = 0;
    for (size_t i = 0; i < n; ++i) {
      scores[i] = probs[i * classes + c];
      positive[i] = targets[i * classes + c] != 0;
      const bool decided = scores[i] > threshold;
      tp += decided && positive[i];
      predicted += decided;
      pos += positive[i];
      if (decided != positive[i]) {
        wrong += 1;
        row_right[i] = false;
      }
    }
    m.average_precision.push_back(average_precision(scores, positive));
    if (m.average_precision.back()) {
      ap_sum += *m.average_precision.back();
      ap_count += 1;
    }
    m.precision.push_back(ratio(tp, predicted));
    m.recall.push_back(ratio(tp, pos));
    m.f1.push_back(ratio(2 * tp, predicted + pos));
    m.support.push_back(static_cast<int64_t>(pos));
    m.macro_f1 += m.f1.back() / static_cast<double>(classes);
    tp_all += tp;
    predicted_all += predicted;
    positive_all += pos;
  }
  for (bool right : row_right) exact += right;
  if (ap_count > 0) m.mean_average_precision = ap_sum / ap_count;
  m.micro_precision = ratio(tp_all, predicted_all);
  m.micro_recall = ratio(tp_all, positive_all);
  m.micro_f1 = ratio(2 * tp_all, predicted_all + positive_all);
  m.subset_accuracy = ratio(exact, static_cast<double>(n));
  m.hamming_loss = ratio(wrong, static_cast<double>(n * classes));
  return m;
}

}  // namespace tltrain::ranking
