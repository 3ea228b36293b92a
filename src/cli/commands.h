#pragma once
// One setup_X(CLI::App&) per subcommand, each in its own file; the callback only turns
// options into a library call.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "tltrain/config/names.h"

namespace tltrain::cli {

void setup_inspect(CLI::App& app);
void setup_fit(CLI::App& app);
void setup_finetune(CLI::App& app);
void setup_cv(CLI::App& app);
void setup_lr_find(CLI::App& app);
void setup_tune(CLI::App& app);
void setup_distill(CLI::App& app);
void setup_features(CLI::App& app);
void setup_eval(CLI::App& app);
void setup_data(CLI::App& app);
void setup_bench(CLI::App& app);
void setup_export(CLI::App& app);
void setup_predict(CLI::App& app);
void setup_serve(CLI::App& app);
void setup_report(CLI::App& app);

void setup_launch(CLI::App& app);

/// An option holding a name from E's table (config/names.h): --help lists the table's names and
/// any other value is refused with them.
template <typename E>
CLI::Option* add_name_option(CLI::App& sub, const std::string& flags, E& target, const std::string& help) {
  return sub
      .add_option_function<std::string>(
          flags, [&target](const std::string& name) { target = config::from_name<E>(name); }, help + ": " + config::choices<E>())
      ->check(CLI::IsMember(config::name_list<E>()));
}

/// A string option that must be a name from E's table (passed on as text, e.g. into a config).
template <typename E>
CLI::Option* add_name_string(CLI::App& sub, const std::string& flags, std::string& target, const std::string& help) {
  return sub.add_option(flags, target, help + ": " + config::choices<E>())->check(CLI::IsMember(config::name_list<E>()));
}

/// -c/--config (required, an existing file) and the repeatable --set, as data and bench take them.
inline void add_config_options(CLI::App& sub, std::string& config, std::vector<std::string>& overrides) {
  sub.add_option("-c,--config", config, "Run config (JSON, comments allowed)")->required()->check(CLI::ExistingFile);
  sub.add_option("--set", overrides, "Override a config value: --set data.val=path (repeatable)");
}

}  // namespace tltrain::cli
