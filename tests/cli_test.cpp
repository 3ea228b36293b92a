// The real tltrain binary: exit codes per failure class and the messages users see.
#include <gtest/gtest.h>

#include "test_util.h"
#include "tltrain/config/json_reader.h"
#include "tltrain/core/error.h"

using namespace tltrain;

namespace {

/// A dataset of coloured squares and a config pointing at it and at the tiny backbone.
struct Project {
  test::TempDir dir{"cli"};
  std::string config = dir / "run.json";
  explicit Project(const std::string& stages = R"([{"name": "head", "epochs": 1, "trainable": "head"},
      {"name": "tune", "epochs": 1, "trainable": {"fraction": 0.5}, "backbone_lr_mult": 0.1,
       "optimizer": {"name": "sgd", "lr": 0.01}}])") {
    test::write_color_dataset(dir / "train", {"red", "green"}, 4);
    test::write_color_dataset(dir / "val", {"red", "green"}, 2);
    test::write_text(config, R"({
      "data": {"train": ")" + dir / "train" + R"(", "val": ")" + dir / "val" + R"("},
      "model": {"backbone": ")" + test::tiny_backbone() + R"(", "head": {"hidden": [16]}},
      "output_dir": ")" + dir / "runs" + R"(",
      "stages": )" + stages + "}");
  }
};

}  // namespace

TEST(Cli, NoSubcommandIsAUsageError) {
  auto r = test::run_tltrain("");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  EXPECT_NE(r.output.find("A subcommand is required"), std::string::npos) << r.output;
}

TEST(Cli, UnknownOptionIsAUsageError) {
  auto r = test::run_tltrain("inspect --colour x.pt");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
}

TEST(Cli, HelpAndVersionExitZero) {
  EXPECT_EQ(test::run_tltrain("--help").exit_code, 0);
  auto r = test::run_tltrain("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("LibTorch"), std::string::npos) << r.output;
}

TEST(Cli, InspectPrintsBlocksAndCutPoints) {
  auto r = test::run_tltrain("inspect " + test::tiny_backbone());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("block3"), std::string::npos);
  EXPECT_NE(r.output.find("--unfreeze 0.5  = --unfreeze-blocks 2   = --unfreeze-from block2"), std::string::npos) << r.output;
  auto j = test::run_tltrain("inspect --json " + test::tiny_backbone());
  EXPECT_EQ(j.exit_code, 0);
  auto report = config::json::parse(j.output);
  EXPECT_EQ(report["blocks"].size(), 4u);
  EXPECT_EQ(report["metadata"]["arch"], "tiny");
}

TEST(Cli, BadBackboneFilesAreDataErrors) {
  test::TempDir dir;
  test::write_text(dir / "junk.pt", "junk");
  auto r = test::run_tltrain("inspect " + (dir / "junk.pt"));
  EXPECT_EQ(r.exit_code, exit_code::data) << r.output;
  EXPECT_NE(r.output.find("error: '" + (dir / "junk.pt") + "' is not a TorchScript file"), std::string::npos) << r.output;
  r = test::run_tltrain("inspect " + (dir / "missing.pt"));
  EXPECT_EQ(r.exit_code, exit_code::data) << r.output;
}

TEST(Cli, InvalidConfigIsAUsageErrorListingEveryProblem) {
  test::TempDir dir;
  test::write_text(dir / "bad.json", R"({"data": {"train": "x", "batch_size": 0}, "model": {"backbone": "b.pt"},
    "stages": [{"epochs": 1, "optimizer": {"lr": -1}, "trainabel": "head"}]})");
  auto r = test::run_tltrain("fit --config " + (dir / "bad.json") + " --dry-run");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  EXPECT_NE(r.output.find("data.batch_size: must be in [1, 65536], got 0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stages[0].optimizer.lr: must be >= 0, got -1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stages[0].trainabel: unknown key (did you mean \"trainable\"?)"), std::string::npos) << r.output;
}

TEST(Cli, MissingDataFolderIsADataError) {
  Project p;
  auto r = test::run_tltrain("fit --config " + p.config + " --dry-run --set data.train=" + (p.dir / "nowhere"));
  EXPECT_EQ(r.exit_code, exit_code::data) << r.output;
  EXPECT_NE(r.output.find("nowhere' does not exist"), std::string::npos) << r.output;
}

TEST(Cli, DryRunPrintsResolvedConfigAndPlan) {
  Project p;
  auto r = test::run_tltrain("fit --config " + p.config + " --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"batch_size\": 32"), std::string::npos) << r.output;  // a default, resolved
  EXPECT_NE(r.output.find("Data: 2 classes, 8 train images, 4 validation images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stage 1 'head': 1 epoch, trains head only (backbone frozen)"), std::string::npos) << r.output;
  // fraction 0.5 of 4 blocks → block2, block3; backbone lr = 0.01 * 0.1.
  EXPECT_NE(r.output.find("trains top 50% of blocks (2/4 blocks: block2 … block3)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("group backbone        7008 params  lr 0.001"), std::string::npos) << r.output;
  // head: 32 → 16 → 2 = 32*16+16 + 16*2+2.
  EXPECT_NE(r.output.find("group head             562 params  lr 0.01"), std::string::npos) << r.output;
}

TEST(Cli, DryRunHonoursSetOverrides) {
  Project p;
  auto r = test::run_tltrain("fit --config " + p.config + " --dry-run --set stages[1].trainable.fraction=1.0 --set data.batch_size=8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"batch_size\": 8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(4/4 blocks: block0 … block3)"), std::string::npos) << r.output;
}

TEST(Cli, DryRunRejectsAStageThatNamesAMissingBlock) {
  Project p(R"([{"epochs": 1, "trainable": {"from": "blok2"}}])");
  auto r = test::run_tltrain("fit --config " + p.config + " --dry-run");
  EXPECT_EQ(r.exit_code, exit_code::usage) << r.output;
  EXPECT_NE(r.output.find("stages[0].trainable: no block or sub-module named \"blok2\" in the backbone (did you mean \"block2\"?)"), std::string::npos)
      << r.output;
}
