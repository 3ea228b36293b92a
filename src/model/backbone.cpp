#include "tltrain/model/backbone.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/version.h>

#include <filesystem>
#include <map>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

namespace fs = std::filesystem;

namespace tltrain::model {

namespace {

const std::string kFix = "scripts/export_backbone.py --arch ARCH --weights imagenet|none|FILE.pth --out backbone.pt";

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

/// The metadata promises which parameters each block owns; a file where that is false would
/// freeze the wrong weights, so it is refused.
void check_blocks_match(const torch::jit::Module& module, const BackboneMeta& meta, const std::string& path) {
  std::vector<int64_t> params(meta.blocks.size(), 0), bns(meta.blocks.size(), 0);
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    int b = block_of(meta.blocks, p.name);
    TLTRAIN_CHECK(b >= 0, ErrorKind::Data,
                  "'" + path + "': parameter '" + p.name + "' belongs to no block of the metadata — re-export it with " + kFix);
    params[b] += p.value.numel();
  }
  for (const auto& m : module.named_modules()) {
    if (!is_batchnorm(m.value)) continue;
    int b = block_of(meta.blocks, m.name + ".");
    if (b >= 0) bns[b] += 1;
  }
  for (size_t i = 0; i < meta.blocks.size(); ++i) {
    TLTRAIN_CHECK(params[i] == meta.blocks[i].params && bns[i] == meta.blocks[i].batchnorms, ErrorKind::Data,
                  "'" + path + "': block '" + meta.blocks[i].name + "' has " + std::to_string(params[i]) +
                      " parameters and " + std::to_string(bns[i]) + " BatchNorm layers, its metadata says " +
                      std::to_string(meta.blocks[i].params) + " and " + std::to_string(meta.blocks[i].batchnorms) +
                      " — re-export it with " + kFix);
  }
}

std::string type_name(const torch::jit::Module& m) {
  auto name = m.type()->name();
  return name ? name->name() : "Module";  // the class, without its module path
}

/// Every module without children or with parameters/buffers of its own, in definition order —
/// forward order for the chains our exporter writes, used when the metadata lists no layers.
std::vector<LayerInfo> derive_layers(const torch::jit::Module& module, const std::vector<BlockInfo>& blocks) {
  std::vector<LayerInfo> layers;
  for (const auto& m : module.named_modules()) {
    if (m.name.empty()) continue;
    int64_t own = 0;
    bool owns = false;
    for (const auto& p : m.value.named_parameters(/*recurse=*/false)) {
      own += p.value.numel();
      owns = true;
    }
    for (const auto& b : m.value.named_buffers(/*recurse=*/false)) owns = owns || b.value.defined();
    if (!owns && m.value.children().size() > 0) continue;
    layers.push_back({m.name, type_name(m.value), own, is_batchnorm(m.value), {}, block_of(blocks, m.name + ".")});
  }
  return layers;
}

/// A layer list that does not own every parameter would freeze the wrong weights: refused.
void check_layers_match(const torch::jit::Module& module, const BackboneMeta& meta, const std::string& path) {
  std::vector<int64_t> params(meta.layers.size(), 0);
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    int l = layer_of(meta.layers, p.name);
    TLTRAIN_CHECK(l >= 0, ErrorKind::Data,
                  "'" + path + "': parameter '" + p.name + "' belongs to no layer of the metadata — re-export it with " + kFix);
    params[l] += p.value.numel();
  }
  int last_block = 0;
  for (size_t i = 0; i < meta.layers.size(); ++i) {
    const LayerInfo& l = meta.layers[i];
    TLTRAIN_CHECK(params[i] == l.params, ErrorKind::Data,
                  "'" + path + "': layer '" + l.name + "' has " + std::to_string(params[i]) + " parameters, its metadata says " +
                      std::to_string(l.params) + " — re-export it with " + kFix);
    TLTRAIN_CHECK(l.block < 0 || l.block >= last_block, ErrorKind::Data,
                  "'" + path + "': layer '" + l.name + "' is listed after a layer of a later block — re-export it with " + kFix);
    last_block = std::max(last_block, l.block);
  }
}

}  // namespace

Backbone adopt_backbone(torch::jit::Module module, const std::string& meta_text, const std::string& path) {
  Backbone bb{module, parse_backbone_meta(meta_text, path)};
  check_blocks_match(bb.module, bb.meta, path);
  if (!bb.meta.raw.contains("layers")) bb.meta.layers = derive_layers(bb.module, bb.meta.blocks);
  check_layers_match(bb.module, bb.meta, path);
  bb.module.eval();
  return bb;
}

bool is_batchnorm(const torch::jit::Module& m) {
  auto name = m.type()->name();
  return name && name->qualifiedName().find("BatchNorm") != std::string::npos;
}

