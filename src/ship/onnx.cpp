#include "tltrain/ship/onnx.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "tltrain/config/json_reader.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

#ifndef TLTRAIN_SCRIPTS_DIR
#define TLTRAIN_SCRIPTS_DIR "scripts"
#endif

namespace tltrain::ship {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs CMD through the shell; its exit status and what it printed (stdout and stderr).
std::pair<int, std::string> run(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  TLTRAIN_CHECK(p != nullptr, ErrorKind::Runtime, "cannot start: " + cmd);
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

}  // namespace

std::string onnx_python() { return env_or("TLTRAIN_PYTHON", "/usr/bin/python3"); }
std::string onnx_script() { return env_or("TLTRAIN_SCRIPTS_DIR", TLTRAIN_SCRIPTS_DIR) + "/export_onnx.py"; }

OnnxExport convert_to_onnx(const std::string& model_pt, const std::string& out, int opset) {
  const std::string py = onnx_python(), script = onnx_script();
  TLTRAIN_CHECK(std::filesystem::exists(py), ErrorKind::Usage,
                "ONNX export needs Python with torch and onnx: " + py +
                    " is missing (install python3-torch python3-onnx, or set TLTRAIN_PYTHON to an interpreter that has them)");
  TLTRAIN_CHECK(std::filesystem::exists(script), ErrorKind::Usage,
                "ONNX export needs " + script + " (set TLTRAIN_SCRIPTS_DIR to the tltrain checkout's scripts/ folder)");
  auto [rc, text] = run(shell_quote(py) + " " + shell_quote(script) + " --model " + shell_quote(model_pt) + " --out " +
                        shell_quote(out) + " --opset " + std::to_string(opset));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const auto nl = text.rfind('\n');
  const std::string last = nl == std::string::npos ? text : text.substr(nl + 1);
  if (rc == 3) TLTRAIN_FAIL(ErrorKind::Usage, "ONNX export: " + text);
  TLTRAIN_CHECK(rc == 0, ErrorKind::Data, "ONNX export of '" + model_pt + "' failed (" + script + " exit " + std::to_string(rc) + "): " + text);
  OnnxExport r;
  try {
    auto j = config::json::parse(last);
    r.out = j.at("out").get<std::string>();
    r.opset = j.at("opset").get<int>();
    r.bytes = j.at("bytes").get<int64_t>();
    r.ops = j.at("ops").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Runtime, script + " printed no summary (" + e.what() + "): " + text);
  }
  return r;
}

}  // namespace tltrain::ship
