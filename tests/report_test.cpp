// The run report: a tiny two-stage run → report.html with curves, stage boundaries, learning
// rate, confusion matrix, mistake thumbnails and config, nothing fetched; and, when Debian's
// chromium is installed, the page rendered by a real headless browser.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <regex>
#include <sstream>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/eval/evaluate.h"
#include "tltrain/eval/report.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

const char* kChromium = "/usr/bin/chromium";

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

/// The one SVG element with id ID, start tag to its </svg>.
std::string svg_by_id(const std::string& html, const std::string& id) {
  size_t a = html.find("id=\"" + id + "\"");
  if (a == std::string::npos) return "";
  a = html.rfind("<svg", a);
  size_t b = html.find("</svg>", a);
  return html.substr(a, b - a);
}

/// Point counts of the class="series" polylines in SVG.
std::vector<size_t> series_points(const std::string& svg) {
  std::vector<size_t> out;
  std::regex re("<polyline class=\"series\"[^>]*points=\"([^\"]*)\"");
  for (std::sregex_iterator it(svg.begin(), svg.end(), re), end; it != end; ++it) {
    std::istringstream pts((*it)[1].str());
    std::string xy;
    size_t n = 0;
    while (pts >> xy) n += xy.find(',') != std::string::npos;
    out.push_back(n);
  }
  return out;
}

std::string attr(const std::string& html, const std::string& tag_id, const std::string& name) {
  std::smatch m;
  std::regex re((tag_id[0] == '<' ? tag_id : "<[^>]*" + tag_id) + "[^>]*" + name + "=\"([^\"]*)\"");
  return std::regex_search(html, m, re) ? m[1].str() : "";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// One two-stage run on red/green squares, shared by the tests below (training is the slow part).
/// A green square filed under red/ in val guarantees a confident mistake to show.
class ReportRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("report");
    const test::TempDir& d = *dir_;
    test::write_color_dataset(d / "train", {"green", "red"}, 16);
    test::write_color_dataset(d / "val", {"green", "red"}, 6);
    fs::copy_file(d / "val/green/0.png", d / "val/red/mislabelled.png");
    json cfg = {{"name", "squares <&> run"},
                {"seed", 3},
                {"device", "cpu"},
                {"threads", {{"intra_op", 1}, {"loader", 2}}},
                {"data", {{"train", d / "train"}, {"val", d / "val"}, {"batch_size", 8}}},
                {"model", {{"backbone", test::tiny_backbone()}}},
                {"output_dir", d / "run"},
                {"stages", json::array({{{"name", "head"}, {"epochs", 3}, {"trainable", "head"}, {"optimizer", {{"name", "adam"}, {"lr", 0.02}}}},
                                        {{"name", "tune"}, {"epochs", 2}, {"trainable", {{"fraction", 0.5}}},
                                         {"optimizer", {{"name", "sgd"}, {"lr", 0.01}}}}})}};
    auto r = train::fit(config::parse_run_config(cfg, "report_test.json"));
    eval::EvalOptions eo;
    eo.checkpoint = r.best_checkpoint;
    eo.device = config::Device::Cpu;
    eo.threads = 2;
    write_file_atomically(r.run_dir + "/eval.json", eval::to_json(eval::evaluate_checkpoint(eo)).dump(2));
    run_dir_ = r.run_dir;
    html_path_ = eval::write_report(run_dir_);
  }
  static void TearDownTestSuite() { delete dir_; }
  static test::TempDir* dir_;
  static std::string run_dir_, html_path_;
};
test::TempDir* ReportRun::dir_ = nullptr;
std::string ReportRun::run_dir_, ReportRun::html_path_;

}  // namespace

TEST_F(ReportRun, PageHasCurvesStagesLearningRateConfusionMistakesAndConfig) {
  ASSERT_EQ(html_path_, run_dir_ + "/report.html");
  const std::string html = slurp(html_path_);
  for (const char* section : {"id=\"curves\"", "id=\"evaluation\"", "id=\"mistakes\"", "id=\"config\""})
    EXPECT_NE(html.find(section), std::string::npos) << section;

  // Train and validation curves, one point per epoch (3 + 2).
  for (const char* id : {"plot-loss", "plot-accuracy"}) {
    std::string svg = svg_by_id(html, id);
    ASSERT_FALSE(svg.empty()) << id;
    EXPECT_EQ(series_points(svg), (std::vector<size_t>{5, 5})) << id;
    EXPECT_EQ(count(svg, "class=\"stage-boundary\""), 1u) << id << ": two stages, one boundary";
    EXPECT_NE(svg.find("stage 2: tune"), std::string::npos) << id;
  }
  std::string lr = svg_by_id(html, "plot-lr");
  auto lr_series = series_points(lr);
  ASSERT_EQ(lr_series.size(), 2u) << "head lr, and the backbone's once stage 2 trains it";
  EXPECT_EQ(lr_series[0], 10u) << "drawn as steps: each epoch from its first step to its last";
  EXPECT_EQ(lr_series[1], 4u);
  EXPECT_EQ(count(lr, "class=\"stage-boundary\""), 1u);

  // 2×2 confusion matrix whose counts add up to the 13 validation images.
  std::string cm = svg_by_id(html, "plot-confusion");
  EXPECT_EQ(count(cm, "<rect class=\"cell"), 4u);
  std::regex cnt("data-count=\"(\\d+)\"");
  int total = 0;
  for (std::sregex_iterator it(cm.begin(), cm.end(), cnt), end; it != end; ++it) total += std::stoi((*it)[1].str());
  EXPECT_EQ(total, 13);

  // The mislabelled square shows up as an inline thumbnail.
  EXPECT_GE(count(html, "<img class=\"thumb\""), 1u);
  EXPECT_NE(html.find("data:image/jpeg;base64,/9j/"), std::string::npos) << "JPEG thumbnails start with FF D8 FF";
  EXPECT_NE(html.find("mislabelled.png"), std::string::npos);

  // Config, HTML-escaped; nothing fetched from anywhere.
  EXPECT_NE(html.find("squares &lt;&amp;&gt; run"), std::string::npos);
  EXPECT_EQ(html.find("squares <&> run"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src=\"/"), std::string::npos);
}

