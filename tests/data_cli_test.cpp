// tltrain data check / data preview / bench data on the real binary.
#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "test_util.h"

using tltrain::test::run_tltrain;
using tltrain::test::TempDir;

namespace {
std::string write_config(const TempDir& dir, const std::string& data_json) {
  std::string path = dir / "run.json";
  tltrain::test::write_text(path, "// test config\n{\"data\": " + data_json + ", \"monitor\": \"loss\"}\n");
  return path;
}
}  // namespace

TEST(DataCli, CheckReportsCountsSkippedAndBadFilesAndImbalance) {
  TempDir dir;
  tltrain::test::write_color_dataset(dir / "train", {"few", "many"}, 2);
  tltrain::test::write_color_dataset(dir / "more", {"many"}, 6);
  for (int i = 0; i < 6; ++i)
    std::rename((dir / "more/many/" + std::to_string(i) + ".png").c_str(), (dir / "train/many/m" + std::to_string(i) + ".png").c_str());
  std::ofstream(dir / "train/few/zero.jpg").close();
  tltrain::test::write_text(dir / "train/many/fake.jpg", "hello");
  tltrain::test::write_text(dir / "train/many/readme.txt", "hello");
  auto r = run_tltrain("data check --config " + write_config(dir, "{\"train\": \"" + dir / "train" + "\"}"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train: 10 images in 2 classes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not an image type (.txt): 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("readme.txt"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("empty file"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("zero.jpg"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fake.jpg"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("class imbalance"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.backbone is not set"), std::string::npos) << r.output;
  auto quick = run_tltrain("data check --no-decode --config " + dir / "run.json");
  EXPECT_EQ(quick.exit_code, 0) << quick.output;
  EXPECT_EQ(quick.output.find("fake.jpg"), std::string::npos) << "--no-decode must not decode: " << quick.output;
}

TEST(DataCli, CheckFailsWithDataExitCodeWhenASplitHasNoUsableImages) {
  TempDir dir;
  tltrain::test::write_color_dataset(dir / "train", {"a", "b"}, 2);
  tltrain::test::write_text(dir / "val/a/x.jpg", "nope");
  tltrain::test::write_text(dir / "val/b/y.jpg", "nope");
  auto r = run_tltrain("data check --config " +
                       write_config(dir, "{\"train\": \"" + dir / "train" + "\", \"val\": \"" + dir / "val" + "\"}"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("val: 0 images"), std::string::npos) << r.output;
  TempDir empty;
  tltrain::test::write_text(empty / "train/a/notes.txt", "x");
  auto e = run_tltrain("data check --config " + write_config(empty, "{\"train\": \"" + empty / "train" + "\"}"));
  EXPECT_EQ(e.exit_code, 3) << e.output;
  EXPECT_NE(e.output.find("has no images"), std::string::npos) << e.output;
}

TEST(DataCli, PreviewWritesAGridAndBenchPrintsARate) {
  TempDir dir;
  tltrain::test::write_color_dataset(dir / "train", {"a", "b"}, 4, 40);
  std::string cfg = write_config(dir, "{\"train\": \"" + dir / "train" + "\", \"image_size\": [32, 32], \"batch_size\": 4}");
  auto r = run_tltrain("data preview --config " + cfg + " --out " + dir / "grid.png" + " --n 6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  cv::Mat grid = cv::imread(dir / "grid.png");
  EXPECT_EQ(grid.cols, 3 * 32 + 4 * 4);  // 3 columns, 2 rows, 4-pixel gaps
  EXPECT_EQ(grid.rows, 2 * 32 + 3 * 4);
  auto b = run_tltrain("bench data --config " + cfg + " --threads 2 --seconds 0.3");
  EXPECT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find("images/s"), std::string::npos) << b.output;
}

TEST(DataCli, CheckOnHymenopteraFindsTheTutorialCountsAndTheGif) {
  std::string shared = tltrain::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared is absent: the real-data check needs ../shared/data/hymenoptera";
  TempDir dir;
  std::string root = shared + "/data/hymenoptera";
  auto r = run_tltrain("data check --config " +
                       write_config(dir, "{\"train\": \"" + root + "/train\", \"val\": \"" + root + "/val\"}"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train: 244 images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("val: 153 images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("imageNotFound.gif"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("every image decodes"), std::string::npos) << r.output;
}
