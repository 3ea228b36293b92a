// A folder of real-world trouble (tests/tools/make_bad_inputs.py) through the real binary:
// data check, fit, eval, predict and serve each exit 0, name every file they leave out with
// its reason, print no decoder noise, and stay small in memory (the 40000x40000 PNG is refused
// from its header).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "test_util.h"
#include "tltrain/config/json_reader.h"

using namespace tltrain;
using json = config::json;
namespace fs = std::filesystem;

namespace {

struct LeftOut {
  std::string split, path, kind;
};

struct BadFolder {
  test::TempDir dir{"bad"};
  std::vector<LeftOut> left_out;  ///< what the generator says must be named
  std::string config = dir / "run.json";
  std::string locked = dir / "train/blue/locked";

  BadFolder() {
    auto r = test::run_command("/usr/bin/python3 " TLTRAIN_SOURCE_DIR "/tests/tools/make_bad_inputs.py " + dir.path() + " 2>/dev/null");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      auto a = line.find('\t'), b = line.find('\t', a + 1);
      left_out.push_back({line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1)});
    }
    fs::permissions(locked, fs::perms::none);
    test::write_text(config, R"({"data": {"train": ")" + dir / "train" + R"(", "val": ")" + dir / "val" + R"(", "image_size": 32},
      "model": {"backbone": ")" + test::tiny_backbone() + R"("}, "output_dir": ")" + dir / "runs" + R"(",
      "stages": [{"name": "head", "epochs": 1}, {"name": "all", "epochs": 1, "trainable": "all", "optimizer": {"name": "sgd"}}]})");
  }
  ~BadFolder() { fs::permissions(locked, fs::perms::owner_all); }  // so that TempDir can remove it

  std::vector<LeftOut> in_split(const std::string& split) const {
    std::vector<LeftOut> out;
    for (const auto& l : left_out)
      if (l.split == split) out.push_back(l);
    return out;
  }
};

/// Nothing but our own lines: libpng's and OpenCV's stderr chatter is a defect.
void expect_no_decoder_noise(const std::string& output) {
  for (const char* noise : {"libpng", "iCCP", "[ WARN", "Corrupt JPEG", "Premature end"})
    EXPECT_EQ(output.find(noise), std::string::npos) << "'" << noise << "' leaked:\n" << output;
}

/// SKIPPED (a skipped.json object) names each of WANT with a reason of its kind.
void expect_names(const json& skipped, const std::vector<LeftOut>& want, const std::string& where) {
  std::map<std::string, std::string> reasons;
  for (const auto& f : skipped.at("files")) reasons[f.at("path").get<std::string>()] = f.at("reason").get<std::string>();
  for (const auto& w : want) {
    ASSERT_TRUE(reasons.count(w.path)) << where << " does not name " << w.path << "\n" << skipped.dump(1);
    EXPECT_NE(reasons[w.path].find(w.kind), std::string::npos) << w.path << ": " << reasons[w.path];
  }
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

}  // namespace

