#include "tltrain/checkpoint/model_file.h"

#include <ATen/Context.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "tltrain/core/error.h"
#include "tltrain/model/backbone_meta.h"
#include "tltrain/model/inference.h"

namespace tltrain::checkpoint {

config::json preprocess_to_json(const data::Preprocess& p) {
  return {{"input_size", {p.height, p.width}},
          {"resize", p.resize},
          {"mean", p.mean},
          {"std", p.std},
          {"color_order", p.bgr ? "BGR" : "RGB"},
          {"pixel_scale", p.pixel_scale},
          {"interpolation", config::name_of(p.interpolation)},
          {"normalization", p.normalization},
          {"max_pixels", p.max_pixels},
          {"eval_transform", "decode (EXIF-rotated) → resize shorter side to `resize` (Pillow's `interpolation` filter) → center crop input_size "
                             "→ x * pixel_scale → (x - mean) / std per channel, channels in color_order, NCHW float32"}};
}

data::Preprocess preprocess_from_json(const config::json& j, const std::string& file) {
  data::Preprocess p;
  try {
    auto size = j.at("input_size").get<std::vector<int64_t>>();
    TLTRAIN_CHECK(size.size() == 2 && size[0] > 0 && size[1] > 0, ErrorKind::Data, file + ": preprocess.input_size must be [h, w]");
    p.height = size[0];
    p.width = size[1];
    p.resize = j.at("resize").get<int64_t>();
    p.mean = j.at("mean").get<std::array<float, 3>>();
    p.std = j.at("std").get<std::array<float, 3>>();
    p.bgr = j.at("color_order").get<std::string>() == "BGR";
    p.pixel_scale = j.at("pixel_scale").get<float>();
    p.normalization = j.value("normalization", "");
    p.max_pixels = j.value("max_pixels", p.max_pixels);
    // Model files from before the key resized bilinear.
    const std::string interp = j.value("interpolation", "bilinear");
    TLTRAIN_CHECK(interp == "bilinear" || interp == "bicubic", ErrorKind::Data,
                  file + ": preprocess.interpolation must be \"bilinear\" or \"bicubic\", got \"" + interp + "\"; re-export it with `tltrain export`");
    p.interpolation = config::from_name<config::Interpolation>(interp);
  } catch (const config::json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, file + ": bad preprocess metadata (" + e.what() + "); re-export it with `tltrain export`");
  }
  p.skip_bad_images = true;  // prediction reports a bad file instead of stopping
  return p;
}

namespace {

/// ModelInfo from the tltrain_model.json text TEXT of the file PATH.
ModelInfo info_from_json(const std::string& text, const std::string& path) {
  ModelInfo info;
  config::json j;
  try {
    j = config::json::parse(text);
  } catch (const config::json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "': " + kModelFileName + " is not valid JSON (" + e.what() + ")");
  }
  TLTRAIN_CHECK(j.is_object() && j.value("format", "") == kModelFormat && j.value("format_version", 0) == 1, ErrorKind::Data,
                "'" + path + "' is not a tltrain model of format version 1; re-export it with this tltrain");
  try {
    info.classes = j.at("classes").get<std::vector<std::string>>();
    info.arch = j.at("backbone").value("arch", "");
    if (j.contains("head")) {  // files from before the binary and multi-label heads have softmax
      info.output = j["head"].value("output", std::string("softmax"));
      info.threshold = j["head"].value("threshold", 0.5);
    }
  } catch (const config::json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "': bad " + kModelFileName + " (" + e.what() + ")");
  }
  TLTRAIN_CHECK(!info.classes.empty(), ErrorKind::Data, "'" + path + "' lists no classes");
  config::HeadOutput output;
  TLTRAIN_CHECK(config::parse_name(info.output, output), ErrorKind::Data,
                "'" + path + "': head.output \"" + info.output + "\" is not one of " + config::choices<config::HeadOutput>() +
                    "; re-export it with this tltrain");
  TLTRAIN_CHECK(j.contains("preprocess"), ErrorKind::Data, "'" + path + "': " + kModelFileName + " has no preprocess; re-export it with this tltrain");
  info.preprocess = preprocess_from_json(j.at("preprocess"), path);
  info.raw = std::move(j);
  return info;
}

