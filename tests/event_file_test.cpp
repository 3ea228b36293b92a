// TensorBoard event files written by hand: CRC-32C against its published check values, and the
// file read back record by record (framing, masked CRCs, protobuf fields) as TensorBoard reads it,
// and by TensorBoard's own EventAccumulator (scripts/test_tools.sh's venv).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "test_util.h"
#include "tltrain/train/event_file.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

uint32_t unmask(uint32_t m) {
  uint32_t r = m - 0xa282ead8u;
  return (r >> 17) | (r << 15);
}

uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s[at + i]);
  return v;
}

/// Records of a TFRecord file, each CRC checked.
std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string f = ss.str();
  std::vector<std::string> out;
  size_t p = 0;
  while (p < f.size()) {
    EXPECT_LE(p + 12, f.size());
    uint64_t n = le(f, p, 8);
    EXPECT_EQ(unmask(static_cast<uint32_t>(le(f, p + 8, 4))), train::crc32c(f.data() + p, 8)) << "length CRC at " << p;
    std::string data = f.substr(p + 12, n);
    EXPECT_EQ(unmask(static_cast<uint32_t>(le(f, p + 12 + n, 4))), train::crc32c(data.data(), data.size())) << "data CRC at " << p;
    out.push_back(data);
    p += 12 + n + 4;
  }
  return out;
}

struct Scalar {
  double wall_time = 0;
  int64_t step = -1;
  std::string file_version, tag;
  float value = 0;
};

uint64_t varint(const std::string& s, size_t& p) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    auto b = static_cast<unsigned char>(s[p++]);
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
}

/// A minimal protobuf reader for tensorflow.Event / Summary / Summary.Value.
void parse(const std::string& s, int depth, Scalar& out) {
  size_t p = 0;
  while (p < s.size()) {
    uint64_t key = varint(s, p);
    int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (type == 0) {
      uint64_t v = varint(s, p);
      if (depth == 0 && field == 2) out.step = static_cast<int64_t>(v);
    } else if (type == 1) {
      uint64_t bits = le(s, p, 8);
      p += 8;
      if (depth == 0 && field == 1) std::memcpy(&out.wall_time, &bits, 8);
    } else if (type == 5) {
      uint32_t bits = static_cast<uint32_t>(le(s, p, 4));
      p += 4;
      if (depth == 2 && field == 2) std::memcpy(&out.value, &bits, 4);
    } else if (type == 2) {
      size_t n = varint(s, p);
      std::string sub = s.substr(p, n);
      p += n;
      if (depth == 0 && field == 3) out.file_version = sub;
      else if ((depth == 0 && field == 5) || (depth == 1 && field == 1)) parse(sub, depth + 1, out);
      else if (depth == 2 && field == 1) out.tag = sub;
    } else {
      ADD_FAILURE() << "unexpected wire type " << type;
      return;
    }
  }
}

std::vector<Scalar> read_events(const std::string& path) {
  std::vector<Scalar> out;
  for (const auto& r : read_records(path)) {
    Scalar s;
    parse(r, 0, s);
    out.push_back(s);
  }
  return out;
}

}  // namespace

