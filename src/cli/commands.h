#pragma once
// One setup_X(CLI::App&) per subcommand, each in its own file; the callback only turns
// options into a library call.
#include <CLI/CLI.hpp>

#include <string>

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

}  // namespace tltrain::cli
