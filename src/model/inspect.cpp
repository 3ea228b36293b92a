#include "tltrain/model/inspect.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "tltrain/model/freeze_plan.h"

namespace tltrain::model {

using config::json;

namespace {

json shape_json(const std::vector<int64_t>& shape) { return shape.empty() ? json(nullptr) : json(shape); }

/// Every layer with the settings that train it: --unfreeze-layers N for N >= layers_from_top,
/// --freeze-first N for N <= index, --unfreeze-blocks N for N >= blocks_from_top, --unfreeze F for F >= min_fraction.
json describe_layers(const BackboneMeta& meta, const json& fractions) {
  const size_t n = meta.blocks.size(), count = meta.layers.size();
  json layers = json::array();
  for (size_t i = 0; i < count; ++i) {
    const auto& l = meta.layers[i];
    json min_fraction = nullptr;
    for (const auto& f : fractions)
      if (f["first_layer"].get<size_t>() <= i) {
        min_fraction = f["unfreeze"];
        break;
      }
    layers.push_back({{"index", i},
                      {"name", l.name},
                      {"type", l.type},
                      {"output_shape", shape_json(l.output_shape)},
                      {"params", l.params},
                      {"batchnorm", l.batchnorm},
                      {"block", l.block >= 0 ? json(meta.blocks[static_cast<size_t>(l.block)].name) : json(nullptr)},
                      {"unfreeze_layers", count - i},
                      {"freeze_first", i},
                      {"unfreeze_blocks", l.block >= 0 ? json(n - static_cast<size_t>(l.block)) : json(nullptr)},
                      {"unfreeze_fraction", min_fraction}});
  }
  return layers;
}

}  // namespace

json describe_backbone(const BackboneMeta& meta, const std::string& path) {
  const size_t n = meta.blocks.size();
  json fractions = json::array();
  std::vector<std::vector<double>> fractions_at(n + 1);
  for (int tenth = 1; tenth <= 10; ++tenth) {
    config::TrainableSpec spec;
    spec.kind = config::TrainableSpec::Kind::Fraction;
    spec.fraction = tenth / 10.0;
    const Cut cut = resolve_cut(meta, spec);
    fractions_at[cut.block].push_back(spec.fraction);
    fractions.push_back({{"unfreeze", spec.fraction},
                         {"blocks", n - cut.block},
                         {"from", meta.blocks[cut.block].name},
                         {"first_layer", cut.layer},
                         {"trainable_params", trainable_params(meta, cut)}});
  }
  json blocks = json::array();
  for (size_t i = 0; i < n; ++i) {
    const auto& b = meta.blocks[i];
    blocks.push_back({{"index", i},
                      {"name", b.name},
                      {"params", b.params},
                      {"batchnorms", b.batchnorms},
                      {"output_shape", shape_json(b.output_shape)},
                      {"unfreeze_blocks", n - i},
                      {"unfreeze_from", b.name},
                      {"trainable_params", trainable_params(meta, block_cut(meta, i))},
                      {"unfreeze_fractions", fractions_at[i]}});
  }
  json layers = describe_layers(meta, fractions);  // fractions run 0.1 → 1.0: the first match is the smallest
  json m = meta.raw;
  m.erase("blocks");
  m.erase("layers");
  return {{"file", path},
          {"metadata", m},
          {"blocks", blocks},
          {"layers", layers},
          {"unfreeze_fractions", fractions},
          {"total_params", meta.total_params()},
          {"total_batchnorms", meta.total_batchnorms()},
          {"trainable_params_head_only", 0}};
}

json inspect_backbone(const std::string& path) {
  return describe_backbone(read_backbone_meta(path), path);
}

namespace {

std::string thousands(int64_t v) {
  std::string s = std::to_string(v), out;
  int count = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (count && count % 3 == 0 && *it != '-') out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++count;
  }
  return out;
}

std::string list(const json& a) {
  std::ostringstream ss;
  for (size_t i = 0; i < a.size(); ++i) ss << (i ? ", " : "") << a[i].dump();
  return ss.str();
}

std::string shape_text(const json& shape) {
  if (shape.is_null()) return "-";
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += 'x';
    out += std::to_string(shape[i].get<int64_t>());
  }
  return out;
}

std::string opt_number(const json& v, int precision = -1) {
  if (v.is_null()) return "-";
  std::ostringstream ss;
  if (precision >= 0) ss << std::fixed << std::setprecision(precision) << v.get<double>();
  else ss << v.get<int64_t>();
  return ss.str();
}

