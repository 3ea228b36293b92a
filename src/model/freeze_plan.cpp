#include "tltrain/model/freeze_plan.h"

#include <cmath>

#include "tltrain/core/error.h"

namespace tltrain::model {

size_t resolve_cut(const std::vector<BlockInfo>& blocks, const config::TrainableSpec& spec) {
  using Kind = config::TrainableSpec::Kind;
  const size_t n = blocks.size();
  switch (spec.kind) {
    case Kind::Head: return n;
    case Kind::All: return 0;
    case Kind::Fraction: {
      TLTRAIN_CHECK(spec.fraction > 0 && spec.fraction <= 1, ErrorKind::Usage,
                    "unfreeze fraction must be in (0, 1], got " + std::to_string(spec.fraction));
      // The epsilon keeps 0.2 * 10 from rounding up to 3 through floating-point noise.
      size_t k = static_cast<size_t>(std::ceil(spec.fraction * static_cast<double>(n) - 1e-9));
      return n - std::min(n, std::max<size_t>(k, 1));
    }
    case Kind::Blocks:
      TLTRAIN_CHECK(spec.blocks >= 0 && static_cast<size_t>(spec.blocks) <= n, ErrorKind::Usage,
                    "cannot unfreeze the top " + std::to_string(spec.blocks) + " blocks: the backbone has " +
                        std::to_string(n) + " (see `tltrain inspect`)");
      return n - static_cast<size_t>(spec.blocks);
    case Kind::From: {
      std::vector<std::string> names;
      for (size_t i = 0; i < n; ++i) {
        if (blocks[i].name == spec.from) return i;
        names.push_back(blocks[i].name);
      }
      std::string msg = "no block named \"" + spec.from + "\" in the backbone";
      if (auto c = config::closest(spec.from, names)) msg += " (did you mean \"" + *c + "\"?)";
      TLTRAIN_FAIL(ErrorKind::Usage, msg + "; `tltrain inspect BACKBONE.pt` lists the blocks");
    }
  }
  return n;
}

int64_t trainable_params(const std::vector<BlockInfo>& blocks, size_t cut) {
  int64_t total = 0;
  for (size_t i = cut; i < blocks.size(); ++i) total += blocks[i].params;
  return total;
}

}  // namespace tltrain::model
