// Config validation: every problem class is reported with its JSON path, all at once.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"

using namespace tltrain;
using config::json;

namespace {

const char* kMinimal = R"({
  // comments are allowed
  "data": {"train": "data/train", "val": "data/val"},
  "model": {"backbone": "backbone.pt"},
  "stages": [{"epochs": 2, "trainable": "head"}]
})";

config::RunConfig parse(const std::string& text) {
  return config::parse_run_config(json::parse(text, nullptr, true, true), "test.json");
}

/// The message of the Usage error that parsing TEXT raises ("" when it parses).
std::string problems_of(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    return e.what();
  }
  return "";
}

json minimal() { return json::parse(kMinimal, nullptr, true, true); }

std::string problems_with(const std::string& assignment) {
  json j = minimal();
  config::apply_override(j, assignment);
  return problems_of(j.dump());
}

}  // namespace

TEST(Config, MinimalConfigResolvesDefaults) {
  auto c = parse(kMinimal);
  EXPECT_EQ(c.seed, 42);
  EXPECT_EQ(c.device, config::Device::Auto);
  EXPECT_EQ(c.data.batch_size, 32);
  EXPECT_EQ(c.stages.size(), 1u);
  EXPECT_EQ(c.stages[0].optimizer.name, config::Optimizer::Adam);
  EXPECT_DOUBLE_EQ(c.stages[0].optimizer.lr, 1e-3);
  EXPECT_EQ(c.stages[0].batch_norm, config::BatchNormPolicy::Frozen);
  EXPECT_EQ(c.stages[0].trainable.kind, config::TrainableSpec::Kind::Head);
  // Defaults appear in the resolved config, paths are absolute.
  EXPECT_EQ(c.resolved["data"]["batch_size"], 32);
  EXPECT_EQ(c.resolved["stages"][0]["optimizer"]["lr"], 1e-3);
  EXPECT_EQ(c.resolved["model"]["backbone"].get<std::string>().front(), '/');
  EXPECT_EQ(c.name, "test");
}

TEST(Config, RangeErrorNamesPathAllowedValuesAndGotValue) {
  std::string msg = problems_with("stages[0].optimizer.lr=-1");
  EXPECT_NE(msg.find("stages[0].optimizer.lr: must be >= 0, got -1"), std::string::npos) << msg;
}

TEST(Config, TypeErrors) {
  std::string msg = problems_with("data.batch_size=\"32\"");
  EXPECT_NE(msg.find("data.batch_size: must be an integer, got \"32\""), std::string::npos) << msg;
  msg = problems_with("data.augment.horizontal_flip=1");
  EXPECT_NE(msg.find("data.augment.horizontal_flip: must be true or false"), std::string::npos) << msg;
  msg = problems_with("stages=5");
  EXPECT_NE(msg.find("stages: must be a non-empty list"), std::string::npos) << msg;
}

TEST(Config, ChoiceErrorListsChoicesAndSuggests) {
  std::string msg = problems_with("stages[0].optimizer.name=adamm");
  EXPECT_NE(msg.find("must be one of sgd|adam|adamw|rmsprop|lbfgs, got \"adamm\" (did you mean \"adam\"?)"), std::string::npos) << msg;
}

TEST(Config, UnknownKeyGetsDidYouMean) {
  json j = minimal();
  j["stages"][0]["optimiser"] = {{"name", "sgd"}};
  std::string msg = problems_of(j.dump());
  EXPECT_NE(msg.find("stages[0].optimiser: unknown key (did you mean \"optimizer\"?)"), std::string::npos) << msg;
  j = minimal();
  j["data"]["batchsize"] = 8;
  msg = problems_of(j.dump());
  EXPECT_NE(msg.find("data.batchsize: unknown key (did you mean \"batch_size\"?)"), std::string::npos) << msg;
}

