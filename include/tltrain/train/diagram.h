#pragma once
// A picture of the model (Keras plot_model, but showing the freeze plan): the backbone's blocks
// with their output shapes, the head, and per stage which blocks are frozen and which train, as
// Graphviz dot, rendered to SVG by Graphviz's `dot` when it is installed.
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/model/backbone_meta.h"
#include "tltrain/train/plan.h"

namespace tltrain::train {

struct DiagramSpec {
  std::string title;
  const model::BackboneMeta* meta = nullptr;
  bool has_head = false;         ///< a checkpoint or run: the head below the backbone
  config::HeadConfig head;
  int64_t head_in = 0, classes = 0;
  std::vector<StagePlan> plan;   ///< one column per stage; empty: a bare backbone
};

/// The diagram as Graphviz dot text: input → blocks (name, output shape, parameters; per stage a
/// cell "frozen", "trains" or "part") → pooling → Dense layers → output.
std::string diagram_dot(const DiagramSpec& spec);

/// Writes DOT to PATH: rendered by `dot -Tsvg` when PATH ends in .svg and Graphviz is on PATH,
/// otherwise the dot text itself to PATH with its extension changed to .dot. Returns the file
/// written (a Runtime error when dot fails on it).
std::string write_diagram(const std::string& dot, const std::string& path);

/// What the Run's callback and inspect draw for a run: CFG's plan over META with the head.
DiagramSpec run_diagram(const config::RunConfig& cfg, const model::BackboneMeta& meta, int64_t head_in, int64_t classes);

}  // namespace tltrain::train
