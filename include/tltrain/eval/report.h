#pragma once
// The run report: one self-contained HTML page (inline SVG plots, inline JPEG thumbnails, no
// scripts or styles fetched) built from the files a run directory already holds.
#include <string>

#include "tltrain/config/json_reader.h"

namespace tltrain::eval {

/// Reads RUN_DIR/config.json, RUN_DIR/log.jsonl and, when present, RUN_DIR/eval.json, and writes
/// RUN_DIR/report.html atomically: loss/accuracy curves with the stage boundaries, the learning
/// rate, the confusion matrix, the most confident mistakes as thumbnails, and the config.
/// Data error when RUN_DIR is not a run directory or has no finished epoch. Returns the page's path.
std::string write_report(const std::string& run_dir);

/// Writes DIR/lr_find.html from DIR/lr_find.json (train::find_lr): the loss against the rate, the
/// suggested rates marked. The run report also shows every RUN_DIR/lr_find/*/ test. Returns its path.
std::string write_lr_find_page(const std::string& dir);

/// SUMMARY's candidates (tune.json, train::tune), best first: each with the highest rung it
/// reached, its figure there and its recipe. Those that went further rank above those stopped earlier.
config::json tune_ranking(const config::json& summary);

/// Writes DIR/tune_report.html from DIR/tune.json (train::tune): the candidates ranked, and for each
/// dimension of the space the mean figure of each value at the first rung (what mattered). Returns its path.
std::string write_tune_report(const std::string& dir);

/// Reads a finished cv run's DIR/cv.json (train::cross_validate) and writes DIR/cv_report.html:
/// every metric's mean, std and 95% interval over the folds, each fold's best epoch, and the
/// out-of-fold accuracy and confusion matrix. Returns the page's path.
std::string write_cv_report(const std::string& dir);

}  // namespace tltrain::eval
