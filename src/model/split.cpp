#include "tltrain/model/split.h"

#include <algorithm>
#include <map>
#include <set>

#include "tltrain/core/error.h"

namespace tltrain::model {

namespace {

using torch::jit::Module;

const std::string kContainerType = "__torch__.tltrain.chain.Container";

bool is_chain_container(const std::string& q) {
  // Saving and loading may mangle a type's path ("...___torch_mangle_3.Container1"), not its name.
  return q.find("tltrain.chain.") != std::string::npos && q.find("Container") != std::string::npos;
}

/// torch.nn.Sequential, or a container of a chain built here: modules whose children run in order.
bool is_plain_sequential(const Module& m) {
  const auto& name = m.type()->name();
  if (!name) return false;
  const std::string q = name->qualifiedName();
  const std::string tail = ".Sequential";
  if (is_chain_container(q)) return true;
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

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = path.find('.', start)) != std::string::npos; start = dot + 1) parts.push_back(path.substr(start, dot - start));
  parts.push_back(path.substr(start));
  return parts;
}

/// A module whose forward applies UNITS [begin, end) in order. Each unit keeps its own path
/// ("features.13" sits in a container "features" under the name "13"), so parameter names, and
/// with them block and layer names, checkpoints and freezing, are those of the original backbone.
Module chain(const std::string& name, const std::vector<Unit>& units, size_t begin, size_t end) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  Module root(c10::QualifiedName("__torch__.tltrain.chain." + name), cu, true);
  root.register_attribute("training", c10::BoolType::get(), false);
  std::map<std::string, Module> containers{{"", root}};
  std::string src = "def forward(self, x):\n";
  for (size_t i = begin; i < end; ++i) {
    const auto parts = split_path(units[i].path);
    std::string prefix, access = "self";
    for (size_t k = 0; k + 1 < parts.size(); ++k) {
      const std::string path = prefix.empty() ? parts[k] : prefix + "." + parts[k];
      if (!containers.count(path)) {
        Module c(c10::QualifiedName(kContainerType + std::to_string(containers.size())), cu, true);
        c.register_attribute("training", c10::BoolType::get(), false);
        containers.at(prefix).register_module(parts[k], c);
        containers.emplace(path, c);
      }
      prefix = path;
      access = "getattr(" + access + ", \"" + parts[k] + "\")";
    }
    containers.at(prefix).register_module(parts.back(), units[i].module);
    src += "    x = getattr(" + access + ", \"" + parts.back() + "\").forward(x)\n";
  }
  src += "    return x\n";
  root.define(src);
  return root;
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

namespace {

/// The metadata of BACKBONE cut after block LAST, with FEATURES the cut's output for one image at
/// the input size.
config::json cut_metadata(const BackboneMeta& meta, size_t last, const torch::Tensor& features) {
  config::json raw = meta.raw;
  raw["blocks"] = config::json(raw["blocks"].begin(), raw["blocks"].begin() + static_cast<std::ptrdiff_t>(last) + 1);
  if (raw.contains("layers")) {
    // Up to the first layer of a later block: parameter-free layers right after LAST (VGG's ReLU
    // after its convolution) run in the cut chain too.
    size_t end = meta.layers.size();
    for (size_t l = 0; l < meta.layers.size(); ++l)
      if (meta.layers[l].block > static_cast<int>(last)) {
        end = l;
        break;
      }
    raw["layers"] = config::json(raw["layers"].begin(), raw["layers"].begin() + static_cast<std::ptrdiff_t>(end));
  }
  raw["feature_channels"] = features.size(1);
  raw["feature_size"] = {features.size(2), features.size(3)};
  raw["features_from"] = meta.blocks[last].name;
  return raw;
}

}  // namespace

Backbone truncate_backbone(Backbone backbone, const std::string& last, const std::string& source) {
  const BackboneMeta& meta = backbone.meta;
  std::vector<std::string> names;
  size_t i = meta.blocks.size();
  for (size_t b = 0; b < meta.blocks.size(); ++b) {
    names.push_back(meta.blocks[b].name);
    if (meta.blocks[b].name == last) i = b;
  }
  if (i == meta.blocks.size()) {
    std::string msg = source + ": model.features_from \"" + last + "\" is no block of " + meta.arch;
    if (auto c = config::closest(last, names)) msg += " (did you mean \"" + *c + "\"?)";
    TLTRAIN_FAIL(ErrorKind::Usage, msg + "; `tltrain inspect BACKBONE.pt` lists the blocks and their output shapes");
  }
  if (i + 1 == meta.blocks.size()) return backbone;
  // Cutting is splitting and keeping the bottom: the same chain check applies.
  std::string why;
  auto split = split_backbone(backbone.module, meta, i + 1, {1, 3, meta.input_size[0], meta.input_size[1]}, &why);
  TLTRAIN_CHECK(split.has_value(), ErrorKind::Usage,
                source + ": model.features_from \"" + last + "\": this " + meta.arch + " backbone cannot be cut there (" + why +
                    "); choose another block from `tltrain inspect`");
  torch::jit::Module bottom = split->bottom;
  bottom.eval();
  torch::Tensor f;
  {
    torch::NoGradGuard no_grad;
    auto options = torch::TensorOptions();
    for (const auto& p : bottom.parameters()) {
      options = options.device(p.device());
      break;
    }
    f = bottom.forward({torch::zeros({1, 3, meta.input_size[0], meta.input_size[1]}, options)}).toTensor();
  }
  TLTRAIN_CHECK(f.dim() == 4, ErrorKind::Usage,
                source + ": model.features_from \"" + last + "\" gives a " + std::to_string(f.dim()) +
                    "-d output, not a feature map N x C x H x W; choose another block");
  return adopt_backbone(bottom, cut_metadata(meta, i, f).dump(), source + " (" + meta.arch + " cut after " + last + ")");
}

}  // namespace tltrain::model