TEST(EventFile, Crc32cMatchesPublishedCheckValues) {
  EXPECT_EQ(train::crc32c("123456789", 9), 0xE3069283u);  // the CRC catalogue's check value
  std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(train::crc32c(zeros.data(), 32), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(train::crc32c(ones.data(), 32), 0x62A8AB43u);
}

TEST(EventFile, ScalarsReadBackWithFileVersionFirst) {
  test::TempDir d("tb");
  std::string path;
  {
    train::EventFileWriter w(d / "tb");
    path = w.path();
    w.add_scalar("loss/train", 1, 0.5f, 1700000000.25);
    w.add_scalar("accuracy/val", 300, 0.875f, 1700000001.5);
    w.flush();
  }
  EXPECT_NE(fs::path(path).filename().string().find("tfevents"), std::string::npos) << "TensorBoard only reads *tfevents* files";
  auto ev = read_events(path);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_EQ(ev[1].tag, "loss/train");
  EXPECT_EQ(ev[1].step, 1);
  EXPECT_EQ(ev[1].value, 0.5f);
  EXPECT_EQ(ev[1].wall_time, 1700000000.25);
  EXPECT_EQ(ev[2].tag, "accuracy/val");
  EXPECT_EQ(ev[2].step, 300);  // a two-byte varint
  EXPECT_EQ(ev[2].value, 0.875f);
}

namespace {

/// Three epochs over two stages on coloured squares with --tensorboard, into D/run (events in D/run/tb).
train::FitResult fit_with_tensorboard(const test::TempDir& d, int seed) {
  test::write_color_dataset(d / "train", {"green", "red"}, 8);
  test::write_color_dataset(d / "val", {"green", "red"}, 3);
  json cfg = {{"seed", seed},
              {"device", "cpu"},
              {"threads", {{"intra_op", 1}, {"loader", 1}}},
              {"data", {{"train", d / "train"}, {"val", d / "val"}, {"batch_size", 8}}},
              {"model", {{"backbone", test::tiny_backbone()}}},
              {"output_dir", d / "run"},
              {"stages", json::array({{{"epochs", 2}, {"trainable", "head"}}, {{"epochs", 1}, {"trainable", "all"}}})}};
  train::FitOptions fo;
  fo.tensorboard = true;
  return train::fit(config::parse_run_config(cfg, "tb.json"), fo);
}

}  // namespace

TEST(EventFile, FitWithTensorboardWritesEveryEpochsScalars) {
  test::TempDir d("tbfit");
  auto r = fit_with_tensorboard(d, 1);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(d / "run/tb")) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  auto ev = read_events(files[0].string());
  ASSERT_GE(ev.size(), 1u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  // Per epoch: loss, accuracy, their val twins, head lr, images/s; the backbone lr in stage 2.
  EXPECT_EQ(ev.size(), 1u + 3 * 6 + 1);
  int val_acc = 0;
  for (const auto& e : ev)
    if (e.tag == "accuracy/val") {
      ++val_acc;
      EXPECT_FLOAT_EQ(e.value, r.history[static_cast<size_t>(e.step - 1)]["val_accuracy"].get<float>()) << "epoch " << e.step;
    }
  EXPECT_EQ(val_acc, 3);
}

TEST(EventFile, TensorBoardsOwnReaderReadsFitsScalars) {
  const std::string py = test::tools_python("tensorboard");
  if (py.empty()) GTEST_SKIP() << "no TensorBoard: scripts/test_tools.sh installs it from PyPI into its venv (scripts/test.sh runs it)";
  test::TempDir d("tbread");
  auto r = fit_with_tensorboard(d, 2);
  auto tb = test::run_command(py + " " + TLTRAIN_SOURCE_DIR + "/tests/tools/tensorboard_scalars.py " + (d / "run/tb"));
  ASSERT_EQ(tb.exit_code, 0) << tb.output;
  const auto j = json::parse(tb.output.substr(tb.output.rfind("{\"tags\"")));
  EXPECT_EQ(j.at("files"), 1);
  const auto& tags = j.at("tags");
  for (const char* tag : {"loss/train", "loss/val", "accuracy/train", "accuracy/val"}) {
    ASSERT_TRUE(tags.contains(tag)) << tag << " missing from what TensorBoard read: " << tags.dump();
    ASSERT_EQ(tags[tag].size(), 3u) << tag;
  }
  const std::map<std::string, std::string> history_key{{"loss/train", "loss"}, {"loss/val", "val_loss"},
                                                       {"accuracy/train", "accuracy"}, {"accuracy/val", "val_accuracy"}};
  for (const auto& [tag, key] : history_key)
    for (const auto& point : tags[tag]) {
      const auto step = point[0].get<int64_t>();
      ASSERT_GE(step, 1);
      ASSERT_LE(step, 3);
      EXPECT_FLOAT_EQ(point[1].get<float>(), r.history[static_cast<size_t>(step - 1)][key].get<float>()) << tag << " epoch " << step;
    }
}
