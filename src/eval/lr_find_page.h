#pragma once
// Inside the report box: the range test's chart, shared by its own page and the run report.
#include <string>

#include "tltrain/config/json_reader.h"

namespace tltrain::eval {

/// R (lr_find.json) as an SVG chart with id ID and a caption naming the suggestions.
std::string lr_find_figure(const config::json& r, const std::string& id);

/// The "Learning-rate range tests" section for each RUN_DIR/lr_find/*/lr_find.json; "" when none.
std::string lr_find_section(const std::string& run_dir);

}  // namespace tltrain::eval
