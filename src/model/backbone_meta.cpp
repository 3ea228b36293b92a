#include "tltrain/model/backbone_meta.h"

#include "tltrain/core/error.h"

namespace tltrain::model {

int64_t BackboneMeta::total_params() const {
  int64_t n = 0;
  for (const auto& b : blocks) n += b.params;
  return n;
}

int64_t BackboneMeta::total_batchnorms() const {
  int64_t n = 0;
  for (const auto& b : blocks) n += b.batchnorms;
  return n;
}

data::ImageSpec BackboneMeta::image_spec() const { return {input_size, resize, mean, std, color_order, pixel_range, interpolation}; }

int layer_of(const std::vector<LayerInfo>& layers, const std::string& name) {
  const size_t dot = name.rfind('.');
  const std::string owner = dot == std::string::npos ? std::string() : name.substr(0, dot);
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].name == owner) return static_cast<int>(i);
  return -1;
}

int block_of(const std::vector<BlockInfo>& blocks, const std::string& name) {
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string& b = blocks[i].name;
    if (name.size() > b.size() && name.compare(0, b.size(), b) == 0 && name[b.size()] == '.') return static_cast<int>(i);
  }
  return -1;
}

namespace {

/// The exporter's "layers" list, or one layer per block for metadata without one.
std::vector<LayerInfo> read_layers(config::ObjectReader& r, const std::vector<BlockInfo>& blocks, config::Problems& problems) {
  using namespace config;
  std::vector<LayerInfo> layers;
  const json* list = r.raw("layers");
  if (!list) {
    for (size_t i = 0; i < blocks.size(); ++i)
      layers.push_back({blocks[i].name, "block", blocks[i].params, blocks[i].batchnorms > 0, blocks[i].output_shape, static_cast<int>(i)});
    return layers;
  }
  if (!list->is_array()) {
    problems.error("layers", "must be a list of {name, type, params, batchnorm, output_shape}");
    return layers;
  }
  for (size_t i = 0; i < list->size(); ++i) {
    json lr;
    ObjectReader l((*list)[i], lr, "layers[" + std::to_string(i) + "]", problems);
    LayerInfo info{l.string("name", ""), l.string("type", ""), l.integer("params", 0, ge(0)), l.boolean("batchnorm", false),
                   l.integers("output_shape", {}, ge(1))};
    if (info.name.empty()) problems.error(l.path_of("name"), "is required");
    info.block = blocks.empty() ? -1 : block_of(blocks, info.name + ".");
    if (info.block < 0 && info.params > 0)
      problems.error(l.path_of("name"), "layer '" + info.name + "' owns parameters but belongs to no block");
    layers.push_back(info);
  }
  return layers;
}

}  // namespace

BackboneMeta parse_backbone_meta(const std::string& text, const std::string& file) {
  const std::string fix = " — re-export it with scripts/export_backbone.py";
  config::json j;
  try {
    j = config::json::parse(text);
  } catch (const std::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + file + "' has unreadable tltrain metadata (" + e.what() + ")" + fix);
  }
  using namespace config;
  Problems problems;
  for (const char* key : {"arch", "input_size", "resize", "mean", "std", "feature_channels", "feature_size", "blocks"})
    if (!j.is_object() || !j.contains(key)) problems.error(key, "is required");
  json resolved;
  BackboneMeta m;
  {
    ObjectReader r(j, resolved, "", problems);
    std::string format = r.string("format", "");
    if (format != "tltrain-backbone") problems.error("format", "must be \"tltrain-backbone\", got \"" + format + "\"");
    int64_t version = r.integer("format_version", 0);
    if (version != 1) problems.error("format_version", "this tltrain reads version 1, got " + std::to_string(version));
    m.arch = r.string("arch", "");
    auto in = r.integers("input_size", {}, closed(1, 1 << 16), {2});
    if (in.size() == 2) m.input_size = {in[0], in[1]};
    m.resize = r.integer("resize", 0, ge(1));
    auto mean = r.numbers("mean", {}, {}, {3});
    auto std = r.numbers("std", {}, gt(0.0), {3});
    for (size_t i = 0; i < 3 && mean.size() == 3 && std.size() == 3; ++i) {
      m.mean[i] = mean[i];
      m.std[i] = std[i];
    }
    m.color_order = r.choice("color_order", "RGB", {"RGB", "BGR"});
    m.pixel_range = r.number("pixel_range", 1.0, gt(0.0));
    // torchvision's eval transform filter; older exports without it were bilinear.
    m.interpolation = r.choice("interpolation", "bilinear", {"bilinear", "bicubic"}) == "bicubic" ? config::Interpolation::Bicubic
                                                                                                : config::Interpolation::Bilinear;
    m.feature_channels = r.integer("feature_channels", 0, ge(1));
    auto fsz = r.integers("feature_size", {}, ge(1), {2});
    if (fsz.size() == 2) m.feature_size = {fsz[0], fsz[1]};
    const json* blocks = r.raw("blocks");
    if (!blocks || !blocks->is_array() || blocks->empty()) {
      problems.error("blocks", "must be a non-empty list of {name, params, batchnorms}");
    } else {
      for (size_t i = 0; i < blocks->size(); ++i) {
        json br;
        ObjectReader b((*blocks)[i], br, "blocks[" + std::to_string(i) + "]", problems);
        BlockInfo info{b.string("name", ""), b.integer("params", 0, ge(0)), b.integer("batchnorms", 0, ge(0)),
                       b.integers("output_shape", {}, ge(1))};
        if (info.name.empty()) problems.error(b.path_of("name"), "is required");
        m.blocks.push_back(info);
      }
    }
    m.layers = read_layers(r, m.blocks, problems);
    {
      ObjectReader w = r.object("weights");
      auto opt_string = [&](const char* key) {
        const json* v = w.raw(key);
        return v && v->is_string() ? v->get<std::string>() : std::string();
      };
      m.weights_source = opt_string("source");
      m.weights_file = opt_string("file");
      m.weights_sha256 = opt_string("sha256");
    }
    // Provenance: informative, never required.
    for (auto [key, out] : {std::pair<const char*, std::string*>{"torch_version", &m.torch_version},
                            {"torchvision_version", &m.torchvision_version},
                            {"exported_at", &m.exported_at},
                            {"exporter", &m.exporter}}) {
      const json* v = r.raw(key);
      if (v && v->is_string()) *out = v->get<std::string>();
    }
    r.finish();
  }
  // Unknown keys in metadata are newer exporters' additions, not errors; everything else is.
  std::vector<Problem> real;
  for (const auto& p : problems.errors())
    if (p.message.rfind("unknown key", 0) != 0) real.push_back(p);
  if (!real.empty()) {
    std::string msg = "'" + file + "' has invalid tltrain metadata:";
    for (const auto& p : real) msg += "\n  " + p.path + ": " + p.message;
    TLTRAIN_FAIL(ErrorKind::Data, msg + "\n" + fix.substr(3));
  }
  m.raw = j;
  return m;
}

}  // namespace tltrain::model