TEST(BadInput, EveryCommandNamesWhatItLeavesOutAndExitsZero) {
  BadFolder b;
  ASSERT_GE(b.left_out.size(), 12u);

  // data check, as an ordinary user where we are root: only then is the locked folder unreadable.
  const bool root = ::geteuid() == 0;
  if (root) {
    const auto probe = test::run_command(std::string("setpriv --reuid=65534 --regid=65534 --clear-groups ") + TLTRAIN_BIN + " --version");
    if (probe.exit_code != 0)
      GTEST_SKIP() << "as uid 65534 the binary cannot start (" << probe.output.substr(0, probe.output.find('\n'))
                   << "): its libraries are not readable by an ordinary user, e.g. a LibTorch in root's home "
                      "(scripts/build_libtorch2.sh: set TORCH2_VENV to a world-readable folder)";
  }
  auto check = test::run_command(std::string(root ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "") + TLTRAIN_BIN +
                                 " data check --config " + b.config);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  for (const auto& l : b.left_out) {
    const auto at = check.output.find(l.path);
    ASSERT_NE(at, std::string::npos) << "data check does not name " << l.path << "\n" << check.output;
    // The reason heads the group the path is listed under: the nearest line above indented by 4.
    std::string header;
    for (size_t end = check.output.rfind('\n', at); end != std::string::npos && end > 0; end = check.output.rfind('\n', end - 1)) {
      const size_t begin = check.output.rfind('\n', end - 1) + 1;
      const std::string line = check.output.substr(begin, end - begin);
      if (line.rfind("    ", 0) == 0 && line.size() > 4 && line[4] != ' ') {
        header = line;
        break;
      }
    }
    EXPECT_NE(header.find(l.kind), std::string::npos) << l.path << " is under '" << header << "', not '" << l.kind << "'";
  }
  EXPECT_NE(check.output.find("cannot read folder: Permission denied: 1\n      " + b.locked), std::string::npos) << check.output;
  // 12 squares and the 12 unusual but valid files (CMYK, 16-bit, x.jpg/inside.png, ...) count.
  EXPECT_NE(check.output.find("train: 24 images"), std::string::npos) << check.output;
  expect_no_decoder_noise(check.output);

  // fit: warned, listed in skipped.json, counted in the report.
  auto fit = test::run_tltrain("fit --config " + b.config);
  ASSERT_EQ(fit.exit_code, 0) << fit.output;
  EXPECT_NE(fit.output.find("files left out"), std::string::npos) << fit.output;
  expect_no_decoder_noise(fit.output);
  const std::string run = b.dir / "runs";
  json skipped = read_json(run + "/skipped.json");
  expect_names(skipped, b.in_split("train"), "skipped.json");
  expect_names(skipped, b.in_split("val"), "skipped.json");
  // As root fit reads the locked folder too; as anyone else it names it.
  EXPECT_EQ(skipped.at("count").get<size_t>(), b.left_out.size() + (root ? 0 : 1)) << skipped.dump(1);
  std::ifstream report(run + "/report.html");
  std::string html((std::istreambuf_iterator<char>(report)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("id=\"skipped-table\""), std::string::npos);
  EXPECT_NE(html.find("<td>training</td><td>train</td><td>" + std::to_string(b.in_split("train").size()) + "</td>"), std::string::npos);

  // eval on the run's val set and on another folder: samples count only what decoded, the rest is named.
  auto ev = test::run_tltrain("eval --checkpoint " + run + "/checkpoints/best.pt");
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  EXPECT_NE(ev.output.find("samples 6 "), std::string::npos) << ev.output;
  EXPECT_NE(ev.output.find("3 files left out"), std::string::npos) << ev.output;
  expect_names(read_json(run + "/eval.json").at("skipped"), b.in_split("val"), "eval.json");
  auto ev2 = test::run_tltrain("eval --checkpoint " + run + "/checkpoints/best.pt --data " + (b.dir / "train") + " --out " + (b.dir / "e.json"));
  ASSERT_EQ(ev2.exit_code, 0) << ev2.output;
  expect_names(read_json(b.dir / "e.json").at("skipped"), b.in_split("train"), "eval --data's JSON");
  expect_no_decoder_noise(ev.output + ev2.output);

  // predict: an error row with the reason for each file it cannot use.
  ASSERT_EQ(test::run_tltrain("export --checkpoint " + run + "/checkpoints/best.pt --out " + (b.dir / "model.pt")).exit_code, 0);
  auto pr = test::run_tltrain("predict --format json --model " + (b.dir / "model.pt") + " " + (b.dir / "train"));
  ASSERT_EQ(pr.exit_code, 0) << pr.output;
  auto rows = json::parse(pr.output.substr(pr.output.find('['), pr.output.rfind(']') - pr.output.find('[') + 1));
  std::map<std::string, json> by_path;
  for (const auto& row : rows) by_path[row.at("path").get<std::string>()] = row;
  for (const auto& l : b.in_split("train")) {
    ASSERT_TRUE(by_path.count(l.path)) << "predict has no row for " << l.path;
    EXPECT_NE(by_path[l.path].value("error", std::string()).find(l.kind), std::string::npos) << by_path[l.path].dump();
  }
  EXPECT_EQ(by_path.at(b.dir / "train/red/rotated.jpg").value("error", ""), "");
  expect_no_decoder_noise(pr.output);

  // serve: 400 with the reason for each bad upload, 200 for the unusual good ones, still up after.
  const std::string log = b.dir / "serve.log", rc = b.dir / "serve.rc", pid = b.dir / "serve.pid";
  // In the background with every stream redirected (popen waits for its pipe to close); $! is
  // serve itself, so the TERM below reaches it, and wait gives its exit code.
  test::run_command("bash -c '(" + std::string(TLTRAIN_BIN) + " serve --port 0 --model " + (b.dir / "model.pt") + " > " + log +
                    " 2>&1 & echo $! > " + pid + "; wait $!; echo $? > " + rc + ") < /dev/null > /dev/null 2>&1 &'");
  int port = 0;
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto at = text.find("http://127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(text.c_str() + at + 17);
  }
  ASSERT_GT(port, 0) << "serve did not start";
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(30, 0);
  auto bytes = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  for (const char* name : {"empty.jpg", "truncated.jpg", "header_only.png", "text.jpg", "huge.png"}) {
    auto res = cli.Post("/predict", bytes(b.dir / "train/blue/" + name), "application/octet-stream");
    ASSERT_TRUE(res) << name;
    EXPECT_TRUE(res->status == 400 || res->status == 413) << name << ": " << res->status << " " << res->body;
    EXPECT_NE(res->body.find("error"), std::string::npos) << res->body;
  }
  for (const char* name : {"cmyk.jpg", "deep16.png", "palette.png", "rgba.png", "photo.webp", "scan.tiff", "rotated.jpg", "iccp.png"}) {
    auto res = cli.Post("/predict", bytes(b.dir / "train/red/" + name), "application/octet-stream");
    ASSERT_TRUE(res) << name;
    EXPECT_EQ(res->status, 200) << name << ": " << res->body;
  }
  test::run_command("kill -TERM $(cat " + pid + ")");
  std::string code;
  for (int i = 0; i < 300 && code.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::ifstream in(rc);
    std::getline(in, code);
  }
  EXPECT_EQ(code, "0") << bytes(log);
  expect_no_decoder_noise(bytes(log));

  // Peak memory of every command above: the refused 40000x40000 PNG would need GBs decoded.
  struct rusage ru {};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  EXPECT_LT(ru.ru_maxrss, 1024 * 1024) << "largest child used " << ru.ru_maxrss / 1024 << " MiB";  // KiB on Linux
}
