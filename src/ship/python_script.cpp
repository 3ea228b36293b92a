#include "tltrain/ship/python_script.h"

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "tltrain/core/error.h"

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

/// Runs CMD through the shell; its exit status and what it printed (stdout and stderr). Its stdin
/// is /dev/null, so a script that asks for input fails instead of waiting for a terminal.
std::pair<int, std::string> run(const std::string& cmd) {
  FILE* p = ::popen((cmd + " < /dev/null 2>&1").c_str(), "r");
  TLTRAIN_CHECK(p != nullptr, ErrorKind::Runtime, "cannot start: " + cmd);
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

}  // namespace

std::string script_python() { return env_or("TLTRAIN_PYTHON", "/usr/bin/python3"); }
std::string script_path(const std::string& name) { return env_or("TLTRAIN_SCRIPTS_DIR", TLTRAIN_SCRIPTS_DIR) + "/" + name; }

ScriptResult run_script(const std::string& name, const std::vector<std::string>& args, const std::string& what,
                        const std::string& packages) {
  const std::string py = script_python(), script = script_path(name);
  TLTRAIN_CHECK(std::filesystem::exists(py), ErrorKind::Usage,
                what + " needs Python with torch: " + py +
                    " is missing (install " + packages + ", or set TLTRAIN_PYTHON to an interpreter that has them)");
  TLTRAIN_CHECK(std::filesystem::exists(script), ErrorKind::Usage,
                what + " needs " + script + " (set TLTRAIN_SCRIPTS_DIR to the tltrain checkout's scripts/ folder)");
  // A stuck interpreter must not hold the command for ever: coreutils' timeout stops it (exit
  // 124; 137 when it needed SIGKILL 10 s later). --foreground leaves Python in our process group,
  // so Ctrl-C still reaches it.
  const std::string limit = env_or("TLTRAIN_SCRIPT_TIMEOUT_S", "3600");
  const bool digits = limit.size() <= 9 && limit.find_first_not_of("0123456789") == std::string::npos;
  const long limit_s = digits ? std::stol(limit) : 0;
  TLTRAIN_CHECK(limit_s > 0, ErrorKind::Usage,
                "TLTRAIN_SCRIPT_TIMEOUT_S='" + limit + "' is not a whole number of seconds above 0: set one, or unset it for 3600");
  std::string cmd = "timeout --foreground -k 10 " + limit + " " + shell_quote(py) + " " + shell_quote(script);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  const auto t0 = std::chrono::steady_clock::now();
  auto [rc, text] = run(cmd);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  TLTRAIN_CHECK(!(rc == 124 || (rc == 137 && seconds >= static_cast<double>(limit_s))), ErrorKind::Runtime,
                what + ": " + script + " did not finish within " + limit +
                    " s and was stopped (set TLTRAIN_SCRIPT_TIMEOUT_S to allow longer): " + text);
  TLTRAIN_CHECK(rc != 127, ErrorKind::Usage,
                what + ": the shell could not run '" + cmd + "' (" + text + "): install coreutils for timeout, or set TLTRAIN_PYTHON to an interpreter that exists");
  if (rc == 3 || rc == 4) TLTRAIN_FAIL(ErrorKind::Usage, what + ": " + text);
  TLTRAIN_CHECK(rc != 2, ErrorKind::Data, what + " failed: " + text);
  TLTRAIN_CHECK(rc == 0, ErrorKind::Runtime, what + " failed (" + script + " exit " + std::to_string(rc) + "): " + text);
  const auto nl = text.rfind('\n');
  ScriptResult r{text, {}};
  try {
    r.summary = config::json::parse(nl == std::string::npos ? text : text.substr(nl + 1));
  } catch (const config::json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Runtime, script + " printed no summary (" + e.what() + "): " + text);
  }
  return r;
}

}  // namespace tltrain::ship
