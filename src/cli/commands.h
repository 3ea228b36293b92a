#pragma once
// One setup_X(CLI::App&) per subcommand, each in its own file; the callback only turns
// options into a library call.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace tltrain::cli {

void setup_inspect(CLI::App& app);
void setup_fit(CLI::App& app);
void setup_finetune(CLI::App& app);
void setup_eval(CLI::App& app);
void setup_data(CLI::App& app);
void setup_bench(CLI::App& app);
void setup_export(CLI::App& app);
void setup_predict(CLI::App& app);
void setup_serve(CLI::App& app);
void setup_report(CLI::App& app);

void setup_launch(CLI::App& app);

/// -c/--config (required, an existing file) and the repeatable --set, as data and bench take them.
inline void add_config_options(CLI::App& sub, std::string& config, std::vector<std::string>& overrides) {
  sub.add_option("-c,--config", config, "Run config (JSON, comments allowed)")->required()->check(CLI::ExistingFile);
  sub.add_option("--set", overrides, "Override a config value: --set data.val=path (repeatable)");
}

}  // namespace tltrain::cli
