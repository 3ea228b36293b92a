// tltrain report RUN_DIR
#include <iostream>

#include "commands.h"
#include "tltrain/eval/report.h"

namespace tltrain::cli {

namespace {
void run_report(const std::string& run_dir) { std::cout << "wrote " << eval::write_report(run_dir) << "\n"; }
}  // namespace

void setup_report(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("report", "Write RUN_DIR/report.html: curves, learning rate, confusion matrix, mistakes, config");
  sub->add_option("run_dir", *dir, "Run directory (holds config.json and log.jsonl; eval.json adds the evaluation)")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->callback([dir] { run_report(*dir); });
}

}  // namespace tltrain::cli
