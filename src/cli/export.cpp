// tltrain export --checkpoint best.pt --out model.pt
#include <iostream>

#include "commands.h"
#include "tltrain/ship/export.h"

namespace tltrain::cli {

void setup_export(CLI::App& app) {
  auto o = std::make_shared<ship::ExportOptions>();
  auto* sub = app.add_subcommand("export", "Write one standalone TorchScript model (backbone + head, classes and preprocessing inside)");
  sub->add_option("--checkpoint", o->checkpoint, "Checkpoint from fit (best.pt / last.pt)")->required();
  sub->add_option("--out", o->out, "Model file to write, e.g. model.pt")->required();
  add_name_option(*sub, "--precision", o->precision, "Weights' type in the file (bf16/fp16 halve it for GPU serving; input and output stay float32)");
  add_name_option(*sub, "--format", o->format, "File format (onnx: for other runtimes, converted by scripts/export_onnx.py and checked with OpenCV DNN)");
  add_name_option(*sub, "--quantize", o->quantize, "int8: post-training static quantisation (torchvision's quantisable architectures), a smaller, faster CPU model");
  sub->add_option("--calibration", o->calibration, "--quantize: images to calibrate on, drawn from the run's training data (default 256)")->check(CLI::PositiveNumber);
  sub->add_option("--calibration-data", o->calibration_data, "--quantize: calibrate on this folder or CSV of images instead of the run's training data");
  sub->callback([o] {
    auto s = ship::export_model(*o);
    const auto& m = s.metadata;
    std::cout << "wrote " << s.out << ": " << m.at("backbone").value("arch", "?") << " + head, " << m.at("classes").size()
              << " classes, input " << m.at("preprocess").at("input_size").dump() << " " << m.at("preprocess").at("color_order").get<std::string>()
              << ", " << m.value("precision", "fp32") << " weights"
              << (s.checked ? " (self-check max |diff| " + std::to_string(s.check_max_abs_diff) + ")" : " (self-check not run: fp16 needs CUDA)") << "\n";
    if (o->quantize == config::Quantize::Int8) {
      const auto& q = s.quantization;
      std::cout << "int8 (" << q.value("backend", "?") << " engine) calibrated on " << q.value("calibration", 0) << " images: "
                << q.value("bytes", 0) / 1024 << " KiB (fp32 " << q.value("fp32_bytes", 0) / 1024 << " KiB), top-1 agreement with fp32 "
                << q.value("top1_agreement", 0.0) << " on the calibration images\n";
    }
    if (o->format == config::ModelFormat::Onnx)
      std::cout << "ONNX opset " << s.onnx_opset << ", batch axis dynamic; OpenCV DNN matches the TorchScript logits (max |diff| "
                << s.onnx_max_abs_diff << "); classes and preprocessing in metadata_props[\"tltrain_model\"]\n";
    else
      std::cout << "load it with torch.jit.load(\"" << s.out << "\"): forward(x) -> logits, predict_proba(x) -> probabilities, m.classes\n";
  });
}

}  // namespace tltrain::cli