/// One row per layer: what it is and the smallest setting of each kind that trains it.
std::string format_layers(const json& layers) {
  size_t name_w = 5, type_w = 4;
  for (const auto& l : layers) {
    name_w = std::max(name_w, l["name"].get<std::string>().size());
    type_w = std::max(type_w, l["type"].get<std::string>().size());
  }
  std::ostringstream ss;
  ss << std::right << std::setw(4) << "#" << "  " << std::left << std::setw(static_cast<int>(name_w)) << "layer" << "  "
     << std::setw(static_cast<int>(type_w)) << "type" << std::right << std::setw(15) << "output" << std::setw(12) << "params"
     << std::setw(4) << "BN" << std::setw(18) << "--unfreeze-layers" << std::setw(15) << "--freeze-first" << std::setw(18)
     << "--unfreeze-blocks" << std::setw(12) << "--unfreeze" << "\n";
  for (const auto& l : layers) {
    ss << std::right << std::setw(4) << l["index"].get<size_t>() << "  " << std::left << std::setw(static_cast<int>(name_w))
       << l["name"].get<std::string>() << "  " << std::setw(static_cast<int>(type_w)) << l["type"].get<std::string>() << std::right
       << std::setw(15) << shape_text(l["output_shape"]) << std::setw(12) << thousands(l["params"].get<int64_t>()) << std::setw(4)
       << (l["batchnorm"].get<bool>() ? "yes" : "") << std::setw(18) << (">= " + std::to_string(l["unfreeze_layers"].get<size_t>()))
       << std::setw(15) << ("<= " + std::to_string(l["freeze_first"].get<size_t>())) << std::setw(18)
       << (l["unfreeze_blocks"].is_null() ? "-" : ">= " + opt_number(l["unfreeze_blocks"])) << std::setw(12)
       << (l["unfreeze_fraction"].is_null() ? "-" : ">= " + opt_number(l["unfreeze_fraction"], 1)) << "\n";
  }
  ss << "\nEach layer trains with --unfreeze-layers N (trainable {\"layers\": N}) for N at least the value shown, with\n"
        "--freeze-first N ({\"freeze_first\": N}) for N at most the value shown, and with the block and fraction settings shown;\n"
        "{\"from\": NAME} trains the layer NAME (or the first layer inside the module NAME) and every layer after it.\n";
  return ss.str();
}

}  // namespace

std::string format_inspect(const json& r, bool with_layers) {
  const json& m = r["metadata"];
  auto str = [&](const char* k) { return m.contains(k) && m[k].is_string() ? m[k].get<std::string>() : std::string("-"); };
  std::ostringstream ss;
  const json& w = m.value("weights", json::object());
  std::string wsrc = w.value("source", json("?")).is_string() ? w.value("source", std::string("?")) : "?";
  std::string wfile = w.contains("file") && w["file"].is_string() ? w["file"].get<std::string>() : "";
  std::string wsha = w.contains("sha256") && w["sha256"].is_string() ? w["sha256"].get<std::string>() : "";
  ss << "Backbone   " << r["file"].get<std::string>() << "\n"
     << "Arch       " << str("arch") << "\n"
     << "Weights    " << wsrc << (wfile.empty() ? "" : " " + wfile) << (wsha.empty() ? "" : " sha256 " + wsha.substr(0, 16) + "…")
     << (wsrc == "none" ? "  (random init: no transfer learning)" : "") << "\n"
     << "Input      " << m["input_size"][0] << "x" << m["input_size"][1] << " " << str("color_order") << ", eval resize "
     << m["resize"] << " + center crop, pixels/" << (m.value("pixel_range", 1.0) == 1.0 ? "255" : "1") << ", mean ["
     << list(m["mean"]) << "], std [" << list(m["std"]) << "]\n"
     << "Features   " << m["feature_channels"] << " x " << m["feature_size"][0] << " x " << m["feature_size"][1] << "\n"
     << "Exported   " << str("exported_at") << " by " << str("exporter") << ", torch " << str("torch_version")
     << (m.contains("torchvision_version") ? ", torchvision " + str("torchvision_version") : "") << "\n"
     << "Params     " << thousands(r["total_params"].get<int64_t>()) << " in " << r["blocks"].size() << " blocks ("
     << r["total_batchnorms"] << " BatchNorm layers) and " << r["layers"].size()
     << " layers; trainable with the head only: 0 in the backbone\n\n";
  if (with_layers) return ss.str() + format_layers(r["layers"]);

  const json& blocks = r["blocks"];
  size_t name_w = 5;
  for (const auto& b : blocks) name_w = std::max(name_w, b["name"].get<std::string>().size());
  ss << std::right << std::setw(4) << "#" << "  " << std::left << std::setw(static_cast<int>(name_w)) << "block" << std::right
     << std::setw(15) << "output" << std::setw(12) << "params" << std::setw(5) << "BN" << std::setw(19) << "--unfreeze-blocks" << std::setw(16)
     << "trainable" << "  --unfreeze\n";
  for (const auto& b : blocks) {
    std::ostringstream fr;
    for (size_t i = 0; i < b["unfreeze_fractions"].size(); ++i)
      fr << (i ? " " : "") << std::fixed << std::setprecision(1) << b["unfreeze_fractions"][i].get<double>();
    ss << std::right << std::setw(4) << b["index"].get<size_t>() << "  " << std::left << std::setw(static_cast<int>(name_w))
       << b["name"].get<std::string>() << std::right << std::setw(15) << shape_text(b["output_shape"]) << std::setw(12)
       << thousands(b["params"].get<int64_t>()) << std::setw(5)
       << b["batchnorms"].get<int64_t>() << std::setw(19) << b["unfreeze_blocks"].get<size_t>() << std::setw(16)
       << thousands(b["trainable_params"].get<int64_t>()) << "  " << fr.str() << "\n";
  }
  ss << "\n'trainable' = backbone parameters trained by --unfreeze-from <block> (= --unfreeze-blocks N);"
        " --unfreeze F trains the top ceil(F x blocks) blocks.\n\nCut points:\n";
  for (const auto& f : r["unfreeze_fractions"]) {
    ss << "  --unfreeze " << std::fixed << std::setprecision(1) << f["unfreeze"].get<double>() << "  = --unfreeze-blocks "
       << std::setw(3) << std::left << f["blocks"].get<size_t>() << std::right << " = --unfreeze-from " << std::setw(static_cast<int>(name_w))
       << std::left << f["from"].get<std::string>() << std::right << "  " << std::setw(12) << thousands(f["trainable_params"].get<int64_t>())
       << " trainable\n";
  }
  return ss.str();
}

}  // namespace tltrain::model
