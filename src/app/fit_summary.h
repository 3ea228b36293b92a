#pragma once
// What `fit` says after training, shared by the commands that end in a fit (fit, tune --fit).
#include <ostream>

#include "tltrain/config/run_config.h"
#include "tltrain/train/trainer.h"

namespace tltrain::app {

/// Rank 0 after training R (of CFG): evaluates its best checkpoint (else the last), writes the
/// report and prints where everything is to OUT.
void report_fit(const train::FitResult& r, const config::RunConfig& cfg, std::ostream& out);

}  // namespace tltrain::app
