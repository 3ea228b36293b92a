// tltrain inspect BACKBONE.pt [--json]
#include <iostream>

#include "commands.h"
#include "tltrain/model/inspect.h"

namespace tltrain::cli {

namespace {
struct InspectOptions {
  std::string backbone;
  bool json = false;
};

void run_inspect(const InspectOptions& o) {
  auto report = model::inspect_backbone(o.backbone);
  if (o.json) std::cout << report.dump(2) << "\n";
  else std::cout << model::format_inspect(report);
}
}  // namespace

void setup_inspect(CLI::App& app) {
  auto opts = std::make_shared<InspectOptions>();
  auto* sub = app.add_subcommand("inspect", "Show a backbone's metadata, blocks and the cut point of each unfreeze setting");
  sub->add_option("backbone", opts->backbone, "Backbone .pt made by scripts/export_backbone.py")->required();
  sub->add_flag("--json", opts->json, "Print the report as JSON");
  sub->callback([opts] { run_inspect(*opts); });
}

}  // namespace tltrain::cli
