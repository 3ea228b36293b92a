// tltrain inspect BACKBONE.pt [--layers] [--json]
#include <iostream>

#include "commands.h"
#include "tltrain/model/inspect.h"

namespace tltrain::cli {

namespace {
struct InspectOptions {
  std::string backbone;
  bool json = false;
  bool layers = false;
};

void run_inspect(const InspectOptions& o) {
  auto report = model::inspect_backbone(o.backbone);
  if (o.json) std::cout << report.dump(2) << "\n";
  else std::cout << model::format_inspect(report, o.layers);
}
}  // namespace

void setup_inspect(CLI::App& app) {
  auto opts = std::make_shared<InspectOptions>();
  auto* sub = app.add_subcommand("inspect", "Show a backbone's metadata, blocks and the cut point of each unfreeze setting");
  sub->add_option("backbone", opts->backbone, "Backbone .pt made by scripts/export_backbone.py")->required();
  sub->add_flag("--layers", opts->layers, "List every layer (as Keras counts them) with its output shape and the settings that train it");
  sub->add_flag("--json", opts->json, "Print the report as JSON (it always holds the layers)");
  sub->callback([opts] { run_inspect(*opts); });
}

}  // namespace tltrain::cli