TEST_F(ReportRun, WithoutEvalJsonThePageSaysHowToAddIt) {
  test::TempDir d("report_noeval");
  for (const char* f : {"config.json", "log.jsonl"}) fs::copy_file(run_dir_ + "/" + f, d / f);
  std::string html = slurp(eval::write_report(d.path()));
  EXPECT_NE(html.find("id=\"plot-loss\""), std::string::npos);
  EXPECT_EQ(html.find("id=\"plot-confusion\""), std::string::npos);
  EXPECT_NE(html.find("tltrain eval --checkpoint"), std::string::npos);
}

TEST(Report, NotARunDirectoryIsADataErrorNamingIt) {
  test::TempDir d("report_empty");
  try {
    eval::write_report(d.path());
    FAIL() << "wrote a report for an empty directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST_F(ReportRun, CliRegeneratesTheReport) {
  fs::remove(html_path_);
  auto r = test::run_tltrain("report " + run_dir_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(html_path_));
  EXPECT_EQ(test::run_tltrain("report " + (dir_->path() + "/train")).exit_code, exit_code::data);
}

// Opens the page in Debian's chromium: the page's own script counts what the browser actually
// laid out (polyline and cell bounding boxes, decoded thumbnails) and writes it into the DOM.
TEST_F(ReportRun, HeadlessChromiumDrawsEveryPlot) {
  if (!fs::exists(kChromium)) GTEST_SKIP() << "chromium is not installed (apt-get install chromium; scripts/setup.sh does)";
  test::TempDir profile("chromium");
  const std::string flags = std::string(kChromium) +
                            " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
                            " --disable-component-update --disable-sync --user-data-dir=" +
                            profile.path() + " ";
  auto dom = test::run_command("{ " + flags + "--dump-dom file://" + html_path_ + " 2>/dev/null; }");
  ASSERT_EQ(dom.exit_code, 0) << dom.output;
  EXPECT_EQ(attr(dom.output, "<body", "data-rendered"), "ok") << dom.output.substr(0, 2000);
  EXPECT_EQ(attr(dom.output, "id=\"plot-loss\"", "data-drawn-series"), "2");
  EXPECT_EQ(attr(dom.output, "id=\"plot-accuracy\"", "data-drawn-series"), "2");
  EXPECT_EQ(attr(dom.output, "id=\"plot-lr\"", "data-drawn-series"), "2");
  EXPECT_EQ(attr(dom.output, "id=\"plot-confusion\"", "data-drawn-cells"), "4");
  EXPECT_GE(std::atoi(attr(dom.output, "<body", "data-drawn-thumbs").c_str()), 1);

  // And the pixels: the screenshot is not blank and holds the series' blue and orange.
  std::string png = profile / "shot.png";
  auto shot = test::run_command(flags + "--hide-scrollbars --window-size=1280,1600 --screenshot=" + png + " file://" + html_path_);
  ASSERT_EQ(shot.exit_code, 0) << shot.output;
  cv::Mat img = cv::imread(png, cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty()) << shot.output;
  int blue = 0, orange = 0, nonwhite = 0;
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) {
      cv::Vec3b p = img.at<cv::Vec3b>(y, x);  // BGR
      nonwhite += p[0] < 240 || p[1] < 240 || p[2] < 240;
      blue += p[0] > 150 && p[2] < 80 && p[1] > 90 && p[1] < 150;   // #1f77b4
      orange += p[2] > 220 && p[1] > 100 && p[1] < 160 && p[0] < 60;  // #ff7f0e
    }
  EXPECT_GT(nonwhite, img.rows * img.cols / 50) << "the screenshot is (nearly) blank";
  EXPECT_GT(blue, 200) << "no train curve pixels";
  EXPECT_GT(orange, 200) << "no validation curve pixels";
}
