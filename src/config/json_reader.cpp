#include "tltrain/config/json_reader.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "tltrain/core/error.h"

namespace tltrain::config {

void Problems::error(const std::string& path, const std::string& message) { errors_.push_back({path, message}); }
void Problems::warning(const std::string& path, const std::string& message) { warnings_.push_back({path, message}); }

void Problems::throw_if_errors(const std::string& source) const {
  if (errors_.empty()) return;
  std::ostringstream ss;
  ss << source << ": " << errors_.size() << (errors_.size() == 1 ? " problem" : " problems") << ":";
  for (const auto& p : errors_) ss << "\n  " << (p.path.empty() ? "(top level)" : p.path) << ": " << p.message;
  throw Error(ErrorKind::Usage, ss.str());
}

static std::string fmt_num(double v) {
  std::ostringstream ss;
  ss << v;
  return ss.str();
}

bool Range::contains(double v) const {
  if (!std::isfinite(v)) return false;
  if (min && (min_open ? v <= *min : v < *min)) return false;
  if (max && (max_open ? v >= *max : v > *max)) return false;
  return true;
}

std::string Range::describe() const {
  if (min && max)
    return "in " + std::string(min_open ? "(" : "[") + fmt_num(*min) + ", " + fmt_num(*max) + (max_open ? ")" : "]");
  if (min) return std::string(min_open ? "> " : ">= ") + fmt_num(*min);
  if (max) return std::string(max_open ? "< " : "<= ") + fmt_num(*max);
  return "a finite number";
}

Range gt(double v) { return Range{v, std::nullopt, true, false}; }
Range ge(double v) { return Range{v, std::nullopt, false, false}; }
Range closed(double lo, double hi) { return Range{lo, hi, false, false}; }
Range left_open(double lo, double hi) { return Range{lo, hi, true, false}; }

std::string describe_value(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return "got " + s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;  // more than a third changed is no typo
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    // A word contained in the other ("lr" in "base_lr") is also a plausible slip.
    bool contained = word.size() >= 3 && (c.find(word) != std::string::npos || word.find(c) != std::string::npos);
    if (contained) d = std::min<size_t>(d, 1);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

ObjectReader::ObjectReader(const json& in, json& resolved, std::string path, Problems& problems)
    : in_(in), resolved_(&resolved), path_(std::move(path)), problems_(&problems) {
  if (!resolved_->is_object()) *resolved_ = json::object();
  if (!in_.is_null() && !in_.is_object()) {
    problems_->error(path_, "must be an object {...}, " + describe_value(in_));
    done_ = true;  // its keys cannot be checked
  }
}

ObjectReader::ObjectReader(ObjectReader&& o) noexcept
    : in_(o.in_), resolved_(o.resolved_), path_(std::move(o.path_)), problems_(o.problems_),
      known_(std::move(o.known_)), done_(o.done_) {
  o.done_ = true;
}

ObjectReader::~ObjectReader() { finish(); }

std::string ObjectReader::path_of(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

bool ObjectReader::has(const std::string& key) const {
  return in_.is_object() && in_.contains(key) && !in_.at(key).is_null();
}

const json* ObjectReader::fetch(const std::string& key) {
  known_.push_back(key);
  if (!has(key)) return nullptr;
  return &in_.at(key);
}

const json* ObjectReader::raw(const std::string& key) { return fetch(key); }

void ObjectReader::resolve(const std::string& key, json value) { (*resolved_)[key] = std::move(value); }

void ObjectReader::unresolve(const std::string& key) { resolved_->erase(key); }

double ObjectReader::number(const std::string& key, double def, const Range& range) {
  auto v = optional_number(key, range);
  (*resolved_)[key] = v ? *v : def;
  return v ? *v : def;
}

std::optional<double> ObjectReader::optional_number(const std::string& key, const Range& range) {
  const json* v = fetch(key);
  if (!v) {
    (*resolved_)[key] = nullptr;
    return std::nullopt;
  }
  if (!v->is_number()) {
    problems_->error(path_of(key), "must be a number, " + describe_value(*v));
    return std::nullopt;
  }
  double d = v->get<double>();
  if (!range.contains(d)) {
    problems_->error(path_of(key), "must be " + range.describe() + ", " + describe_value(*v));
    return std::nullopt;
  }
  (*resolved_)[key] = *v;
  return d;
}

int64_t ObjectReader::integer(const std::string& key, int64_t def, const Range& range) {
  const json* v = fetch(key);
  (*resolved_)[key] = def;
  if (!v) return def;
  bool integral = v->is_number_integer() || (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>());
  if (!v->is_number() || !integral) {
    problems_->error(path_of(key), "must be an integer, " + describe_value(*v));
    return def;
  }
  double d = v->get<double>();
  if (!range.contains(d)) {
    problems_->error(path_of(key), "must be " + range.describe() + ", " + describe_value(*v));
    return def;
  }
  (*resolved_)[key] = static_cast<int64_t>(d);
  return static_cast<int64_t>(d);
}

bool ObjectReader::boolean(const std::string& key, bool def) {
  const json* v = fetch(key);
  (*resolved_)[key] = def;
  if (!v) return def;
  if (!v->is_boolean()) {
    problems_->error(path_of(key), "must be true or false, " + describe_value(*v));
    return def;
  }
  (*resolved_)[key] = v->get<bool>();
  return v->get<bool>();
}

std::string ObjectReader::string(const std::string& key, const std::string& def) {
  const json* v = fetch(key);
  (*resolved_)[key] = def;
  if (!v) return def;
  if (!v->is_string()) {
    problems_->error(path_of(key), "must be a string, " + describe_value(*v));
    return def;
  }
  (*resolved_)[key] = v->get<std::string>();
  return v->get<std::string>();
}

std::string ObjectReader::choice(const std::string& key, const std::string& def, const std::vector<std::string>& choices) {
  std::string s = string(key, def);
  if (std::find(choices.begin(), choices.end(), s) != choices.end()) return s;
  if (!has(key) || !in_.at(key).is_string()) return def;  // a type error was already reported
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
  std::string msg = "must be one of " + list + ", got \"" + s + "\"";
  if (auto c = closest(s, choices)) msg += " (did you mean \"" + *c + "\"?)";
  problems_->error(path_of(key), msg);
  (*resolved_)[key] = def;
  return def;
}

template <class T>
static std::vector<T> read_list(ObjectReader& r, const json* v, const std::string& path, const std::vector<T>& def,
                                const Range& range, const std::vector<size_t>& sizes, Problems& problems,
                                bool integral) {
  if (!v) return def;
  if (!v->is_array()) {
    problems.error(path, "must be a list [...], " + describe_value(*v));
    return def;
  }
  if (!sizes.empty() && std::find(sizes.begin(), sizes.end(), v->size()) == sizes.end()) {
    std::string allowed;
    for (size_t s : sizes) allowed += (allowed.empty() ? "" : " or ") + std::to_string(s);
    problems.error(path, "must have " + allowed + " elements, " + describe_value(*v));
    return def;
  }
  std::vector<T> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& e = (*v)[i];
    std::string p = path + "[" + std::to_string(i) + "]";
    if (!e.is_number() || (integral && std::floor(e.get<double>()) != e.get<double>())) {
      problems.error(p, std::string("must be ") + (integral ? "an integer" : "a number") + ", " + describe_value(e));
      return def;
    }
    if (!range.contains(e.get<double>())) {
      problems.error(p, "must be " + range.describe() + ", " + describe_value(e));
      return def;
    }
    out.push_back(static_cast<T>(e.get<double>()));
  }
  return out;
}

std::vector<double> ObjectReader::numbers(const std::string& key, const std::vector<double>& def, const Range& range,
                                          const std::vector<size_t>& sizes) {
  auto out = read_list<double>(*this, fetch(key), path_of(key), def, range, sizes, *problems_, false);
  (*resolved_)[key] = out;
  return out;
}

std::vector<int64_t> ObjectReader::integers(const std::string& key, const std::vector<int64_t>& def, const Range& range,
                                            const std::vector<size_t>& sizes) {
  auto out = read_list<int64_t>(*this, fetch(key), path_of(key), def, range, sizes, *problems_, true);
  (*resolved_)[key] = out;
  return out;
}

std::vector<std::string> ObjectReader::strings(const std::string& key, const std::vector<std::string>& def) {
  const json* v = fetch(key);
  (*resolved_)[key] = def;
  if (!v) return def;
  if (!v->is_array()) {
    problems_->error(path_of(key), "must be a list of strings, " + describe_value(*v));
    return def;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      problems_->error(path_of(key) + "[" + std::to_string(i) + "]", "must be a string, " + describe_value((*v)[i]));
      return def;
    }
    out.push_back((*v)[i].get<std::string>());
  }
  (*resolved_)[key] = out;
  return out;
}

ObjectReader ObjectReader::object(const std::string& key) {
  static const json empty = json::object();
  const json* v = fetch(key);
  json& res = (*resolved_)[key];
  return ObjectReader(v ? *v : empty, res, path_of(key), *problems_);
}

void ObjectReader::finish() {
  if (done_) return;
  done_ = true;
  if (!in_.is_object()) return;
  for (auto it = in_.begin(); it != in_.end(); ++it) {
    const std::string& key = it.key();
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    if (!key.empty() && (key[0] == '_' || key.rfind("//", 0) == 0)) continue;  // "_comment" keys document a config
    std::string msg = "unknown key";
    if (auto c = closest(key, known_)) msg += " (did you mean \"" + *c + "\"?)";
    std::string allowed;
    for (const auto& k : known_) allowed += (allowed.empty() ? "" : ", ") + k;
    problems_->error(path_of(key), msg + "; allowed here: " + allowed);
  }
}

}  // namespace tltrain::config
