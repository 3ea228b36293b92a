#include "tltrain/ship/onnx.h"

#include "tltrain/core/error.h"
#include "tltrain/ship/python_script.h"

namespace tltrain::ship {

OnnxExport convert_to_onnx(const std::string& model_pt, const std::string& out, const std::string& source_name, int opset) {
  auto r = run_script("export_onnx.py",
                      {"--model", model_pt, "--out", out, "--opset", std::to_string(opset), "--source-name", source_name},
                      "ONNX export", "python3-torch python3-onnx");
  OnnxExport e;
  try {
    const auto& j = r.summary;
    e.out = j.at("out").get<std::string>();
    e.opset = j.at("opset").get<int>();
    e.bytes = j.at("bytes").get<int64_t>();
    e.ops = j.at("ops").get<std::vector<std::string>>();
  } catch (const config::json::exception& x) {
    TLTRAIN_FAIL(ErrorKind::Runtime, "export_onnx.py's summary lacks a key (" + std::string(x.what()) + "): " + r.output);
  }
  return e;
}

}  // namespace tltrain::ship