TEST(Config, MissingRequiredKeys) {
  std::string msg = problems_of(R"({"stages": [{"epochs": 1}]})");
  EXPECT_NE(msg.find("data.train: is required"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.backbone: is required"), std::string::npos) << msg;
}

TEST(Config, ReportsAllProblemsAtOnce) {
  json j = minimal();
  j["seed"] = -3;
  j["device"] = "gpu";
  j["stages"][0]["optimizer"] = {{"lr", -1}};
  j["stages"][0]["epochs"] = 1.5;
  j["extra"] = true;
  std::string msg = problems_of(j.dump());
  EXPECT_NE(msg.find("5 problems"), std::string::npos) << msg;
  for (const char* path : {"seed:", "device:", "stages[0].optimizer.lr:", "stages[0].epochs:", "extra:"})
    EXPECT_NE(msg.find(path), std::string::npos) << path << " missing in\n" << msg;
}

TEST(Config, TrainableForms) {
  json j = minimal();
  j["stages"][0]["trainable"] = {{"fraction", 0.2}};
  EXPECT_EQ(parse(j.dump()).stages[0].trainable.kind, config::TrainableSpec::Kind::Fraction);
  j["stages"][0]["trainable"] = {{"blocks", 3}};
  EXPECT_EQ(parse(j.dump()).stages[0].trainable.blocks, 3);
  j["stages"][0]["trainable"] = {{"from", "features.14"}};
  EXPECT_EQ(parse(j.dump()).stages[0].trainable.from, "features.14");
  j["stages"][0]["trainable"] = "all";
  EXPECT_EQ(parse(j.dump()).stages[0].trainable.kind, config::TrainableSpec::Kind::All);

  j["stages"][0]["trainable"] = 0.2;
  EXPECT_NE(problems_of(j.dump()).find("a bare number is ambiguous"), std::string::npos);
  j["stages"][0]["trainable"] = {{"fraction", 1.5}};
  EXPECT_NE(problems_of(j.dump()).find("stages[0].trainable.fraction: must be in (0, 1]"), std::string::npos);
  j["stages"][0]["trainable"] = "features.14";
  EXPECT_NE(problems_of(j.dump()).find("{\"from\": \"features.14\"}"), std::string::npos);
}

TEST(Config, CrossKeyRules) {
  json j = minimal();
  j["data"]["validation_split"] = 0.2;
  EXPECT_NE(problems_of(j.dump()).find("set either data.val or data.validation_split"), std::string::npos);
  j = minimal();
  j["data"].erase("val");
  EXPECT_NE(problems_of(j.dump()).find("monitor: is \"val_accuracy\" but there is no validation data"), std::string::npos);
  j["monitor"] = "accuracy";
  EXPECT_EQ(problems_of(j.dump()), "");
}

TEST(Config, IgnoredSettingIsAWarningNotAnError) {
  json j = minimal();
  j["stages"][0]["optimizer"] = {{"name", "adam"}, {"momentum", 0.5}};
  auto c = parse(j.dump());
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0].path, "stages[0].optimizer.momentum");
  EXPECT_NE(c.warnings[0].message.find("ignored by optimizer adam"), std::string::npos);
}

TEST(Config, SgdDefaultsFollowTheSeeds) {
  json j = minimal();
  j["stages"][0]["optimizer"] = {{"name", "sgd"}};
  auto c = parse(j.dump());
  EXPECT_DOUBLE_EQ(c.stages[0].optimizer.momentum, 0.9);
}

TEST(Config, OverridesSetNestedValuesWithJsonOrStringValues) {
  json j = minimal();
  config::apply_override(j, "stages[0].optimizer.lr=1e-4");
  config::apply_override(j, "device=cpu");
  config::apply_override(j, "data.augment.zoom_range=[0.9,1.2]");
  auto c = parse(j.dump());
  EXPECT_DOUBLE_EQ(c.stages[0].optimizer.lr, 1e-4);
  EXPECT_EQ(c.device, config::Device::Cpu);
  EXPECT_DOUBLE_EQ(c.data.augment.zoom_range[1], 1.2);
}

TEST(Config, BadOverridesAreUsageErrors) {
  json j = minimal();
  for (const char* bad : {"nokey", "stages[3].epochs=1", "stages[x].epochs=1", "data.train.x=1", "=3"}) {
    try {
      config::apply_override(j, bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(std::string(e.what()).find("--set"), std::string::npos);
    }
  }
}

TEST(Config, JsonSyntaxErrorGivesLineAndColumn) {
  test::TempDir dir;
  test::write_text(dir / "bad.json", "{\n  \"seed\": 1,\n  \"data\": {,}\n}\n");
  try {
    config::load_run_config(dir / "bad.json");
    FAIL() << "parsed invalid JSON";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("bad.json:3:"), std::string::npos) << e.what();
  }
}

