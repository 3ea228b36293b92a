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
  auto* quantize = add_name_option(*sub, "--quantize", o->quantize, "int8: post-training static quantisation (torchvision's quantisable architectures), a smaller, faster CPU model");
  sub->add_option("--calibration", o->calibration, "--quantize: images to calibrate on, drawn from the run's training data (default 256)")
      ->check(CLI::PositiveNumber)
      ->needs(quantize);
  sub->add_option("--calibration-data", o->calibration_data, "--quantize: calibrate on this folder or CSV of images instead of the run's training data")
      ->needs(quantize);
  sub->callback([o] { std::cout << ship::export_report(*o, ship::export_model(*o)); });
}

}  // namespace tltrain::cli