/// An int8 file's kernels are those of the quantized engine it was calibrated for
/// (scripts/quantize_int8.py): select it, as Python's torch.backends.quantized.engine would.
void select_quantized_engine(const ModelInfo& info, const std::string& path, const torch::Device& device) {
  if (!info.raw.contains("quantization")) return;
  static const std::map<std::string, at::QEngine> engines{
      {"fbgemm", at::QEngine::FBGEMM}, {"qnnpack", at::QEngine::QNNPACK}, {"onednn", at::QEngine::ONEDNN}, {"x86", at::QEngine::X86}};
  const auto& q = info.raw["quantization"];
  TLTRAIN_CHECK(q.is_object() && q.contains("backend") && q["backend"].is_string(), ErrorKind::Data,
                "'" + path + "': " + kModelFileName + "'s \"quantization\" is not an object with a \"backend\" string; re-export it with " +
                    "tltrain export --quantize int8");
  TLTRAIN_CHECK(device.is_cpu(), ErrorKind::Usage,
                "'" + path + "' is int8, whose quantized kernels run on the CPU only; give the fp32 model file for " + device.str() +
                    ", or run this one with --device cpu");
  const std::string name = q["backend"].get<std::string>();
  const auto it = engines.find(name);
  TLTRAIN_CHECK(it != engines.end(), ErrorKind::Data,
                "'" + path + "': quantization.backend \"" + name + "\" is not fbgemm, qnnpack, onednn or x86; re-export it with this tltrain");
  const auto& have = at::globalContext().supportedQEngines();
  TLTRAIN_CHECK(std::find(have.begin(), have.end(), it->second) != have.end(), ErrorKind::Data,
                "'" + path + "' is int8 for the " + name + " engine, which this LibTorch lacks; quantize it again on this machine (" +
                    "tltrain export --quantize int8) or serve the fp32 model file");
  at::globalContext().setQEngine(it->second);
}

/// What ModelInfo::min_batch says, for an int8 file of ENGINE. Measured with Debian's torch 1.13
/// at 2 threads: batches 8 then 1 fail, 1 then 8 fail, 8 then 2, 3 or 7 run; at 1 thread all run.
int64_t min_batch_for(const ModelInfo& info) {
  return info.raw.contains("quantization") && info.raw["quantization"]["backend"] == "onednn" ? 2 : 1;
}

/// The extra file NAME of the TorchScript archive PATH, read without loading the module (an int8
/// module's weights are packed for the quantized engine when it loads), "" when absent.
std::string torchscript_extra_file(const std::string& path, const std::string& name) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("extra/" + name)) return "";
    auto [data, size] = reader.getRecord("extra/" + name);
    return std::string(static_cast<const char*>(data.get()), size);
  } catch (const c10::Error&) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not a TorchScript file; make a model file with `tltrain export --checkpoint best.pt --out model.pt`");
  }
}

