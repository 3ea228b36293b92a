// The name tables (config/names.h): each name maps to one enumerator and back, every behaviour
// table has a row for every enumerator, validation rejects other names with the valid list, and
// docs/user-guide.md lists every name.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <set>
#include <sstream>

#include "test_util.h"
#include "tltrain/config/names.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/data/preprocess.h"
#include "tltrain/train/objective.h"
#include "tltrain/model/classifier.h"
#include "tltrain/train/schedule.h"
#include "tltrain/train/step.h"

using namespace tltrain;
using config::json;

namespace {

template <typename E>
void expect_round_trip() {
  std::set<std::string> seen;
  for (const auto& [name, e] : config::names<E>().entries) {
    EXPECT_TRUE(seen.insert(name).second) << "duplicate name " << name;
    EXPECT_EQ(config::name_of(e), name);
    EXPECT_EQ(config::from_name<E>(name), e);
  }
  try {
    config::from_name<E>("no-such-name");
    ADD_FAILURE() << "an unknown " << config::names<E>().what << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(valid: " + config::choices<E>(", ") + ")"), std::string::npos) << e.what();
  }
}

std::string user_guide() {
  std::ifstream in(std::string(TLTRAIN_SOURCE_DIR) + "/docs/user-guide.md");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The user guide's table row for KEY lists every name of E.
template <typename E>
void expect_documented(const std::string& guide, const std::string& key) {
  const auto at = guide.find("| `" + key + "` |");
  ASSERT_NE(at, std::string::npos) << "docs/user-guide.md has no row for " << key;
  const std::string row = guide.substr(at, guide.find('\n', at) - at);
  for (const auto& name : config::name_list<E>())
    EXPECT_TRUE(row.find("`" + name + "`") != std::string::npos || row.find("\"" + name + "\"") != std::string::npos)
        << key << ": docs/user-guide.md does not list " << name << "\n" << row;
}

}  // namespace

TEST(Names, EveryTableRoundTripsAndRejectsOtherNames) {
  expect_round_trip<config::Optimizer>();
  expect_round_trip<config::Schedule>();
  expect_round_trip<config::Loss>();
  expect_round_trip<config::Pooling>();
  expect_round_trip<config::Activation>();
  expect_round_trip<config::HeadOutput>();
  expect_round_trip<config::AugmentStep>();
  expect_round_trip<config::FillMode>();
  expect_round_trip<config::Normalization>();
  expect_round_trip<config::OnBadImage>();
  expect_round_trip<config::Interpolation>();
  expect_round_trip<config::BatchNormPolicy>();
  expect_round_trip<config::Metric>();
  expect_round_trip<config::Device>();
  expect_round_trip<config::Precision>();
  expect_round_trip<config::ModelFormat>();
}

TEST(Names, EveryNameHasItsBehaviour) {
  auto w = torch::zeros({2}, torch::requires_grad());
  for (auto o : config::name_list<config::Optimizer>()) {
    config::OptimizerConfig oc;
    oc.name = config::from_name<config::Optimizer>(o);
    EXPECT_NO_THROW(train::make_optimizer(oc, {{{w}, 0.1}})) << o;
  }
  for (auto l : config::name_list<config::Loss>()) {
    config::StageConfig st;
    st.loss = config::from_name<config::Loss>(l);
    const auto objective = train::make_objective(st, config::HeadConfig{}, {1, 1}, torch::kCPU);
    const bool hinge = dynamic_cast<const train::Hinge*>(objective.get()) != nullptr;
    EXPECT_EQ(hinge, l == "hinge") << l;
  }
  for (auto s : config::name_list<config::Schedule>()) {
    config::ScheduleConfig sc;
    sc.name = config::from_name<config::Schedule>(s);
    EXPECT_NO_THROW(train::lr_factor(sc, 0.1, 3, 2, 10)) << s;
  }
  for (auto p : config::name_list<config::Pooling>())
    for (auto a : config::name_list<config::Activation>()) {
      config::HeadConfig h;
      h.pooling = config::from_name<config::Pooling>(p);
      h.activation = config::from_name<config::Activation>(a);
      h.hidden = {3};
      model::Head head(h, 4, 2, /*positions=*/4);  // a 2x2 feature map
      EXPECT_EQ(head->forward(head->pool(torch::ones({1, 4, 2, 2}))).size(1), 2) << p << " " << a;
    }
  for (auto n : config::name_list<config::Normalization>()) {
    config::DataConfig d;
    d.normalization = config::from_name<config::Normalization>(n);
    if (d.normalization == config::Normalization::Dataset) d.normalization_stats = config::NormalizationStats{};  // fit computes them
    EXPECT_EQ(data::resolve_preprocess(d, data::ImageSpec{}).normalization, n == "backbone" ? "backbone" : n);
  }
  data::ImageSpec bicubic_backbone;
  bicubic_backbone.interpolation = config::Interpolation::Bicubic;
  for (auto n : config::name_list<config::Interpolation>()) {
    config::DataConfig d;
    d.interpolation = config::from_name<config::Interpolation>(n);
    EXPECT_EQ(config::name_of(data::resolve_preprocess(d, bicubic_backbone).interpolation), n == "backbone" ? "bicubic" : n);
  }
}

TEST(Names, ValidationNamesTheChoicesFromTheTable) {
  json cfg = {{"data", {{"train", "/tmp/x"}}}, {"model", {{"backbone", "/tmp/b.pt"}, {"head", {{"pooling", "sum"}}}}},
              {"stages", {{{"optimizer", {{"name", "adamm"}}}, {"schedule", {{"name", "cosin"}}}}}}};
  try {
    config::parse_run_config(cfg, "names.json");
    ADD_FAILURE() << "unknown names were accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.head.pooling: must be one of " + config::choices<config::Pooling>()), std::string::npos) << m;
    EXPECT_NE(m.find("must be one of " + config::choices<config::Optimizer>() + ", got \"adamm\" (did you mean \"adam\"?)"),
              std::string::npos) << m;
    EXPECT_NE(m.find("must be one of " + config::choices<config::Schedule>()), std::string::npos) << m;
  }
}

TEST(Names, TheUserGuideListsEveryName) {
  const std::string guide = user_guide();
  ASSERT_FALSE(guide.empty()) << "docs/user-guide.md is missing";
  expect_documented<config::Optimizer>(guide, "stages[].optimizer.name");
  expect_documented<config::Loss>(guide, "stages[].loss");
  expect_documented<config::Schedule>(guide, "stages[].schedule.name");
  expect_documented<config::Pooling>(guide, "model.head.pooling");
  expect_documented<config::Activation>(guide, "model.head.activation");
  expect_documented<config::HeadOutput>(guide, "model.head.output");
  expect_documented<config::AugmentStep>(guide, "data.augment.order");
  expect_documented<config::FillMode>(guide, "data.augment.fill_mode");
  expect_documented<config::Normalization>(guide, "data.normalization");
  expect_documented<config::OnBadImage>(guide, "data.on_bad_image");
  expect_documented<config::Interpolation>(guide, "data.interpolation");
  expect_documented<config::BatchNormPolicy>(guide, "stages[].batch_norm");
  expect_documented<config::Metric>(guide, "monitor");
  expect_documented<config::Metric>(guide, "stages[].early_stopping.monitor");
  expect_documented<config::Device>(guide, "device");
  expect_documented<config::Precision>(guide, "precision");
  expect_documented<config::Precision>(guide, "stages[].precision");
}