TEST(Config, EveryShippedConfigValidates) {
  namespace fs = std::filesystem;
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(std::string(TLTRAIN_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".json") continue;
    ++n;
    EXPECT_NO_THROW(config::load_run_config(e.path().string())) << e.path();
  }
  EXPECT_GE(n, 8);
}

TEST(Config, ResolvedConfigParsesBackToItself) {
  // Run directories store the resolved config; --resume and eval read it back.
  json j = minimal();
  j["data"]["augment"] = {{"random_resized_crop", {{"scale", {0.5, 1.0}}}}, {"zoom_range", 0.2}};
  j["stages"][0]["early_stopping"] = {{"patience", 2}};
  j["stages"].push_back({{"trainable", {{"fraction", 0.2}}}, {"optimizer", {{"name", "sgd"}}}, {"class_weights", "auto"}});
  auto first = parse(j.dump());
  auto second = config::parse_run_config(first.resolved, "resolved.json");
  EXPECT_EQ(first.resolved, second.resolved);
  j["data"]["augment"]["random_resized_crop"] = false;
  first = parse(j.dump());
  EXPECT_EQ(config::parse_run_config(first.resolved, "resolved.json").resolved, first.resolved);
}

namespace {
void collect_keys(const json& j, const std::string& prefix, std::vector<std::string>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
      // Leaves and lists are settings; plain objects only group them.
      if (!it.value().is_object()) out.push_back(path);
      collect_keys(it.value(), path, out);
    }
  } else if (j.is_array() && !j.empty() && j[0].is_object()) {
    for (const auto& e : j) collect_keys(e, prefix + "[]", out);
    out.erase(std::find(out.begin(), out.end(), prefix));  // the list itself: its elements are documented
  }
}
}  // namespace

TEST(Config, EveryKeyIsDocumentedInTheUserGuide) {
  json j = minimal();
  j["stages"][0]["early_stopping"] = {{"patience", 2}};
  j["stages"][0]["feature_cache"] = {{"views", 2}};
  j["data"]["augment"]["random_resized_crop"] = {{"scale", {0.5, 1.0}}};
  auto c = parse(j.dump());
  std::vector<std::string> keys;
  collect_keys(c.resolved, "", keys);
  std::ifstream in(std::string(TLTRAIN_SOURCE_DIR) + "/docs/user-guide.md");
  std::string doc((std::istreambuf_iterator<char>(in)), {});
  ASSERT_FALSE(doc.empty());
  EXPECT_GT(keys.size(), 50u);
  for (const auto& k : keys) EXPECT_NE(doc.find("`" + k + "`"), std::string::npos) << "docs/user-guide.md does not describe `" << k << "`";
}

TEST(Config, ImageSizeOneNumberIsASquare) {
  json j = minimal();
  j["data"]["image_size"] = 28;
  auto c = parse(j.dump());
  ASSERT_TRUE(c.data.image_size.has_value());
  EXPECT_EQ((*c.data.image_size)[0], 28);
  EXPECT_EQ((*c.data.image_size)[1], 28);
  EXPECT_EQ(c.resolved["data"]["image_size"], json::array({28, 28}));
  EXPECT_NE(problems_with("data.image_size=4").find("data.image_size"), std::string::npos);    // range still checked
  EXPECT_NE(problems_with("data.image_size=28.5").find("data.image_size"), std::string::npos); // and integrality
}

TEST(Config, StoredConfigReadsBackWithoutWarnings) {
  // fit --resume, eval and finetune read the run's resolved config: defaults of settings the
  // chosen optimizer or schedule does not use must not come back as "is ignored by" warnings.
  for (const char* opt : {"sgd", "adam", "adamw", "rmsprop"})
    for (const char* sched : {"constant", "step", "exponential", "cosine"}) {
      json j = minimal();
      j["stages"][0]["optimizer"] = {{"name", opt}};
      j["stages"][0]["schedule"] = {{"name", sched}};
      auto first = parse(j.dump());
      EXPECT_TRUE(first.warnings.empty()) << opt << " " << sched;
      auto again = config::parse_run_config(first.resolved, "resolved.json");
      EXPECT_TRUE(again.warnings.empty()) << opt << " " << sched << ": " << again.warnings.size() << " warnings, first "
                                          << (again.warnings.empty() ? "" : again.warnings[0].path);
      EXPECT_EQ(again.resolved, first.resolved);
    }
}
