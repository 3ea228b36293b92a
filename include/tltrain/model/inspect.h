#pragma once
// `tltrain inspect`: what is inside a backbone and what each unfreeze setting would train.
#include <string>

#include "tltrain/config/json_reader.h"
#include "tltrain/model/backbone_meta.h"

namespace tltrain::model {

/// Loads the backbone at PATH (checking it fully) and describes it: metadata, blocks in forward
/// order with their cut points, and the cut of each --unfreeze fraction 0.1 … 1.0.
config::json inspect_backbone(const std::string& path);

/// The same description from metadata alone.
config::json describe_backbone(const BackboneMeta& meta, const std::string& path);

/// The human-readable table of an inspect report: blocks and cut points, or with WITH_LAYERS
/// every layer and the settings that train it.
std::string format_inspect(const config::json& report, bool with_layers = false);

}  // namespace tltrain::model
