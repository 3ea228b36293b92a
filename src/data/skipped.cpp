#include "tltrain/data/skipped.h"

#include <map>

namespace tltrain::data {

std::string reason_kind(const std::string& reason) { return reason.substr(0, reason.find(": ")); }

void SkippedLog::add(const std::string& split, const std::string& path, const std::string& reason) {
  if (seen_.insert({split, path}).second) files_.push_back({split, path, reason});
}

void SkippedLog::add_scan(const std::string& split, const SkipReport& report) {
  for (const auto& [reason, paths] : report.by_reason)
    for (const auto& p : paths) add(split, p, reason);
}

void SkippedLog::add_bad(const std::string& split, const std::vector<BadImage>& bad) {
  for (const auto& b : bad) add(split, b.path, b.reason);
}

config::json SkippedLog::to_json() const {
  config::json by_split = config::json::object(), by_reason = config::json::object(), files = config::json::array();
  for (const auto& f : files_) {
    by_split[f.split] = by_split.value(f.split, 0) + 1;
    const std::string kind = reason_kind(f.reason);
    by_reason[kind] = by_reason.value(kind, 0) + 1;
    files.push_back({{"split", f.split}, {"path", f.path}, {"reason", f.reason}});
  }
  return {{"count", files_.size()}, {"by_split", by_split}, {"by_reason", by_reason}, {"files", files}};
}

std::string SkippedLog::warning(size_t from, const std::string& where, size_t names) const {
  if (from >= files_.size()) return "";
  std::map<std::string, size_t> kinds;
  std::string first;
  for (size_t i = from; i < files_.size(); ++i) {
    kinds[reason_kind(files_[i].reason)]++;
    if (i - from < names) first += (first.empty() ? "" : ", ") + files_[i].path + " (" + files_[i].split + ")";
  }
  const size_t n = files_.size() - from;
  std::string text = std::to_string(n) + (n == 1 ? " file" : " files") + " left out (";
  size_t k = 0;
  for (const auto& [kind, count] : kinds) text += (k++ ? "; " : "") + kind + ": " + std::to_string(count);
  text += "): " + first + (n > names ? ", ..." : "");
  if (!where.empty()) text += " — the full list with reasons is in " + where;
  return text;
}

}  // namespace tltrain::data
