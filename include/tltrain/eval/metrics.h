#pragma once
// Classification metrics from predicted probabilities: no torch, so they are cheap to test
// against hand-computed confusion matrices.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/core/ranking.h"
#include "tltrain/data/skipped.h"

namespace tltrain::eval {

struct ClassMetrics {
  std::string name;
  double precision = 0, recall = 0, f1 = 0;  ///< 0 where undefined (no predictions / no samples), as sklearn's zero_division=0
  int64_t support = 0;                       ///< true samples of the class
  std::optional<double> average_precision;   ///< multi-label: the class's AP (none without positives)
};

struct Mistake {
  std::string path;
  int64_t label = 0, predicted = 0;
  double confidence = 0;  ///< probability of the predicted class
};

struct ClassificationReport {
  std::vector<std::string> classes;
  int64_t samples = 0;
  double loss = 0;            ///< mean cross-entropy, as computed by the caller
  double accuracy = 0;        ///< top-1
  int64_t topk = 5;           ///< k actually used: min(requested, classes)
  double topk_accuracy = 0;
  std::vector<ClassMetrics> per_class;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  double weighted_precision = 0, weighted_recall = 0, weighted_f1 = 0;  ///< weighted by support
  std::vector<std::vector<int64_t>> confusion;  ///< [true][predicted]
  /// Two classes (class 1 the positive one): the decision threshold on its probability, and the
  /// threshold-free ROC-AUC and average precision (PR-AUC); none unless both classes occur.
  double threshold = 0.5;
  std::optional<double> roc_auc, average_precision;
  /// Multi-label heads: mAP, micro/macro F1 and Hamming loss at THRESHOLD; accuracy is then the
  /// exact-match ratio, and there are no confusion matrix, top-k or mistakes.
  std::optional<ranking::MultiLabel> multilabel;
  std::vector<Mistake> mistakes;                ///< misclassified samples, most confident first
  data::SkippedLog skipped;                     ///< files left out of SAMPLES (not images, undecodable), set by the caller
};

/// PROBS is N×C row-major (rows need not sum to 1: only their order is used). Ties in argmax go
/// to the lower class index; with two classes the prediction is class 1 when its probability is
/// above THRESHOLD (0.5: the argmax). PATHS may be empty (no mistake paths then) or have N entries.
ClassificationReport evaluate(const std::vector<float>& probs, const std::vector<int64_t>& labels,
                              const std::vector<std::string>& classes, const std::vector<std::string>& paths,
                              double loss, int64_t topk = 5, double threshold = 0.5);

/// The multi-label report: PROBS N×C sigmoid probabilities, TARGETS N×C 0/1, a class decided
/// present when its probability is above THRESHOLD.
ClassificationReport evaluate_multilabel(const std::vector<float>& probs, const std::vector<uint8_t>& targets,
                                         const std::vector<std::string>& classes, double loss, double threshold);

using ranking::average_precision;  // eval::roc_auc etc.: the report's scores, shared with training's log
using ranking::roc_auc;

config::json to_json(const ClassificationReport& r);
/// The table for stdout: headline metrics, per-class P/R/F1/support with macro and weighted
/// averages, the confusion matrix, and the first MAX_MISTAKES mistakes.
std::string format_report(const ClassificationReport& r, size_t max_mistakes = 10);

}  // namespace tltrain::eval
