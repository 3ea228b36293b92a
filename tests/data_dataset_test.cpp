// Scanning sources and splitting: skipped files counted, class differences named, stratified
// seeded splits reproducible.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/data/dataset.h"

using namespace tltrain;
using namespace tltrain::data;
using tltrain::test::TempDir;

TEST(DataDataset, ScanSkipsNonImagesAndAcceptsAnyCase) {
  TempDir dir;
  tltrain::test::write_color_dataset(dir / "root", {"b", "a"}, 3);
  tltrain::test::write_solid_image(dir / "root/a/UPPER.JPG", 8, 8, 1, 2, 3);
  tltrain::test::write_text(dir / "root/a/notes.txt", "x");
  tltrain::test::write_text(dir / "root/b/.DS_Store", "x");
  tltrain::test::write_text(dir / "root/b/anim.gif", "GIF89a");
  Dataset d = scan_source(dir / "root");
  EXPECT_EQ(d.classes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(d.samples.size(), 7u);
  EXPECT_EQ(d.class_counts(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(d.skipped.count(), 3u);
  EXPECT_EQ(d.skipped.by_reason.at("not an image type (.gif)").size(), 1u);
}

TEST(DataDataset, ValidationClassesMustMatchAndTheErrorNamesTheDifference) {
  TempDir dir;
  tltrain::test::write_color_dataset(dir / "train", {"cat", "dog"}, 2);
  tltrain::test::write_color_dataset(dir / "val", {"cat", "fox"}, 2);
  config::DataConfig cfg;
  cfg.train = dir / "train";
  cfg.val = dir / "val";
  try {
    load_datasets(cfg, 1);
    FAIL() << "expected a Data error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    std::string m = e.what();
    EXPECT_NE(m.find("only in train"), std::string::npos) << m;
    EXPECT_NE(m.find("[dog]"), std::string::npos) << m;
    EXPECT_NE(m.find("[fox]"), std::string::npos) << m;
  }
}

TEST(DataDataset, StratifiedSplitIsReproducibleAndPerClass) {
  TempDir dir;
  tltrain::test::write_color_dataset(dir / "root", {"a", "b", "c"}, 10);
  config::DataConfig cfg;
  cfg.train = dir / "root";
  cfg.validation_split = 0.2;
  Datasets d1 = load_datasets(cfg, 7), d2 = load_datasets(cfg, 7), d3 = load_datasets(cfg, 8);
  ASSERT_TRUE(d1.has_val && d1.val_is_split);
  EXPECT_EQ(d1.val.class_counts(), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(d1.train.class_counts(), (std::vector<int64_t>{8, 8, 8}));
  auto paths = [](const Dataset& d) {
    std::vector<std::string> p;
    for (const auto& s : d.samples) p.push_back(s.path);
    return p;
  };
  EXPECT_EQ(paths(d1.val), paths(d2.val));
  EXPECT_NE(paths(d1.val), paths(d3.val));
  for (const auto& v : d1.val.samples)
    for (const auto& t : d1.train.samples) ASSERT_NE(v.path, t.path);
  auto j = split_to_json(d1);
  EXPECT_EQ(j["val_files"].size(), 6u);
  EXPECT_EQ(j["classes"][2], "c");
}

TEST(DataDataset, CsvListWithRelativePaths) {
  TempDir dir;
  tltrain::test::write_solid_image(dir / "img/x.png", 8, 8, 1, 2, 3);
  tltrain::test::write_solid_image(dir / "img/y.png", 8, 8, 1, 2, 3);
  tltrain::test::write_text(dir / "list.csv", "path,label\nimg/x.png,zebra\nimg/y.png,ant\nimg/z.png,ant\nimg/readme.txt,ant\n");
  Dataset d = scan_source(dir / "list.csv");
  EXPECT_EQ(d.classes, (std::vector<std::string>{"ant", "zebra"}));
  ASSERT_EQ(d.samples.size(), 2u);
  EXPECT_EQ(d.samples[0].label, 0);
  EXPECT_EQ(d.skipped.count(), 2u);  // the missing z.png and the .txt
}

TEST(DataDataset, ScanNeverThrowsOnTheFilesystemAndNamesWhatItSkips) {
  namespace fs = std::filesystem;
  TempDir dir;
  tltrain::test::write_color_dataset(dir / "root", {"a", "b"}, 2);
  tltrain::test::write_color_dataset(dir / "elsewhere", {"more"}, 3);
  fs::create_symlink(".", dir / "root/a/loop");                      // a folder loop
  fs::create_symlink("self.jpg", dir / "root/a/self.jpg");           // a link to itself: ELOOP
  fs::create_symlink("missing.png", dir / "root/a/dangling.png");
  fs::create_directory_symlink(dir / "elsewhere/more", dir / "root/b/linked");  // followed once
  fs::create_directory(dir / "root/b/x.jpg");                        // a folder with an image's name
  tltrain::test::write_solid_image(dir / "root/b/x.jpg/inside.png", 8, 8, 1, 2, 3);
  ASSERT_EQ(::mkfifo((dir / "root/b/pipe.jpg").c_str(), 0644), 0);    // opening it would block
  fs::create_directory_symlink(dir / "root", dir / "root/b/up");      // back to the root: classes seen again
  Dataset d;
  ASSERT_NO_THROW(d = scan_source(dir / "root"));
  EXPECT_EQ(d.class_counts(), (std::vector<int64_t>{2, 2 + 3 + 1}));
  auto reason_of = [&](const std::string& path) {
    for (const auto& [reason, paths] : d.skipped.by_reason)
      if (std::find(paths.begin(), paths.end(), path) != paths.end()) return reason;
    return std::string("(not skipped)");
  };
  EXPECT_EQ(reason_of(dir / "root/a/self.jpg"), "symlink loop");
  EXPECT_EQ(reason_of(dir / "root/a/dangling.png"), "dangling symlink");
  EXPECT_NE(reason_of(dir / "root/a/loop").find("folder already scanned"), std::string::npos);
  EXPECT_NE(reason_of(dir / "root/b/pipe.jpg").find("not a regular file"), std::string::npos);
  // root/b/up leads to root/a and root/b again: each entered once, so nothing is counted twice.
  EXPECT_NE(reason_of(dir / "root/b/up/b").find("folder already scanned"), std::string::npos) << reason_of(dir / "root/b/up/b");
}
