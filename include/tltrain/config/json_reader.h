#pragma once
// Validating JSON reader: every config-like file (run configs, backbone metadata) is read
// through it, so every problem is reported with its JSON path, all at once, before any work.
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "tltrain/config/names.h"

namespace tltrain::config {

using json = nlohmann::ordered_json;  // ordered: the resolved config prints in the schema's order

struct Problem {
  std::string path;     ///< JSON path, e.g. "stages[1].optimizer.lr"
  std::string message;  ///< what is wrong and what is allowed
};

/// Collects errors and warnings while a file is read.
class Problems {
 public:
  void error(const std::string& path, const std::string& message);
  void warning(const std::string& path, const std::string& message);
  const std::vector<Problem>& errors() const { return errors_; }
  const std::vector<Problem>& warnings() const { return warnings_; }
  /// Throws a Usage error listing every problem, headed by SOURCE (the file name), if any.
  void throw_if_errors(const std::string& source) const;

 private:
  std::vector<Problem> errors_, warnings_;
};

/// Allowed interval for a number; printed in messages as "> 0", ">= 1", "in [0, 1]".
struct Range {
  std::optional<double> min, max;
  bool min_open = false, max_open = false;
  bool contains(double v) const;
  std::string describe() const;
};
Range gt(double v);
Range ge(double v);
Range closed(double lo, double hi);
Range left_open(double lo, double hi);  ///< (lo, hi]

/// Reads one JSON object. Each key asked for is remembered: on finish() (or destruction) any
/// other key is an "unknown key" error with a did-you-mean suggestion. Defaults for absent keys
/// are written into RESOLVED, so the resolved config is a by-product of validation.
class ObjectReader {
 public:
  ObjectReader(const json& in, json& resolved, std::string path, Problems& problems);
  ObjectReader(ObjectReader&& other) noexcept;
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;
  ~ObjectReader();

  bool has(const std::string& key) const;  ///< present and not null
  std::string path_of(const std::string& key) const;
  Problems& problems() { return *problems_; }

  double number(const std::string& key, double def, const Range& range = {});
  std::optional<double> optional_number(const std::string& key, const Range& range = {});
  int64_t integer(const std::string& key, int64_t def, const Range& range = {});
  bool boolean(const std::string& key, bool def);
  std::string string(const std::string& key, const std::string& def);
  /// A string that must be one of CHOICES (the message lists them).
  std::string choice(const std::string& key, const std::string& def, const std::vector<std::string>& choices);
  /// A name from E's table (config/names.h), DEF when absent or invalid (the problem is recorded).
  template <typename E>
  E pick(const std::string& key, E def) {
    E out = def;
    parse_name(choice(key, name_of(def), name_list<E>()), out);
    return out;
  }
  /// A list of numbers; SIZES lists the allowed lengths (empty = any).
  std::vector<double> numbers(const std::string& key, const std::vector<double>& def, const Range& range = {},
                              const std::vector<size_t>& sizes = {});
  std::vector<int64_t> integers(const std::string& key, const std::vector<int64_t>& def, const Range& range = {},
                                const std::vector<size_t>& sizes = {});
  std::vector<std::string> strings(const std::string& key, const std::vector<std::string>& def);
  /// A nested object (an empty one when absent or null).
  ObjectReader object(const std::string& key);
  /// The raw value for keys whose type decides their meaning; marks KEY as known. nullptr if absent.
  const json* raw(const std::string& key);
  /// Sets what the resolved config shows for KEY (after reading a polymorphic value).
  void resolve(const std::string& key, json value);
  /// Leaves KEY out of the resolved config (a setting the chosen variant does not use).
  void unresolve(const std::string& key);
  void finish();

 private:
  const json* fetch(const std::string& key);
  const json& in_;
  json* resolved_;
  std::string path_;
  Problems* problems_;
  std::vector<std::string> known_;
  bool done_ = false;
};

/// Levenshtein distance, for "did you mean" hints.
size_t edit_distance(const std::string& a, const std::string& b);
/// The closest candidate to WORD, if it is close enough to be a plausible typo.
std::optional<std::string> closest(const std::string& word, const std::vector<std::string>& candidates);
/// "got 32" / "got \"abc\"" for messages.
std::string describe_value(const json& v);

}  // namespace tltrain::config
