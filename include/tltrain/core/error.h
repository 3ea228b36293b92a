#pragma once
// User-facing failures throw tltrain::Error; its kind picks the process exit code.
// Internal invariants use TLTRAIN_ASSERT and abort: they are bugs, not user errors.
#include <stdexcept>
#include <string>

namespace tltrain {

/// What went wrong, from the user's point of view. Each kind has its own exit code.
enum class ErrorKind {
  Usage,    ///< bad command line or config file (exit 2)
  Data,     ///< an input file the user gave is missing or unusable: images, backbone, checkpoint (exit 3)
  Runtime,  ///< a failure while running: NaN loss, out of memory, I/O while writing (exit 4)
  Interrupted,  ///< Ctrl-C / SIGTERM: stopped cleanly, resumable (exit 130)
};

namespace exit_code {
constexpr int ok = 0;
constexpr int internal = 1;  ///< a bug in tltrain (uncaught exception)
constexpr int usage = 2;
constexpr int data = 3;
constexpr int runtime = 4;
constexpr int interrupted = 130;  ///< Ctrl-C, as shells report SIGINT
}  // namespace exit_code

int exit_code_for(ErrorKind kind);
const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, const char* file = nullptr, int line = 0);
  ErrorKind kind() const { return kind_; }
  /// Where it was thrown ("src/model/backbone.cpp:42"), for --verbose output.
  const std::string& where() const { return where_; }

 private:
  ErrorKind kind_;
  std::string where_;
};

[[noreturn]] void fail(ErrorKind kind, const std::string& message, const char* file, int line);
[[noreturn]] void assert_failed(const char* cond, const char* file, int line, const std::string& msg);

}  // namespace tltrain

/// Throws tltrain::Error of KIND with MSG (a std::string expression) unless COND holds.
#define TLTRAIN_CHECK(cond, kind, msg)                                   \
  do {                                                                   \
    if (!(cond)) ::tltrain::fail((kind), (msg), __FILE__, __LINE__);     \
  } while (0)

#define TLTRAIN_FAIL(kind, msg) ::tltrain::fail((kind), (msg), __FILE__, __LINE__)

/// Internal invariant: aborts with the location. Never used for user input.
#define TLTRAIN_ASSERT(cond, msg)                                               \
  do {                                                                          \
    if (!(cond)) ::tltrain::assert_failed(#cond, __FILE__, __LINE__, (msg));    \
  } while (0)
