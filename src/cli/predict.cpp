// tltrain predict --model model.pt IMAGE|DIR ... [--topk 5] [--format table|json|csv]
#include <iostream>

#include "commands.h"
#include "tltrain/core/log.h"
#include "tltrain/ship/predict.h"

namespace tltrain::cli {

namespace {
struct PredictCliOptions {
  ship::PredictOptions predict;
  std::string format = "table";
};

void run_predict(const PredictCliOptions& o) {
  auto rows = ship::predict_images(o.predict);
  std::cout << ship::format_predictions(rows, o.format);
  size_t bad = 0;
  for (const auto& r : rows) bad += !r.error.empty();
  if (bad) std::cerr << "warning: " << bad << " of " << rows.size() << " files could not be used (see their error rows)\n";
}
}  // namespace

void setup_predict(CLI::App& app) {
  auto o = std::make_shared<PredictCliOptions>();
  auto* sub = app.add_subcommand("predict", "Classify image files and folders with an exported model");
  sub->add_option("--model", o->predict.model, "Model file from `tltrain export` (TorchScript, or ONNX run by OpenCV DNN)")->required()->check(CLI::ExistingFile);
  sub->add_option("inputs", o->predict.inputs, "Image files and folders (searched recursively)")->required();
  sub->add_option("--topk", o->predict.topk, "Classes per image (default 5)")->check(CLI::PositiveNumber);
  sub->add_option("--format", o->format, "table|json|csv")->check(CLI::IsMember({"table", "json", "csv"}));
  sub->add_option("--batch-size", o->predict.batch_size, "Images per batch (default 32)")->check(CLI::PositiveNumber);
  sub->add_option("--threads", o->predict.threads, "Decode threads (default: one per core)");
  sub->add_flag("!--no-optimize", o->predict.optimize, "Run the file as saved, without freezing and oneDNN folding (slower; exact logits)");
  sub->callback([o] { run_predict(*o); });
}

}  // namespace tltrain::cli
