#pragma once
// Every file a command left out, and why: the scans' skips (not an image, a symlink loop, an
// unreadable folder) and the images that failed to decode. fit, finetune and eval report them as
// `data check` does: a warning with the count and the first names, the full list in a JSON file.
#include <set>
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/data/dataset.h"

namespace tltrain::data {

struct SkippedFile {
  std::string split;   ///< "train", "val", "eval"
  std::string path;
  std::string reason;  ///< e.g. "not an image type (.gif)", "truncated: ..."
};

class SkippedLog {
 public:
  /// Adds a scan's skips (each path once per split).
  void add_scan(const std::string& split, const SkipReport& report);
  /// Adds decode failures (each path once per split).
  void add_bad(const std::string& split, const std::vector<BadImage>& bad);

  size_t count() const { return files_.size(); }
  const std::vector<SkippedFile>& files() const { return files_; }

  /// {"count": N, "by_split": {split: n}, "by_reason": {kind: n}, "files": [{split, path, reason}]};
  /// a reason's kind is its text before ": " ("truncated", "not an image type (.gif)").
  config::json to_json() const;
  /// One warning line for the files from index FROM on: "SPLIT: N files left out (kind n, ...):
  /// first names ... — full list with reasons in WHERE". Empty when there are none.
  std::string warning(size_t from, const std::string& where, size_t names = 5) const;

 private:
  void add(const std::string& split, const std::string& path, const std::string& reason);
  std::vector<SkippedFile> files_;
  std::set<std::pair<std::string, std::string>> seen_;  ///< (split, path)
};

/// The kind of a skip reason: its text before ": ".
std::string reason_kind(const std::string& reason);

}  // namespace tltrain::data
