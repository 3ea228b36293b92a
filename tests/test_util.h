#pragma once
// Helpers shared by the tests: temp folders, the tiny backbone, synthetic images, and running
// the real tltrain binary.
#include <functional>
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/core/error.h"

namespace tltrain::test {

/// A fresh empty directory under the build's temp area, removed at destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "t");
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// Path of a tiny backbone built once per test process (seed 0).
const std::string& tiny_backbone();

/// ../shared beside the checkout, or "" when absent (tests then GTEST_SKIP with a message).
std::string shared_dir();

/// The interpreter of scripts/test_tools.sh's venv (ONNX Runtime, TensorBoard) with MODULE
/// importable: TLTRAIN_TOOLS_VENV/bin/python (default ~/.cache/tltrain/venv-tools), or "" when
/// absent (tests then GTEST_SKIP naming the script).
std::string tools_python(const std::string& module);

/// Writes a W×H image of one BGR colour to PATH (format from the extension).
void write_solid_image(const std::string& path, int width, int height, int b, int g, int r);

/// Writes a class-folder dataset: ROOT/<class>/<i>.png with N_PER_CLASS 16×16 images per class,
/// class k a distinct solid colour with a little per-image noise.
void write_color_dataset(const std::string& root, const std::vector<std::string>& classes, int n_per_class, int size = 16);

/// Writes TEXT to PATH.
void write_text(const std::string& path, const std::string& text);

struct CommandResult {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr together
};
/// Runs a shell command line, capturing its output.
CommandResult run_command(const std::string& cmd);
/// The message parse_run_config throws for CFG (its problems listed), or "" when CFG is valid.
std::string config_error(const config::json& cfg);

/// Expects F to throw a tltrain::Error of KIND whose message contains FRAGMENT (gtest failures otherwise).
void expect_error(const std::function<void()>& f, ErrorKind kind, const std::string& fragment);

/// Runs the real tltrain binary with ARGS.
CommandResult run_tltrain(const std::string& args);

}  // namespace tltrain::test