ModelFile load_torchscript(const std::string& path, const torch::Device& device) {
  const std::string meta = torchscript_extra_file(path, kModelFileName);
  ModelInfo info;
  if (!meta.empty()) {
    info = info_from_json(meta, path);
    select_quantized_engine(info, path, device);  // before loading: the engine packs the int8 weights
    info.min_batch = min_batch_for(info);
  }
  torch::jit::ExtraFilesMap extra{{model::kMetaFileName, ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device, extra);
  } catch (const c10::Error&) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not a TorchScript file; make a model file with `tltrain export --checkpoint best.pt --out model.pt`");
  }
  if (meta.empty()) {
    TLTRAIN_CHECK(extra[model::kMetaFileName].empty(), ErrorKind::Data,
                  "'" + path + "' is a backbone, not a trained model; train it with `tltrain fit`, then `tltrain export --checkpoint RUN/checkpoints/best.pt --out model.pt`");
    TLTRAIN_CHECK(!module.hasattr("info") && !module.hasattr("backbone_pt"), ErrorKind::Data,
                  "'" + path + "' is a checkpoint; turn it into a model file with `tltrain export --checkpoint " + path + " --out model.pt`");
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' has no " + kModelFileName + ": it was not written by `tltrain export`");
  }
  module.eval();
  return {module, nullptr, std::move(info)};
}

ModelFile load_onnx(const std::string& path, const torch::Device& device) {
  std::map<std::string, std::string> props;
  try {
    props = onnx_metadata(path);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Data) throw;
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not a TorchScript file nor ONNX; make a model file with `tltrain export --checkpoint best.pt --out model.pt`");
  }
  const auto it = props.find("tltrain_model");
  TLTRAIN_CHECK(it != props.end(), ErrorKind::Data,
                "'" + path + "' is an ONNX file without tltrain_model metadata: it was not written by `tltrain export --format onnx`");
  TLTRAIN_CHECK(device.is_cpu(), ErrorKind::Usage,
                "'" + path + "' is ONNX, which tltrain runs with OpenCV DNN on the CPU; give the TorchScript model file for " + device.str());
  return {torch::jit::Module(), std::make_shared<OnnxNet>(path), info_from_json(it->second, path)};
}

}  // namespace

torch::Tensor ModelFile::logits(const torch::Tensor& x) {
  if (x.size(0) == 0) return torch::empty({0, static_cast<int64_t>(info.classes.size())}, x.options().dtype(torch::kFloat));
  if (!onnx && x.size(0) >= info.min_batch) return module.forward({x}).toTensor();
  if (!onnx) {  // repeat the first image up to min_batch; only the real rows come back
    const auto pad = x.narrow(0, 0, 1).expand({info.min_batch - x.size(0), x.size(1), x.size(2), x.size(3)});
    return module.forward({torch::cat({x, pad})}).toTensor().narrow(0, 0, x.size(0)).contiguous();
  }
  const auto in = x.to(torch::kCPU, torch::kFloat).contiguous();
  int64_t classes = 0;
  auto out = onnx->forward(in.data_ptr<float>(), in.size(0), in.size(2), in.size(3), &classes);
  TLTRAIN_CHECK(classes == static_cast<int64_t>(info.classes.size()), ErrorKind::Data,
                "the ONNX network gives " + std::to_string(classes) + " logits per image but its metadata lists " +
                    std::to_string(info.classes.size()) + " classes; re-export it");
  return torch::from_blob(out.data(), {in.size(0), classes}, torch::kFloat).clone();
}

bool is_zip_archive(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[2] = {0, 0};
  in.read(magic, 2);
  return magic[0] == 'P' && magic[1] == 'K';
}

ModelFile load_model_file(const std::string& path, const torch::Device& device) {
  std::error_code ec;
  TLTRAIN_CHECK(std::filesystem::is_regular_file(path, ec), ErrorKind::Data, "model file '" + path + "' does not exist");
  // TorchScript files are zip archives; anything else is read as ONNX, whose errors name the file.
  return is_zip_archive(path) ? load_torchscript(path, device) : load_onnx(path, device);
}

torch::Tensor probabilities(const ModelInfo& info, const torch::Tensor& logits) {
  return model::probabilities(config::from_name<config::HeadOutput>(info.output), logits);
}

std::vector<int64_t> decided_classes(const ModelInfo& info, const float* probs, size_t classes) {
  return model::decided_classes(config::from_name<config::HeadOutput>(info.output), info.threshold, probs, classes);
}

}  // namespace tltrain::checkpoint
