#include "tltrain/model/inspect.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "tltrain/model/freeze_plan.h"

namespace tltrain::model {

using config::json;

json describe_backbone(const BackboneMeta& meta, const std::string& path) {
  const size_t n = meta.blocks.size();
  json fractions = json::array();
  std::vector<std::vector<double>> fractions_at(n + 1);
  for (int tenth = 1; tenth <= 10; ++tenth) {
    config::TrainableSpec spec;
    spec.kind = config::TrainableSpec::Kind::Fraction;
    spec.fraction = tenth / 10.0;
    size_t cut = resolve_cut(meta.blocks, spec);
    fractions_at[cut].push_back(spec.fraction);
    fractions.push_back({{"unfreeze", spec.fraction},
                         {"blocks", n - cut},
                         {"from", meta.blocks[cut].name},
                         {"trainable_params", trainable_params(meta.blocks, cut)}});
  }
  json blocks = json::array();
  for (size_t i = 0; i < n; ++i) {
    const auto& b = meta.blocks[i];
    blocks.push_back({{"index", i},
                      {"name", b.name},
                      {"params", b.params},
                      {"batchnorms", b.batchnorms},
                      {"unfreeze_blocks", n - i},
                      {"unfreeze_from", b.name},
                      {"trainable_params", trainable_params(meta.blocks, i)},
                      {"unfreeze_fractions", fractions_at[i]}});
  }
  json m = meta.raw;
  m.erase("blocks");
  return {{"file", path},
          {"metadata", m},
          {"blocks", blocks},
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

}  // namespace

std::string format_inspect(const json& r) {
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
     << r["total_batchnorms"] << " BatchNorm layers); trainable with the head only: 0 in the backbone\n\n";

  const json& blocks = r["blocks"];
  size_t name_w = 5;
  for (const auto& b : blocks) name_w = std::max(name_w, b["name"].get<std::string>().size());
  ss << std::right << std::setw(4) << "#" << "  " << std::left << std::setw(static_cast<int>(name_w)) << "block" << std::right
     << std::setw(12) << "params" << std::setw(5) << "BN" << std::setw(19) << "--unfreeze-blocks" << std::setw(16)
     << "trainable" << "  --unfreeze\n";
  for (const auto& b : blocks) {
    std::ostringstream fr;
    for (size_t i = 0; i < b["unfreeze_fractions"].size(); ++i)
      fr << (i ? " " : "") << std::fixed << std::setprecision(1) << b["unfreeze_fractions"][i].get<double>();
    ss << std::right << std::setw(4) << b["index"].get<size_t>() << "  " << std::left << std::setw(static_cast<int>(name_w))
       << b["name"].get<std::string>() << std::right << std::setw(12) << thousands(b["params"].get<int64_t>()) << std::setw(5)
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
