#include "tltrain/ship/export.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <map>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/checkpoint/model_file.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/ship/onnx.h"
#include "tltrain/ship/python_script.h"
#include "tltrain/ship/quantize.h"

namespace tltrain::ship {

namespace {

/// TorchScript source of the head's forward for CFG with N dense layers (dropout is identity in eval).
std::string head_source(const config::HeadConfig& cfg, size_t n) {
  std::ostringstream s;
  s << "def forward(self, f):\n";
  static const std::map<config::Pooling, const char*> pool_source{
      {config::Pooling::Avg, "torch.mean(f, [2, 3])"},
      {config::Pooling::Max, "torch.amax(f, [2, 3])"},
      {config::Pooling::AvgMax, "torch.cat([torch.mean(f, [2, 3]), torch.amax(f, [2, 3])], 1)"},
      {config::Pooling::Flatten, "torch.flatten(f, 1)"}};
  s << "    x = " << config::row_of(pool_source, cfg.pooling) << "\n";
  for (size_t i = 0; i < n; ++i) {
    s << "    x = torch.linear(x, self.dense" << i << "_weight, self.dense" << i << "_bias)\n";
    if (i + 1 < n) s << "    x = torch." << config::name_of(cfg.activation) << "(x)\n";  // each name is torch's function
  }
  if (cfg.output == config::HeadOutput::Sigmoid) s << "    x = torch.cat([torch.zeros_like(x), x], 1)\n";  // as HeadImpl::forward
  s << "    return x\n";
  return s.str();
}

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

/// What a deployment wants to know about the run, from the checkpoint's info.
config::json training_summary(const config::json& info) {
  config::json s = {{"monitor", info.value("monitor", "")}};
  if (info.contains("progress")) {
    const auto& p = info.at("progress");
    s["best_value"] = p.value("best_value", 0.0);
    s["stage"] = p.value("stage", 0);
    s["epoch"] = p.value("epoch", 0);
    s["global_step"] = p.value("global_step", 0);
  }
  if (info.contains("history") && info.at("history").is_array() && !info.at("history").empty()) {
    s["epochs"] = info.at("history").size();
    s["last_epoch"] = info.at("history").back();
  }
  const auto& data = info.at("config").at("data");
  // A run without validation data has "val": null in its resolved config: no source, not a crash.
  auto source = [&](const char* key) { return data.contains(key) && data[key].is_string() ? data[key] : config::json(nullptr); };
  s["train_source"] = source("train");
  s["val_source"] = source("val");
  return s;
}

struct Check {
  double diff = 0;
  bool ran = true;
};

/// ROOT (converted to O's precision) against the checkpoint's logits WANT on X, relative to the
/// logits' size: float32 keeps about 7 digits, bf16 about 3 and fp16 about 4, through every layer.
Check check_file(torch::jit::Module& root, const torch::Tensor& x, const torch::Tensor& want, const ExportOptions& o) {
  static const std::map<config::Precision, double> tolerance{
      {config::Precision::Fp32, 0.0}, {config::Precision::Bf16, 0.1}, {config::Precision::Fp16, 0.02}};
  const double allowed = std::max(o.check_tolerance, config::row_of(tolerance, o.precision));
  torch::Device where = torch::kCPU;
  if (o.precision == config::Precision::Bf16) root.to(torch::kBFloat16);
  if (o.precision == config::Precision::Fp16) {
    root.to(torch::kHalf);
    if (!torch::cuda::is_available()) return {0.0, false};
    where = torch::kCUDA;
    root.to(where);
  }
  const double scale = std::max(1.0, want.abs().max().item<double>());
  const double diff = (root.forward({x.to(where)}).toTensor().to(torch::kCPU) - want).abs().max().item<double>() / scale;
  root.to(torch::kCPU);
  TLTRAIN_CHECK(diff <= allowed, ErrorKind::Runtime,
                "exported " + config::name_of(o.precision) + " module differs from the checkpoint by " + std::to_string(diff) +
                    " (relative; allowed " + std::to_string(allowed) + ")" +
                    (o.precision == config::Precision::Fp32 ? ": a bug in tltrain export" : ": export it in fp32 or the other half type"));
  return {diff, true};
}

/// The ONNX file for O: ROOT saved as a TorchScript file beside O.out, converted by the script,
/// then run by OpenCV DNN on X against ROOT's logits (relative to their size, as check_file). The
/// script writes write_atomically's temporary file and the check runs on it: only a file that
/// passes becomes O.out, so a refused export leaves an earlier one as it was.
ExportSummary export_onnx(const ExportOptions& o, torch::jit::Module& root, const torch::jit::ExtraFilesMap& extra,
                          const torch::Tensor& x, ExportSummary summary) {
  const std::string pt = o.out + ".torchscript.tmp";
  RemoveOnExit remove_pt{pt};
  root.save(pt, extra);
  const auto want = root.forward({x}).toTensor().contiguous();
  const auto in = x.contiguous();
  // A file OpenCV DNN cannot run, or runs differently, is not shipped as checked: the message
  // says how to get it unchecked for another runtime.
  const auto refuse = [&](const std::string& why) {
    const std::string model_pt = std::filesystem::path(o.out).replace_extension(".pt").string();
    TLTRAIN_FAIL(ErrorKind::Runtime, "'" + o.out + "' not written: " + why + ". The TorchScript file (--format torchscript) is exact; " +
                                         "for an unchecked ONNX file, write it (tltrain export --checkpoint " + o.checkpoint + " --out " +
                                         model_pt + ") and run " + script_python() + " " + script_path("export_onnx.py") +
                                         " --model " + model_pt + " --out " + o.out);
  };
  write_atomically(o.out, [&](const std::string& unchecked) {
    summary.onnx_opset = convert_to_onnx(pt, unchecked, o.checkpoint).opset;
    int64_t classes = 0;
    std::vector<float> got;
    try {
      checkpoint::OnnxNet net(unchecked);
      got = net.forward(in.data_ptr<float>(), in.size(0), in.size(2), in.size(3), &classes);
    } catch (const Error& e) {
      refuse(std::string("OpenCV DNN cannot run it (") + e.what() + ")");
    }
    if (classes != want.size(1))
      refuse("OpenCV DNN gives " + std::to_string(classes) + " logits per image, the model " + std::to_string(want.size(1)));
    const auto got_t = torch::from_blob(got.data(), want.sizes(), torch::kFloat);
    const double diff = (got_t - want).abs().max().item<double>() / std::max(1.0, want.abs().max().item<double>());
    if (diff > o.check_tolerance)
      refuse("under OpenCV DNN it differs from the TorchScript model by " + std::to_string(diff) + " (relative; allowed " +
             std::to_string(o.check_tolerance) + "), an operator OpenCV reads differently");
    summary.onnx_max_abs_diff = diff;
  });
  return summary;
}

/// The int8 file for O: ROOT saved as a TorchScript file beside O.out, quantized on calibration
/// images into write_atomically's temporary file, then loaded as predict and serve will load it
/// and run on X: only N×C finite logits make it O.out.
ExportSummary export_int8(const ExportOptions& o, torch::jit::Module& root, const torch::jit::ExtraFilesMap& extra,
                          const config::RunConfig& cfg, const data::Preprocess& pre, const torch::Tensor& x, ExportSummary summary) {
  const auto calibration = calibration_images(cfg, pre, o.calibration, o.calibration_data);
  const std::string pt = o.out + ".fp32.tmp";
  RemoveOnExit remove_pt{pt};
  root.save(pt, extra);
  const auto fail = [&](const std::string& why) {
    TLTRAIN_FAIL(ErrorKind::Runtime, "'" + o.out + "' not written: the int8 file " + why +
                                         " when loaded back: a bug in scripts/quantize_int8.py; the fp32 file (no --quantize) is exact");
  };
  write_atomically(o.out, [&](const std::string& unchecked) {
    summary.quantization = quantize_int8(pt, calibration, unchecked, o.checkpoint);
    int64_t classes = 0;
    torch::Tensor got;
    try {
      auto mf = checkpoint::load_model_file(unchecked);
      classes = static_cast<int64_t>(mf.info.classes.size());
      got = mf.logits(x);
      summary.metadata = mf.info.raw;
    } catch (const std::exception& e) {  // tltrain's errors and torch's (c10::Error)
      fail(std::string("does not run (") + e.what() + ")");
    }
    if (got.dim() != 2 || got.size(0) != x.size(0) || got.size(1) != classes || !torch::isfinite(got).all().item<bool>())
      fail("does not give finite " + std::to_string(classes) + "-class logits");
  });
  return summary;
}

/// Every option against the others, before the checkpoint is read.
void check_options(const ExportOptions& o) {
  TLTRAIN_CHECK(!o.out.empty(), ErrorKind::Usage, "--out is required");
  TLTRAIN_CHECK(o.format != config::ModelFormat::Onnx || o.precision == config::Precision::Fp32, ErrorKind::Usage,
                "--format onnx writes fp32 weights: drop --precision " + config::name_of(o.precision) +
                    " (ONNX runtimes convert to half precision themselves)");
  TLTRAIN_CHECK(o.quantize == config::Quantize::None || (o.format == config::ModelFormat::TorchScript && o.precision == config::Precision::Fp32),
                ErrorKind::Usage, "--quantize int8 quantizes the fp32 TorchScript model: drop --precision and --format");
  TLTRAIN_CHECK(o.quantize != config::Quantize::None || o.calibration_data.empty(), ErrorKind::Usage,
                "--calibration-data calibrates int8 ranges: add --quantize int8, or drop it");
  TLTRAIN_CHECK(o.calibration_data.empty() || std::filesystem::exists(o.calibration_data), ErrorKind::Data,
                "--calibration-data '" + o.calibration_data + "' does not exist: give a folder or CSV of images like the training data");
}

}  // namespace

ExportSummary export_model(const ExportOptions& o) {
  check_options(o);
  auto ck = checkpoint::load(o.checkpoint, torch::kCPU);
  const config::RunConfig& cfg = ck.config;
  const std::vector<std::string>& classes = ck.classes;
  auto m = checkpoint::classifier_from(ck, torch::kCPU);
  m.set_training(false, config::BatchNormPolicy::Frozen);
  const data::Preprocess pre = data::resolve_preprocess(cfg.data, m.meta().image_spec());

  // The trained backbone goes in unchanged as a submodule; the head becomes plain parameters and
  // script, so the file needs nothing of tltrain to run.
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module head(c10::QualifiedName("__torch__.tltrain.export.Head"), cu, true);
  auto& dense = m.head()->dense;
  for (size_t i = 0; i < dense->size(); ++i) {
    auto lin = dense[i]->as<torch::nn::Linear>();
    head.register_parameter("dense" + std::to_string(i) + "_weight", lin->weight.detach().clone(), false);
    head.register_parameter("dense" + std::to_string(i) + "_bias", lin->bias.detach().clone(), false);
  }
  head.register_attribute("training", c10::BoolType::get(), false);
  head.define(head_source(m.head()->cfg, dense->size()));

  torch::jit::Module root(c10::QualifiedName("__torch__.tltrain.export.TltrainModel"), cu, true);
  torch::jit::Module backbone = m.backbone_module();
  backbone.eval();
  root.register_module("backbone", backbone);
  root.register_module("head", head);
  root.register_attribute("training", c10::BoolType::get(), false);
  // Attributes so Python users can read m.classes, m.input_size, ... without the extra file.
  c10::List<std::string> cls;
  for (const auto& c : classes) cls.push_back(c);
  root.register_attribute("classes", c10::ListType::ofStrings(), cls);
  root.register_attribute("input_size", c10::ListType::ofInts(), c10::List<int64_t>({pre.height, pre.width}));
  root.register_attribute("resize", c10::IntType::get(), pre.resize);
  root.register_attribute("mean", c10::ListType::ofFloats(), c10::List<double>({pre.mean[0], pre.mean[1], pre.mean[2]}));
  root.register_attribute("std", c10::ListType::ofFloats(), c10::List<double>({pre.std[0], pre.std[1], pre.std[2]}));
  root.register_attribute("color_order", c10::StringType::get(), std::string(pre.bgr ? "BGR" : "RGB"));
  root.register_attribute("pixel_scale", c10::FloatType::get(), static_cast<double>(pre.pixel_scale));
  root.register_attribute("interpolation", c10::StringType::get(), config::name_of(pre.interpolation));
  root.register_attribute("arch", c10::StringType::get(), m.meta().arch);
  // A multi-label head's classes are independent: a sigmoid each, not one softmax over them.
  const bool multilabel = m.head()->cfg.output == config::HeadOutput::MultiLabel;
  // A half-precision file takes and returns float32, so predict, serve and users' code need not know.
  // TorchScript takes a dtype as its ScalarType number (the C++ frontend cannot resolve torch.bfloat16 here).
  const auto to = [](at::ScalarType t) { return ".to(" + std::to_string(static_cast<int>(t)) + ")"; };
  const std::string cast = o.precision == config::Precision::Bf16   ? to(at::kBFloat16)
                           : o.precision == config::Precision::Fp16 ? to(at::kHalf)
                                                                    : "";
  const std::string body = "self.head.forward(self.backbone.forward(x" + cast + "))" + (cast.empty() ? "" : ".float()");
  root.define("def forward(self, x):\n    return " + body + "\n\ndef predict_proba(self, x):\n" +
              (multilabel ? "    return torch.sigmoid(self.forward(x))\n" : "    return torch.softmax(self.forward(x), 1)\n"));

  config::json bb = m.meta().raw;
  bb.erase("blocks");  // training-only detail
  config::json meta = {{"format", checkpoint::kModelFormat},
                       {"format_version", 1},
                       {"classes", classes},
                       {"preprocess", checkpoint::preprocess_to_json(pre)},
                       {"backbone", bb},
                       {"head", {{"pooling", config::name_of(m.head()->cfg.pooling)},
                                 {"hidden", m.head()->cfg.hidden},
                                 {"activation", config::name_of(m.head()->cfg.activation)},
                                 {"output", config::name_of(m.head()->cfg.output)},
                                 {"threshold", m.head()->cfg.threshold}}},
                       {"training", training_summary(ck.info)},
                       {"outputs", std::string("forward(x) -> logits N×C; predict_proba(x) -> ") +
                                       (multilabel ? "sigmoid N×C (each class on its own)" : "softmax N×C") +
                                       "; x is N×3×H×W float32 preprocessed as 'preprocess' says"},
                       {"source_checkpoint", o.checkpoint},
                       {"exported_at", now_iso()},
                       {"torch_version", TORCH_VERSION},
                       {"precision", config::name_of(o.precision)}};
  root.register_attribute("metadata_json", c10::StringType::get(), meta.dump());

  // Self-check before writing: the file must compute what the checkpoint computes.
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  auto x = torch::randn({2, 3, pre.height, pre.width});
  const auto want = m.forward(x);
  TLTRAIN_CHECK(torch::isfinite(want).all().item<bool>(), ErrorKind::Data,
                "'" + o.checkpoint + "' gives infinite or NaN logits for a random batch: its weights have diverged; export a checkpoint "
                "from before that (best.pt, or an earlier run with a lower learning rate)");
  const Check check = check_file(root, x, want, o);
  meta["self_check"] = check.ran ? config::json(check.diff) : config::json("not run: fp16 needs CUDA");
  root.setattr("metadata_json", meta.dump());

  torch::jit::ExtraFilesMap extra{{checkpoint::kModelFileName, meta.dump(2)}};
  if (o.format == config::ModelFormat::Onnx) return export_onnx(o, root, extra, x, {o.out, meta, check.diff, check.ran});
  if (o.quantize == config::Quantize::Int8) return export_int8(o, root, extra, cfg, pre, x, {o.out, meta, check.diff, check.ran});
  write_atomically(o.out, [&](const std::string& tmp) { root.save(tmp, extra); });
  return {o.out, meta, check.diff, check.ran};
}

std::string export_report(const ExportOptions& o, const ExportSummary& s) {
  const auto& m = s.metadata;
  std::ostringstream r;
  r << "wrote " << s.out << ": " << m.at("backbone").value("arch", "?") << " + head, " << m.at("classes").size() << " classes, input "
    << m.at("preprocess").at("input_size").dump() << " " << m.at("preprocess").at("color_order").get<std::string>() << ", "
    << m.value("precision", "fp32") << " weights"
    << (s.checked ? " (self-check max |diff| " + std::to_string(s.check_max_abs_diff) + ")" : " (self-check not run: fp16 needs CUDA)") << "\n";
  if (o.quantize == config::Quantize::Int8) {
    const auto& q = s.quantization;
    const double agreement = q.value("top1_agreement", 0.0);
    r << "int8 (" << q.value("backend", "?") << " engine) calibrated on " << q.value("calibration", 0) << " images: "
      << q.value("bytes", 0) / 1024 << " KiB (fp32 " << q.value("fp32_bytes", 0) / 1024 << " KiB), top-1 agreement with fp32 "
      << agreement << " on the calibration images\n";
    if (agreement < kInt8AgreementWarning)
      r << "warning: int8 decides " << static_cast<int>(std::lround((1 - agreement) * 100)) << "% of the calibration images differently "
        << "from fp32: compare both files' accuracy on your validation images (tltrain predict --model) before shipping it, "
        << "calibrate on more images (--calibration), or ship the fp32 file\n";
  }
  if (o.format == config::ModelFormat::Onnx)
    r << "ONNX opset " << s.onnx_opset << ", batch axis dynamic; OpenCV DNN matches the TorchScript logits (max |diff| " << s.onnx_max_abs_diff
      << "); classes and preprocessing in metadata_props[\"tltrain_model\"]\n";
  else
    r << "load it with torch.jit.load(\"" << s.out << "\"): forward(x) -> logits, predict_proba(x) -> probabilities, m.classes\n";
  return r.str();
}

}  // namespace tltrain::ship
