#include "tltrain/core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iomanip>
#include <sstream>

namespace tltrain::log {

namespace {
int g_rank = 0;
std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    // Logs go to stderr so stdout stays clean for tables and JSON.
    auto lg = spdlog::stderr_color_mt("tltrain");
    lg->set_pattern("%^%l%$: %v");
    lg->set_level(spdlog::level::info);
    return lg;
  }();
  return l;
}
}  // namespace

void init(Level level) {
  logger()->set_level(level == Level::Quiet ? spdlog::level::warn
                      : level == Level::Verbose ? spdlog::level::debug
                                                : spdlog::level::info);
}

void set_rank(int rank) { g_rank = rank; }
bool is_output_rank() { return g_rank == 0; }

void debug(const std::string& msg) {
  if (is_output_rank()) logger()->debug(msg);
}
void info(const std::string& msg) {
  if (is_output_rank()) logger()->info(msg);
}
void warn(const std::string& msg) {
  if (is_output_rank()) logger()->warn(msg);
}
void error(const std::string& msg) { logger()->error(g_rank == 0 ? msg : "rank " + std::to_string(g_rank) + ": " + msg); }

std::string fixed(double v, int decimals) {
  std::ostringstream ss;
  ss << std::fixed << std::setprecision(decimals) << v;
  return ss.str();
}

std::string general(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

}  // namespace tltrain::log
