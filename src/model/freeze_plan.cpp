#include "tltrain/model/freeze_plan.h"

#include <cmath>

#include "tltrain/core/error.h"

namespace tltrain::model {

namespace {

/// The cut whose first trainable layer is LAYER; its block is the first block at or after it
/// (parameter-free layers between blocks belong to none).
Cut layer_cut(const BackboneMeta& meta, size_t layer) {
  Cut c{meta.blocks.size(), layer};
  for (size_t i = layer; i < meta.layers.size(); ++i)
    if (meta.layers[i].block >= 0) {
      c.block = static_cast<size_t>(meta.layers[i].block);
      break;
    }
  return c;
}

bool is_under(const std::string& name, const std::string& prefix) {
  return name == prefix || (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 && name[prefix.size()] == '.');
}

/// FROM as a block name, else as any module: the first layer at or inside it.
Cut from_cut(const BackboneMeta& meta, const std::string& from) {
  for (size_t i = 0; i < meta.blocks.size(); ++i)
    if (meta.blocks[i].name == from) return block_cut(meta, i);
  for (size_t i = 0; i < meta.layers.size(); ++i)
    if (is_under(meta.layers[i].name, from)) return layer_cut(meta, i);
  // Layers first: on a tie the nearer, longer name wins ("block2.bnn" → block2.bn, not block2).
  std::vector<std::string> names;
  for (const auto& l : meta.layers) names.push_back(l.name);
  for (const auto& b : meta.blocks) names.push_back(b.name);
  std::string msg = "no block or sub-module named \"" + from + "\" in the backbone";
  if (auto c = config::closest(from, names)) msg += " (did you mean \"" + *c + "\"?)";
  TLTRAIN_FAIL(ErrorKind::Usage, msg + "; `tltrain inspect --layers BACKBONE.pt` lists them");
}

size_t checked_count(int64_t count, size_t available, const char* what) {
  TLTRAIN_CHECK(count >= 0 && static_cast<size_t>(count) <= available, ErrorKind::Usage,
                "cannot take " + std::to_string(count) + " " + what + ": the backbone has " + std::to_string(available) +
                    " (see `tltrain inspect --layers`)");
  return static_cast<size_t>(count);
}

}  // namespace

Cut block_cut(const BackboneMeta& meta, size_t b) {
  if (b >= meta.blocks.size()) return {meta.blocks.size(), meta.layers.size()};
  for (size_t i = 0; i < meta.layers.size(); ++i)
    if (meta.layers[i].block >= static_cast<int>(b)) return {b, i};
  return {meta.blocks.size(), meta.layers.size()};
}

Cut resolve_cut(const BackboneMeta& meta, const config::TrainableSpec& spec) {
  using Kind = config::TrainableSpec::Kind;
  const size_t n = meta.blocks.size(), layers = meta.layers.size();
  switch (spec.kind) {
    case Kind::Head: return {n, layers};
    case Kind::All: return {0, 0};
    case Kind::Fraction: {
      TLTRAIN_CHECK(spec.fraction > 0 && spec.fraction <= 1, ErrorKind::Usage,
                    "unfreeze fraction must be in (0, 1], got " + std::to_string(spec.fraction));
      // The epsilon keeps 0.2 * 10 from rounding up to 3 through floating-point noise.
      size_t k = static_cast<size_t>(std::ceil(spec.fraction * static_cast<double>(n) - 1e-9));
      return block_cut(meta, n - std::min(n, std::max<size_t>(k, 1)));
    }
    case Kind::Blocks: return block_cut(meta, n - checked_count(spec.blocks, n, "the top blocks"));
    case Kind::Layers: return layer_cut(meta, layers - checked_count(spec.layers, layers, "the last layers"));
    case Kind::FreezeFirst: return layer_cut(meta, checked_count(spec.layers, layers, "layers to freeze"));
    case Kind::From: return from_cut(meta, spec.from);
  }
  return {n, layers};
}

int64_t trainable_params(const BackboneMeta& meta, const Cut& cut) {
  int64_t total = 0;
  for (size_t i = cut.layer; i < meta.layers.size(); ++i) total += meta.layers[i].params;
  return total;
}

}  // namespace tltrain::model
