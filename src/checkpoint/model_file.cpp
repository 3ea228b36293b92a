#include "tltrain/checkpoint/model_file.h"

#include <algorithm>

#include <filesystem>

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

ModelFile load_model_file(const std::string& path, const torch::Device& device) {
  std::error_code ec;
  TLTRAIN_CHECK(std::filesystem::is_regular_file(path, ec), ErrorKind::Data, "model file '" + path + "' does not exist");
  torch::jit::ExtraFilesMap extra{{kModelFileName, ""}, {model::kMetaFileName, ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device, extra);
  } catch (const c10::Error&) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not a TorchScript file; make a model file with `tltrain export --checkpoint best.pt --out model.pt`");
  }
  if (extra[kModelFileName].empty()) {
    TLTRAIN_CHECK(extra[model::kMetaFileName].empty(), ErrorKind::Data,
                  "'" + path + "' is a backbone, not a trained model; train it with `tltrain fit`, then `tltrain export --checkpoint RUN/checkpoints/best.pt --out model.pt`");
    TLTRAIN_CHECK(!module.hasattr("info") && !module.hasattr("backbone_pt"), ErrorKind::Data,
                  "'" + path + "' is a checkpoint; turn it into a model file with `tltrain export --checkpoint " + path + " --out model.pt`");
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' has no " + kModelFileName + ": it was not written by `tltrain export`");
  }
  ModelFile mf{module, {}};
  config::json j;
  try {
    j = config::json::parse(extra[kModelFileName]);
  } catch (const config::json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "': " + kModelFileName + " is not valid JSON (" + e.what() + ")");
  }
  TLTRAIN_CHECK(j.value("format", "") == kModelFormat && j.value("format_version", 0) == 1, ErrorKind::Data,
                "'" + path + "' is not a tltrain model of format version 1; re-export it with this tltrain");
  try {
    mf.info.classes = j.at("classes").get<std::vector<std::string>>();
    mf.info.arch = j.at("backbone").value("arch", "");
    if (j.contains("head")) {  // files from before the binary and multi-label heads have softmax
      mf.info.output = j["head"].value("output", std::string("softmax"));
      mf.info.threshold = j["head"].value("threshold", 0.5);
    }
  } catch (const config::json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "': bad " + kModelFileName + " (" + e.what() + ")");
  }
  TLTRAIN_CHECK(!mf.info.classes.empty(), ErrorKind::Data, "'" + path + "' lists no classes");
  config::HeadOutput output;
  TLTRAIN_CHECK(config::parse_name(mf.info.output, output), ErrorKind::Data,
                "'" + path + "': head.output \"" + mf.info.output + "\" is not one of " + config::choices<config::HeadOutput>() +
                    "; re-export it with this tltrain");
  mf.info.preprocess = preprocess_from_json(j.at("preprocess"), path);
  mf.info.raw = std::move(j);
  mf.module.eval();
  return mf;
}

torch::Tensor probabilities(const ModelInfo& info, const torch::Tensor& logits) {
  return model::probabilities(config::from_name<config::HeadOutput>(info.output), logits);
}

std::vector<int64_t> decided_classes(const ModelInfo& info, const float* probs, size_t classes) {
  return model::decided_classes(config::from_name<config::HeadOutput>(info.output), info.threshold, probs, classes);
}

}  // namespace tltrain::checkpoint
