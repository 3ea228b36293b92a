// Classification metrics against confusion matrices worked out by hand (sklearn semantics,
// zero_division=0).
#include <gtest/gtest.h>

#include <sstream>

#include "tltrain/eval/metrics.h"

using namespace tltrain;

namespace {

constexpr double kTol = 1e-9;

struct Sample {
  int64_t label, predicted;
  float confidence;  ///< value of the predicted class; the others share the rest equally
  std::string path;
};

struct Inputs {
  std::vector<float> probs;
  std::vector<int64_t> labels;
  std::vector<std::string> paths;
};

Inputs make_inputs(const std::vector<Sample>& samples, int64_t classes) {
  Inputs in;
  for (const auto& s : samples) {
    const float rest = (1.0f - s.confidence) / static_cast<float>(classes - 1);
    for (int64_t k = 0; k < classes; ++k) in.probs.push_back(k == s.predicted ? s.confidence : rest);
    in.labels.push_back(s.label);
    in.paths.push_back(s.path);
  }
  return in;
}

const std::vector<std::string> kAnimals{"cat", "dog", "bird"};

// Confusion [true][predicted]:      cat dog bird   support
//                          cat       3   1   0       4
//                          dog       0   2   1       3
//                          bird      1   1   1       3
//                    predicted       4   4   2      10
// cat:  P = 3/4, R = 3/4, F1 = 3/4
// dog:  P = 2/4, R = 2/3, F1 = 2*(1/2)(2/3)/(1/2+2/3) = 4/7
// bird: P = 1/2, R = 1/3, F1 = 2*(1/2)(1/3)/(1/2+1/3) = 2/5
// macro:    P = (3/4+1/2+1/2)/3 = 7/12, R = (3/4+2/3+1/3)/3 = 7/12, F1 = (3/4+4/7+2/5)/3 = 241/420
// weighted: P = (4*3/4+3*1/2+3*1/2)/10 = 0.6, R = 0.6 (= accuracy), F1 = (3+12/7+6/5)/10 = 207/350
// Mistake confidences are exact in float so the ordering test compares exact values.
Inputs animals() {
  return make_inputs({{0, 0, 0.5f, "cat/0.jpg"},
                      {0, 0, 0.5f, "cat/1.jpg"},
                      {0, 0, 0.5f, "cat/2.jpg"},
                      {0, 1, 0.625f, "cat/3.jpg"},
                      {1, 1, 0.5f, "dog/0.jpg"},
                      {1, 1, 0.5f, "dog/1.jpg"},
                      {1, 2, 0.875f, "dog/2.jpg"},
                      {2, 0, 0.5f, "bird/0.jpg"},
                      {2, 1, 0.75f, "bird/1.jpg"},
                      {2, 2, 0.5f, "bird/2.jpg"}},
                     3);
}

eval::ClassificationReport animals_report(int64_t topk = 5) {
  auto in = animals();
  return eval::evaluate(in.probs, in.labels, kAnimals, in.paths, 0.4123, topk);
}

/// The integers on the line of REPORT's confusion matrix that starts with ROW_NAME.
std::vector<int64_t> confusion_row(const std::string& report, const std::string& row_name) {
  std::istringstream lines(report.substr(report.find("confusion matrix")));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(row_name + " ", 0) != 0) continue;
    std::istringstream fields(line.substr(row_name.size()));
    std::vector<int64_t> counts;
    for (int64_t v; fields >> v;) counts.push_back(v);
    return counts;
  }
  return {};
}

}  // namespace

TEST(Metrics, ThreeClassHandComputed) {
  auto r = animals_report();
  ASSERT_EQ(r.confusion, (std::vector<std::vector<int64_t>>{{3, 1, 0}, {0, 2, 1}, {1, 1, 1}}));
  EXPECT_EQ(r.samples, 10);
  EXPECT_NEAR(r.accuracy, 0.6, kTol);
  EXPECT_DOUBLE_EQ(r.loss, 0.4123);
  ASSERT_EQ(r.per_class.size(), 3u);
  EXPECT_EQ(r.per_class[0].name, "cat");
  EXPECT_NEAR(r.per_class[0].precision, 0.75, kTol);
  EXPECT_NEAR(r.per_class[0].recall, 0.75, kTol);
  EXPECT_NEAR(r.per_class[0].f1, 0.75, kTol);
  EXPECT_EQ(r.per_class[0].support, 4);
  EXPECT_NEAR(r.per_class[1].precision, 0.5, kTol);
  EXPECT_NEAR(r.per_class[1].recall, 2.0 / 3, kTol);
  EXPECT_NEAR(r.per_class[1].f1, 4.0 / 7, kTol);
  EXPECT_EQ(r.per_class[1].support, 3);
  EXPECT_NEAR(r.per_class[2].precision, 0.5, kTol);
  EXPECT_NEAR(r.per_class[2].recall, 1.0 / 3, kTol);
  EXPECT_NEAR(r.per_class[2].f1, 0.4, kTol);
  EXPECT_EQ(r.per_class[2].support, 3);
  EXPECT_NEAR(r.macro_precision, 7.0 / 12, kTol);
  EXPECT_NEAR(r.macro_recall, 7.0 / 12, kTol);
  EXPECT_NEAR(r.macro_f1, 241.0 / 420, kTol);
  EXPECT_NEAR(r.weighted_precision, 0.6, kTol);
  EXPECT_NEAR(r.weighted_recall, 0.6, kTol);
  EXPECT_NEAR(r.weighted_f1, 207.0 / 350, kTol);
}