Backbone load_backbone(const std::string& path, const torch::Device& device) {
  std::error_code ec;
  TLTRAIN_CHECK(fs::exists(path, ec), ErrorKind::Data,
                "backbone file '" + path + "' does not exist — make one with " + kFix);
  TLTRAIN_CHECK(fs::is_regular_file(path, ec), ErrorKind::Data, "backbone '" + path + "' is not a file");
  // Look inside the archive first: torch::jit::load's own errors talk about zip records,
  // not about the mistake the user made.
  std::vector<std::string> records;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    records = reader.getAllRecords();
  } catch (const std::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not a TorchScript file (not a PyTorch zip archive: empty, truncated or another format) — make a backbone with " + kFix);
  }
  bool has_code = false;
  for (const auto& r : records) has_code = has_code || r.rfind("code/", 0) == 0;
  TLTRAIN_CHECK(has_code, ErrorKind::Data,
                "'" + path + "' is a plain PyTorch checkpoint or state dict (torch.save), not a TorchScript backbone — convert it with scripts/export_backbone.py --arch ARCH --weights " + path + " --out backbone.pt");

  torch::jit::ExtraFilesMap extra{{kMetaFileName, ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device, extra);
  } catch (const c10::Error& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "cannot load TorchScript file '" + path + "': " + first_line(e.what_without_backtrace()) +
                                      " — re-export it with " + kFix);
  }
  TLTRAIN_CHECK(!extra[kMetaFileName].empty(), ErrorKind::Data,
                "'" + path + "' is a TorchScript module without tltrain metadata (" + kMetaFileName +
                    ") — export the backbone with " + kFix);
  return adopt_backbone(module, extra[kMetaFileName], path);
}

BackboneMeta read_backbone_meta(const std::string& path) { return load_backbone(path).meta; }

data::ImageSpec read_image_spec(const std::string& path) { return read_backbone_meta(path).image_spec(); }

void save_backbone(torch::jit::Module& module, const config::json& meta, const std::string& path) {
  torch::jit::ExtraFilesMap extra{{kMetaFileName, meta.dump(2)}};
  write_atomically(path, [&](const std::string& tmp) { module.save(tmp, extra); });
}

namespace {

torch::jit::Module make_conv_bn_relu(const std::shared_ptr<torch::jit::CompilationUnit>& cu, int index, int64_t in,
                                     int64_t out, at::Generator& gen) {
  using torch::jit::Module;
  // One namespace per block: each block's modules need their own types, and their class names
  // are the layer types inspect shows.
  const std::string ns = "__torch__.tltrain.tiny.block" + std::to_string(index) + ".";
  Module conv(c10::QualifiedName(ns + "Conv2d"), cu, true);
  // He initialisation, as torchvision's conv layers.
  conv.register_parameter("weight", torch::randn({out, in, 3, 3}, gen) * std::sqrt(2.0 / (in * 9)), false);
  conv.register_attribute("training", c10::BoolType::get(), true);
  conv.define(R"(
def forward(self, x):
    return torch.conv2d(x, self.weight, None, [2, 2], [1, 1])
)");
  Module bn(c10::QualifiedName(ns + "BatchNorm2d"), cu, true);
  bn.register_parameter("weight", torch::ones({out}), false);
  bn.register_parameter("bias", torch::zeros({out}), false);
  bn.register_buffer("running_mean", torch::zeros({out}));
  bn.register_buffer("running_var", torch::ones({out}));
  bn.register_attribute("training", c10::BoolType::get(), true);
  bn.define(R"(
def forward(self, x):
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training, 0.1, 1e-5, False)
)");
  Module block(c10::QualifiedName(ns + "Block"), cu, true);
  block.register_module("conv", conv);
  block.register_module("bn", bn);
  block.register_attribute("training", c10::BoolType::get(), true);
  block.define(R"(
def forward(self, x):
    return torch.relu(self.bn.forward(self.conv.forward(x)))
)");
  return block;
}

}  // namespace

void write_tiny_backbone(const std::string& path, uint64_t seed) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  at::Generator gen = at::detail::createCPUGenerator(seed);
  torch::jit::Module root(c10::QualifiedName("__torch__.tltrain.tiny.TinyBackbone"), cu, true);
  root.register_attribute("training", c10::BoolType::get(), true);
  const int64_t widths[] = {3, 8, 16, 16, 32};
  config::json blocks = config::json::array();
  for (int i = 0; i < 4; ++i) {
    auto block = make_conv_bn_relu(cu, i, widths[i], widths[i + 1], gen);
    int64_t params = 0;
    for (const auto& p : block.parameters()) params += p.numel();
    root.register_module("block" + std::to_string(i), block);
    blocks.push_back({{"name", "block" + std::to_string(i)}, {"params", params}, {"batchnorms", 1}});
  }
  root.define(R"(
def forward(self, x):
    return self.block3.forward(self.block2.forward(self.block1.forward(self.block0.forward(x))))
)");
  root.eval();
  auto y = root.forward({torch::zeros({1, 3, 32, 32})}).toTensor();
  config::json meta = {
      {"format", "tltrain-backbone"},
      {"format_version", 1},
      {"arch", "tiny"},
      {"input_size", {32, 32}},
      {"resize", 36},
      {"mean", {0.485, 0.456, 0.406}},
      {"std", {0.229, 0.224, 0.225}},
      {"color_order", "RGB"},
      {"pixel_range", 1.0},
      {"feature_channels", y.size(1)},
      {"feature_size", {y.size(2), y.size(3)}},
      {"blocks", blocks},
      {"weights", {{"source", "none"}, {"file", nullptr}, {"sha256", nullptr}}},
      {"torch_version", TORCH_VERSION},
      {"exported_at", "built by tltrain_tiny_backbone"},
      {"exporter", "tltrain::model::write_tiny_backbone (seed " + std::to_string(seed) + ")"},
  };
  save_backbone(root, meta, path);
}

}  // namespace tltrain::model
