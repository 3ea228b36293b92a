#include "tltrain/core/error.h"

#include <cstdio>
#include <cstdlib>

namespace tltrain {

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Usage: return exit_code::usage;
    case ErrorKind::Data: return exit_code::data;
    case ErrorKind::Runtime: return exit_code::runtime;
    case ErrorKind::Interrupted: return exit_code::interrupted;
  }
  return exit_code::internal;
}

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Usage: return "usage error";
    case ErrorKind::Data: return "data error";
    case ErrorKind::Runtime: return "runtime error";
    case ErrorKind::Interrupted: return "interrupted";
  }
  return "error";
}

Error::Error(ErrorKind kind, const std::string& message, const char* file, int line)
    : std::runtime_error(message), kind_(kind) {
  if (file) where_ = std::string(file) + ":" + std::to_string(line);
}

void fail(ErrorKind kind, const std::string& message, const char* file, int line) {
  throw Error(kind, message, file, line);
}

void assert_failed(const char* cond, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "tltrain internal error: %s (%s) at %s:%d\n", msg.c_str(), cond, file, line);
  std::abort();
}

}  // namespace tltrain