TEST(Metrics, ClassNeverPredictedHasZeroPrecision) {
  // labels 0 0 1 2 2, predicted 0 0 1 0 1: bird is never predicted.
  // cat:  tp 2, predicted 3, support 2 → P 2/3, R 1, F1 4/5
  // dog:  tp 1, predicted 2, support 1 → P 1/2, R 1, F1 2/3
  // bird: tp 0, predicted 0, support 2 → P 0 (0/0), R 0, F1 0
  auto in = make_inputs({{0, 0, 0.6f, ""}, {0, 0, 0.6f, ""}, {1, 1, 0.6f, ""}, {2, 0, 0.6f, ""}, {2, 1, 0.6f, ""}}, 3);
  auto r = eval::evaluate(in.probs, in.labels, kAnimals, {}, 0.0);
  EXPECT_NEAR(r.per_class[0].precision, 2.0 / 3, kTol);
  EXPECT_NEAR(r.per_class[0].recall, 1.0, kTol);
  EXPECT_NEAR(r.per_class[0].f1, 0.8, kTol);
  EXPECT_NEAR(r.per_class[1].f1, 2.0 / 3, kTol);
  EXPECT_EQ(r.per_class[2].precision, 0.0);
  EXPECT_EQ(r.per_class[2].recall, 0.0);
  EXPECT_EQ(r.per_class[2].f1, 0.0);
  EXPECT_EQ(r.per_class[2].support, 2);
  // The zero still counts in the macro mean: (2/3 + 1/2 + 0) / 3.
  EXPECT_NEAR(r.macro_precision, 7.0 / 18, kTol);
  // Weighted by support 2, 1, 2: (2*2/3 + 1/2 + 0) / 5.
  EXPECT_NEAR(r.weighted_precision, (4.0 / 3 + 0.5) / 5, kTol);
}

TEST(Metrics, ClassWithoutSamplesHasZeroRecallAndNoWeight) {
  // labels 0 0, predicted 0 1 (2 classes): class 1 has no samples but one prediction.
  // class 0: P 1, R 1/2, F1 2/3; class 1: P 0/1 = 0, R 0/0 → 0, F1 0.
  auto in = make_inputs({{0, 0, 0.9f, ""}, {0, 1, 0.9f, ""}}, 2);
  auto r = eval::evaluate(in.probs, in.labels, {"a", "b"}, {}, 0.0);
  EXPECT_EQ(r.per_class[1].support, 0);
  EXPECT_EQ(r.per_class[1].precision, 0.0);
  EXPECT_EQ(r.per_class[1].recall, 0.0);
  EXPECT_EQ(r.per_class[1].f1, 0.0);
  EXPECT_NEAR(r.macro_precision, 0.5, kTol);
  EXPECT_NEAR(r.macro_recall, 0.25, kTol);
  EXPECT_NEAR(r.macro_f1, 1.0 / 3, kTol);
  // Support 0 gives class 1 no weight, so weighted = class 0's values.
  EXPECT_NEAR(r.weighted_precision, 1.0, kTol);
  EXPECT_NEAR(r.weighted_recall, 0.5, kTol);
  EXPECT_NEAR(r.weighted_f1, 2.0 / 3, kTol);
}

TEST(Metrics, PerfectPredictions) {
  auto in = make_inputs({{0, 0, 0.9f, ""}, {1, 1, 0.9f, ""}, {2, 2, 0.9f, ""}, {2, 2, 0.9f, ""}}, 3);
  auto r = eval::evaluate(in.probs, in.labels, kAnimals, {}, 0.01, 1);
  EXPECT_EQ(r.accuracy, 1.0);
  EXPECT_EQ(r.topk_accuracy, 1.0);
  for (const auto& m : r.per_class) {
    EXPECT_EQ(m.precision, 1.0) << m.name;
    EXPECT_EQ(m.recall, 1.0) << m.name;
    EXPECT_EQ(m.f1, 1.0) << m.name;
  }
  EXPECT_NEAR(r.macro_f1, 1.0, kTol);
  EXPECT_NEAR(r.weighted_f1, 1.0, kTol);
  EXPECT_EQ(r.confusion, (std::vector<std::vector<int64_t>>{{1, 0, 0}, {0, 1, 0}, {0, 0, 2}}));
  EXPECT_TRUE(r.mistakes.empty());
  EXPECT_NE(eval::format_report(r).find("no mistakes"), std::string::npos);
}

