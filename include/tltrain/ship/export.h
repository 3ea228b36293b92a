#pragma once
// `tltrain export`: a checkpoint → one standalone TorchScript model file (backbone + head, eval
// mode, logits from forward, probabilities from predict_proba, classes and preprocessing inside).
// No torch here: the CLI includes it.
#include <string>

#include "tltrain/config/json_reader.h"

namespace tltrain::ship {

struct ExportOptions {
  std::string checkpoint;  ///< best.pt / last.pt from `tltrain fit`
  std::string out;         ///< model file to write (atomically)
  double check_tolerance = 1e-4;  ///< max |logits(file) - logits(checkpoint)| / max(1, max |logits|) on a random batch
};

struct ExportSummary {
  std::string out;
  config::json metadata;   ///< what tltrain_model.json holds
  double check_max_abs_diff = 0;  ///< the self-check's difference, relative to the logits' size
};

/// Writes the model file; a Data error for a bad checkpoint, Runtime when the self-check fails.
ExportSummary export_model(const ExportOptions& opts);

}  // namespace tltrain::ship
