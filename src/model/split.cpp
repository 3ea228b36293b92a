#include "tltrain/model/split.h"

#include <algorithm>
#include <map>
#include <set>

namespace tltrain::model {

namespace {

using torch::jit::Module;

bool is_plain_sequential(const Module& m) {
  const auto& name = m.type()->name();
  if (!name) return false;
  const std::string q = name->qualifiedName();
  const std::string tail = ".Sequential";
  return q.find("torch.nn.modules.container.") != std::string::npos && q.size() > tail.size() &&
         q.compare(q.size() - tail.size(), tail.size(), tail) == 0;
}

struct Unit {
  std::string path;
  Module module;
  int lo = -1, hi = -1;  ///< lowest and highest block owning one of its parameters (-1: none)
};

/// The chain of modules the forward applies: children in order, Sequential containers opened up
/// unless they are a block themselves.
void collect(const Module& m, const std::string& path, const BackboneMeta& meta, const std::set<std::string>& block_names,
             std::vector<Unit>& out) {
  for (const auto& c : m.named_children()) {
    const std::string p = path.empty() ? c.name : path + "." + c.name;
    if (!block_names.count(p) && is_plain_sequential(c.value)) {
      collect(c.value, p, meta, block_names, out);
      continue;
    }
    Unit u{p, c.value};
    for (const auto& param : c.value.named_parameters(true)) {
      int b = block_of(meta.blocks, p + "." + param.name);
      if (b < 0) continue;
      u.lo = u.lo < 0 ? b : std::min(u.lo, b);
      u.hi = std::max(u.hi, b);
    }
    out.push_back(u);
  }
}

Module chain(const std::string& name, const std::vector<Unit>& units, size_t begin, size_t end) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  Module m(c10::QualifiedName("__torch__.tltrain.split." + name), cu, true);
  m.register_attribute("training", c10::BoolType::get(), false);
  std::string src = "def forward(self, x):\n";
  for (size_t i = begin; i < end; ++i) {
    const std::string field = "u" + std::to_string(i - begin);
    m.register_module(field, units[i].module);
    src += "    x = self." + field + ".forward(x)\n";
  }
  src += "    return x\n";
  m.define(src);
  return m;
}

}  // namespace

std::optional<SplitBackbone> split_backbone(Module& backbone, const BackboneMeta& meta, size_t cut,
                                            const std::vector<int64_t>& input_shape, std::string* why) {
  auto fail = [&](const std::string& reason) -> std::optional<SplitBackbone> {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (cut == 0 || cut >= meta.blocks.size()) return fail("nothing to split: cut " + std::to_string(cut));
  std::set<std::string> block_names;
  for (const auto& b : meta.blocks) block_names.insert(b.name);
  std::vector<Unit> units;
  collect(backbone, "", meta, block_names, units);
  // The first unit holding a trainable block; everything before it must be frozen, after it trainable.
  size_t k = units.size();
  for (size_t i = 0; i < units.size(); ++i) {
    const Unit& u = units[i];
    if (u.lo >= 0 && u.lo < static_cast<int>(cut) && u.hi >= static_cast<int>(cut))
      return fail("module '" + u.path + "' holds blocks on both sides of the cut");
    if (u.lo >= static_cast<int>(cut) && k == units.size()) k = i;
    if (k < units.size() && u.lo >= 0 && u.lo < static_cast<int>(cut))
      return fail("module '" + u.path + "' (a frozen block) runs after a trainable one");
  }
  if (k == 0 || k == units.size()) return fail("no module boundary at block '" + meta.blocks[cut].name + "'");

  // Check the chain with every module in inference mode, then restore the flags.
  std::vector<std::pair<Module, bool>> flags;
  for (const auto& m : backbone.named_modules()) flags.emplace_back(m.value, m.value.is_training());
  auto restore = [&] {
    for (auto& [m, on] : flags) m.setattr("training", on);
  };
  try {
    SplitBackbone s{chain("Bottom", units, 0, k), chain("Top", units, k, units.size())};
    for (auto& [m, on] : flags) m.setattr("training", false);
    torch::NoGradGuard no_grad;
    auto options = torch::TensorOptions();
    for (const auto& p : backbone.parameters()) {
      options = options.device(p.device());
      break;
    }
    auto x = torch::randn(input_shape, options);
    auto want = backbone.forward({x}).toTensor();
    auto got = s.top.forward({s.bottom.forward({x}).toTensor()}).toTensor();
    restore();
    if (got.sizes() != want.sizes()) return fail("the cut chain gives another output shape");
    double diff = (got - want).abs().max().item<double>();
    if (diff > 1e-5 * std::max(1.0, want.abs().max().item<double>()))
      return fail("the forward is not a chain of its submodules (differs by " + std::to_string(diff) + ")");
    return s;
  } catch (const std::exception& e) {
    restore();
    std::string what = e.what();
    return fail(what.substr(0, what.find('\n')));
  }
}

}  // namespace tltrain::model
