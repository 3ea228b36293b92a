#pragma once
// File helpers shared by every stage: nothing the user has may be half-written.
#include <functional>
#include <string>

namespace tltrain {

/// Writes PATH atomically: WRITE fills a temporary file beside PATH, which is fsync'ed and
/// renamed over PATH, so a crash leaves either the old file or the new one, never a torn one.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);

/// write_atomically for a string's bytes.
void write_file_atomically(const std::string& path, const std::string& content);

/// Removes PATH when it goes out of scope: an intermediate file, however its scope is left.
struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit();
};

/// Whole file as bytes; a Data error naming PATH when it cannot be read.
std::string read_file(const std::string& path, const std::string& what);

}  // namespace tltrain
