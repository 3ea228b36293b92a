#pragma once
// Scores of a ranking and of multi-label decisions, on plain vectors: training logs them per
// epoch and eval reports them, so they live below both.
#include <cstdint>
#include <optional>
#include <vector>

namespace tltrain::ranking {

/// Area under the ROC curve of SCORES with POSITIVE marking the positives (tied scores count
/// half, as sklearn's roc_auc_score); none without both positives and negatives.
std::optional<double> roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive);
/// Average precision as sklearn's average_precision_score: the sum over distinct scores, highest
/// first, of (recall gained) × precision there; none without positives.
std::optional<double> average_precision(const std::vector<double>& scores, const std::vector<bool>& positive);

/// Multi-label scores of PROBS (N×C row-major) against TARGETS (N×C, 0/1), a class decided
/// present when its probability is above THRESHOLD. As sklearn: average_precision_score per
/// class, precision/recall/F1 with zero_division=0, accuracy_score (exact match) and hamming_loss.
struct MultiLabel {
  std::vector<std::optional<double>> average_precision;  ///< per class; none for a class without positives
  std::optional<double> mean_average_precision;          ///< mAP over the classes with positives
  std::vector<double> precision, recall, f1;             ///< per class, at the threshold
  std::vector<int64_t> support;                          ///< positives per class
  double micro_precision = 0, micro_recall = 0, micro_f1 = 0, macro_f1 = 0;
  double subset_accuracy = 0;                            ///< images whose every decision is right
  double hamming_loss = 0;                               ///< share of wrong (image, class) decisions
};
MultiLabel multilabel(const std::vector<float>& probs, const std::vector<uint8_t>& targets, size_t classes, double threshold);

}  // namespace tltrain::ranking
