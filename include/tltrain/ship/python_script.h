#pragma once
// The Python half of shipping: LibTorch's C++ API has neither an ONNX exporter nor eager-mode
// quantisation, so `tltrain export` runs scripts/export_onnx.py and scripts/quantize_int8.py under
// Debian's Python torch. Each script prints a one-line JSON summary last and exits 0 (done),
// 2 (bad input: the message names it), 3 (torch or a module missing), 4 (a request the script
// refuses, e.g. an architecture it cannot quantize) or 5 (the script's own work failed: a bug, or
// a defect of that torch). No torch here.
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"

namespace tltrain::ship {

/// TLTRAIN_PYTHON, default /usr/bin/python3 (Debian's, which has torch).
std::string script_python();
/// TLTRAIN_SCRIPTS_DIR/NAME, default the checkout's scripts/ folder (compiled in).
std::string script_path(const std::string& name);

struct ScriptResult {
  std::string output;    ///< what the script printed, stdout and stderr together
  config::json summary;  ///< its last line, parsed
};

/// Runs script NAME with ARGS for WHAT ("ONNX export"), whose interpreter needs the Debian
/// PACKAGES ("python3-torch python3-onnx"). Usage error when the interpreter or script is missing
/// (naming PACKAGES or the fix), or the script exits 3 or 4 (its message); Data error for exit 2;
/// Runtime for 5, anything else or no summary line.
ScriptResult run_script(const std::string& name, const std::vector<std::string>& args, const std::string& what,
                        const std::string& packages);

}  // namespace tltrain::ship
