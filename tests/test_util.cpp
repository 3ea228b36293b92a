#include "test_util.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <random>

#include "tltrain/config/run_config.h"
#include "tltrain/core/error.h"
#include "tltrain/model/backbone.h"

namespace fs = std::filesystem;

namespace tltrain::test {

TempDir::TempDir(const std::string& tag) {
  static int counter = 0;
  fs::path base = fs::temp_directory_path() / ("tltrain_test_" + std::to_string(::getpid()));
  path_ = (base / (tag + std::to_string(counter++))).string();
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

const std::string& tiny_backbone() {
  static std::string path;
  static std::once_flag once;
  std::call_once(once, [] {
    fs::path dir = fs::temp_directory_path() / ("tltrain_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    path = (dir / "tiny.pt").string();
    model::write_tiny_backbone(path, 0);
  });
  return path;
}

std::string shared_dir() {
  std::string d = TLTRAIN_SHARED_DIR;
  return fs::exists(d + "/README.md") ? d : std::string();
}

std::string tools_python(const std::string& module) {
  const char* venv = std::getenv("TLTRAIN_TOOLS_VENV");
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string dir = venv && *venv ? venv
                          : cache && *cache ? std::string(cache) + "/tltrain/venv-tools"
                                            : std::string(home ? home : "") + "/.cache/tltrain/venv-tools";
  const std::string py = dir + "/bin/python";
  if (!fs::exists(py)) return "";
  return run_command(py + " -c 'import " + module + "'").exit_code == 0 ? py : "";
}

void write_solid_image(const std::string& path, int width, int height, int b, int g, int r) {
  fs::create_directories(fs::path(path).parent_path());
  cv::Mat img(height, width, CV_8UC3, cv::Scalar(b, g, r));
  cv::imwrite(path, img);
}

void write_color_dataset(const std::string& root, const std::vector<std::string>& classes, int n_per_class, int size) {
  static const int colors[][3] = {{220, 40, 40}, {40, 200, 40}, {40, 40, 220}, {200, 200, 40}, {200, 40, 200}, {40, 200, 200}};
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> noise(-20, 20);
  for (size_t c = 0; c < classes.size(); ++c) {
    fs::create_directories(root + "/" + classes[c]);
    for (int i = 0; i < n_per_class; ++i) {
      cv::Mat img(size, size, CV_8UC3);
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x)
          for (int ch = 0; ch < 3; ++ch)
            img.at<cv::Vec3b>(y, x)[ch] = cv::saturate_cast<uchar>(colors[c % 6][ch] + noise(rng));
      cv::imwrite(root + "/" + classes[c] + "/" + std::to_string(i) + ".png", img);
    }
  }
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

CommandResult run_tltrain(const std::string& args) { return run_command(std::string(TLTRAIN_BIN) + " " + args); }

std::string config_error(const config::json& cfg) {
  try {
    config::parse_run_config(cfg, "test.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::function<void()>& f, ErrorKind kind, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << fragment;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what() << "\nexpected to contain: " << fragment;
  }
}

}  // namespace tltrain::test
