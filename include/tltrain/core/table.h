#pragma once
// Name → behaviour tables: every name a config may hold maps to one entry, and a name with no
// entry throws with the valid choices instead of falling through to a default.
#include <map>
#include <string>

#include "tltrain/core/error.h"

namespace tltrain {

/// TABLE's entry for NAME; a Usage error naming WHAT, NAME and the valid names when it has none.
template <typename V>
const V& lookup(const std::map<std::string, V>& table, const std::string& name, const std::string& what) {
  auto it = table.find(name);
  if (it == table.end()) {
    std::string valid;
    for (const auto& entry : table) valid += (valid.empty() ? "" : ", ") + entry.first;
    TLTRAIN_FAIL(ErrorKind::Usage, "unknown " + what + " '" + name + "' (valid: " + valid + ")");
  }
  return it->second;
}

}  // namespace tltrain
