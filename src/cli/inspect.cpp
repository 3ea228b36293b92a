// tltrain inspect BACKBONE.pt|CHECKPOINT.pt [--layers] [--json] [--diagram OUT.svg]
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_inspect(CLI::App& app) {
  auto o = std::make_shared<app::InspectRequest>();
  auto* sub = app.add_subcommand("inspect", "Show a backbone's (or checkpoint's) blocks, layers, head and what each setting trains");
  sub->add_option("path", o->path, "Backbone .pt made by scripts/export_backbone.py, or a checkpoint from fit")->required();
  sub->add_flag("--layers", o->layers, "List every layer (as Keras counts them) with its output shape and the settings that train it");
  sub->add_flag("--json", o->json, "Print the report as JSON (it always holds the layers)");
  sub->add_option("--diagram", o->diagram,
                  "Draw the model (blocks, head, each stage's frozen and trained part) to OUT.svg with Graphviz, or OUT.dot without it");
  sub->callback([o] { app::inspect(*o, std::cout); });
}

}  // namespace tltrain::cli