TEST(Metrics, TopKCountsLabelAmongTheKHighest) {
  const std::vector<float> probs{0.5f, 0.3f, 0.2f,   // label 0: rank 0
                                 0.5f, 0.3f, 0.2f,   // label 1: rank 1
                                 0.5f, 0.3f, 0.2f,   // label 2: rank 2
                                 0.1f, 0.2f, 0.7f};  // label 0: rank 2
  const std::vector<int64_t> labels{0, 1, 2, 0};
  auto top2 = eval::evaluate(probs, labels, kAnimals, {}, 0.0, 2);
  EXPECT_EQ(top2.topk, 2);
  EXPECT_NEAR(top2.accuracy, 0.25, kTol);
  EXPECT_NEAR(top2.topk_accuracy, 0.5, kTol);
  auto top1 = eval::evaluate(probs, labels, kAnimals, {}, 0.0, 1);
  EXPECT_NEAR(top1.topk_accuracy, top1.accuracy, kTol);
  // k is capped at the number of classes, where every label is found.
  auto top5 = eval::evaluate(probs, labels, kAnimals, {}, 0.0, 5);
  EXPECT_EQ(top5.topk, 3);
  EXPECT_NEAR(top5.topk_accuracy, 1.0, kTol);
}

TEST(Metrics, TiesGoToTheLowerClassIndex) {
  const std::vector<float> probs{0.4f, 0.4f, 0.2f,   // label 1: argmax 0 by tie → a mistake, but in the top 2
                                 0.3f, 0.3f, 0.3f,   // label 0: all tied → predicted 0, correct
                                 0.3f, 0.3f, 0.3f};  // label 2: all tied → third by index, outside the top 2
  auto r = eval::evaluate(probs, {1, 0, 2}, kAnimals, {}, 0.0, 2);
  EXPECT_EQ(r.confusion[1][0], 1);
  EXPECT_EQ(r.confusion[0][0], 1);
  EXPECT_EQ(r.confusion[2][0], 1);
  EXPECT_NEAR(r.accuracy, 1.0 / 3, kTol);
  EXPECT_NEAR(r.topk_accuracy, 2.0 / 3, kTol);
  ASSERT_EQ(r.mistakes.size(), 2u);
  EXPECT_EQ(r.mistakes[0].predicted, 0);
  EXPECT_FLOAT_EQ(static_cast<float>(r.mistakes[0].confidence), 0.4f);
}

TEST(Metrics, MistakesMostConfidentFirst) {
  auto r = animals_report();
  ASSERT_EQ(r.mistakes.size(), 4u);
  EXPECT_EQ(r.mistakes[0].path, "dog/2.jpg");
  EXPECT_EQ(r.mistakes[0].label, 1);
  EXPECT_EQ(r.mistakes[0].predicted, 2);
  EXPECT_EQ(r.mistakes[0].confidence, 0.875);
  EXPECT_EQ(r.mistakes[1].path, "bird/1.jpg");
  EXPECT_EQ(r.mistakes[1].confidence, 0.75);
  EXPECT_EQ(r.mistakes[2].path, "cat/3.jpg");
  EXPECT_EQ(r.mistakes[3].path, "bird/0.jpg");
  EXPECT_EQ(r.mistakes[3].confidence, 0.5);
}

TEST(Metrics, EquallyConfidentMistakesKeepDatasetOrder) {
  auto in = make_inputs({{0, 1, 0.7f, "first"}, {1, 0, 0.9f, "top"}, {0, 2, 0.7f, "second"}, {2, 0, 0.7f, "third"}},
                        3);
  auto r = eval::evaluate(in.probs, in.labels, kAnimals, in.paths, 0.0);
  ASSERT_EQ(r.mistakes.size(), 4u);
  EXPECT_EQ(r.mistakes[0].path, "top");
  EXPECT_EQ(r.mistakes[1].path, "first");
  EXPECT_EQ(r.mistakes[2].path, "second");
  EXPECT_EQ(r.mistakes[3].path, "third");
}

TEST(Metrics, RowsNeedNotSumToOne) {
  // Logits work as well as probabilities: only the order within a row matters.
  auto r = eval::evaluate({-2.0f, 5.0f, 1.0f, 3.0f, -1.0f, 0.0f}, {1, 2}, kAnimals, {}, 0.0, 1);
  EXPECT_EQ(r.confusion[1][1], 1);
  EXPECT_EQ(r.confusion[2][0], 1);
  ASSERT_EQ(r.mistakes.size(), 1u);
  EXPECT_EQ(r.mistakes[0].confidence, 3.0);
  EXPECT_EQ(r.mistakes[0].path, "");
}

TEST(Metrics, JsonHasEveryField) {
  auto r = animals_report(2);
  auto j = eval::to_json(r);
  for (const char* key : {"classes", "samples", "loss", "accuracy", "topk", "topk_accuracy", "per_class",
                          "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall",
                          "weighted_f1", "confusion", "mistakes"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["classes"], config::json(kAnimals));
  EXPECT_EQ(j["samples"], 10);
  EXPECT_EQ(j["topk"], 2);
  EXPECT_NEAR(j["accuracy"].get<double>(), 0.6, kTol);
  EXPECT_NEAR(j["macro_f1"].get<double>(), 241.0 / 420, kTol);
  EXPECT_NEAR(j["weighted_f1"].get<double>(), 207.0 / 350, kTol);
  EXPECT_EQ(j["confusion"][2], config::json({1, 1, 1}));
  ASSERT_EQ(j["per_class"].size(), 3u);
  EXPECT_EQ(j["per_class"][1]["name"], "dog");
  EXPECT_EQ(j["per_class"][1]["support"], 3);
  EXPECT_NEAR(j["per_class"][1]["f1"].get<double>(), 4.0 / 7, kTol);
  for (const char* key : {"precision", "recall"}) EXPECT_TRUE(j["per_class"][1].contains(key)) << key;
  ASSERT_EQ(j["mistakes"].size(), 4u);
  EXPECT_EQ(j["mistakes"][0]["path"], "dog/2.jpg");
  EXPECT_EQ(j["mistakes"][0]["label"], 1);
  EXPECT_EQ(j["mistakes"][0]["predicted"], 2);
  EXPECT_EQ(j["mistakes"][0]["confidence"], 0.875);
  // Survives a round trip through text, as the run directory stores it.
  EXPECT_EQ(config::json::parse(j.dump()), j);
}

TEST(Metrics, ReportShowsNamesNumbersAndMatrix) {
  auto text = eval::format_report(animals_report(2));
  for (const char* s : {"cat", "dog", "bird", "macro avg", "weighted avg",
                        "0.6000",    // accuracy
                        "top-2",     //
                        "0.4123",    // loss
                        "0.5714",    // dog F1 = 4/7
                        "0.3333",    // bird recall
                        "0.5738",    // macro F1
                        "0.5914",    // weighted F1
                        "dog/2.jpg", "0.8750"})
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
  EXPECT_EQ(confusion_row(text, "cat"), (std::vector<int64_t>{3, 1, 0})) << text;
  EXPECT_EQ(confusion_row(text, "dog"), (std::vector<int64_t>{0, 2, 1})) << text;
  EXPECT_EQ(confusion_row(text, "bird"), (std::vector<int64_t>{1, 1, 1})) << text;
}

TEST(Metrics, ReportColumnsAlign) {
  auto r = animals_report();
  r.per_class[0].name = r.classes[0] = "a_rather_long_class_name";
  auto text = eval::format_report(r);
  // The per-class table runs from its header to the weighted row; every line has the same width.
  std::istringstream lines(text.substr(text.find("class ")));
  std::string line;
  size_t width = 0;
  int rows = 0;
  while (std::getline(lines, line) && !line.empty()) {
    if (width == 0) width = line.size();
    EXPECT_EQ(line.size(), width) << line << "\n" << text;
    ++rows;
  }
  EXPECT_EQ(rows, 1 + 3 + 2);
}

TEST(Metrics, ReportLimitsMistakes) {
  auto text = eval::format_report(animals_report(), 2);
  EXPECT_NE(text.find("dog/2.jpg"), std::string::npos);
  EXPECT_NE(text.find("bird/1.jpg"), std::string::npos);
  EXPECT_EQ(text.find("cat/3.jpg"), std::string::npos) << text;
  EXPECT_EQ(text.find("bird/0.jpg"), std::string::npos) << text;
  EXPECT_NE(text.find("2 of 4"), std::string::npos) << text;
}

TEST(MetricsDeathTest, InconsistentInputsAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the process has LibTorch's threads
  EXPECT_DEATH(eval::evaluate({0.5f, 0.5f, 0.5f}, {0, 1}, {"a", "b"}, {}, 0.0), "probs");
  EXPECT_DEATH(eval::evaluate({0.5f, 0.5f}, {2}, {"a", "b"}, {}, 0.0), "label 2");
  EXPECT_DEATH(eval::evaluate({0.5f, 0.5f}, {-1}, {"a", "b"}, {}, 0.0), "label -1");
  EXPECT_DEATH(eval::evaluate({0.5f, 0.5f}, {0}, {"a", "b"}, {"x", "y"}, 0.0), "paths");
}
