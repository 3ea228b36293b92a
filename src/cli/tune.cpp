// tltrain tune --config X --budget 30m [--trials N] [--metric M] [--fit] [--set k=v ...] | tltrain tune --resume DIR
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_tune(CLI::App& app) {
  auto o = std::make_shared<app::TuneRequest>();
  auto budget = std::make_shared<std::string>("30m");
  auto* sub = app.add_subcommand("tune", "Search the transfer recipe (head rate and epochs, unfreeze depth, fine-tune rate and optimizer, "
                                         "backbone multiplier, label smoothing, augmentation) by successive halving within a time budget");
  auto* config = sub->add_option("-c,--config", o->config, "Run config (JSON, comments allowed): the centre of the search");
  sub->add_option("--budget", *budget, "Wall-clock budget, all sessions of the search together: no trial starts after it (90s, 30m, 1.5h; default 30m)");
  std::vector<CLI::Option*> search;  // what --resume takes from the search itself
  search.push_back(config);
  search.push_back(sub->add_option("--trials", o->options.trials, "Candidates at the first rung, the config itself among them (default 9)")->check(CLI::Range(1, 10000)));
  search.push_back(add_name_option(*sub, "--metric", o->options.metric, "What the holdout judges: val_accuracy (default) or val_loss"));
  search.push_back(sub->add_option("--holdout", o->options.holdout, "Share of the training images the search validates on (default 0.2)"));
  search.push_back(sub->add_option("--eta", o->options.eta, "Successive halving keeps the best 1/eta per rung (default 3)")->check(CLI::Range(2, 100)));
  search.push_back(sub->add_flag("!--no-lr-find", o->options.lr_find, "Centre the head's rates on the config's rate, not on a range test's valley"));
  sub->add_flag("--fit", o->fit, "Then train the best recipe on all the training data and report it on the validation set");
  search.push_back(sub->add_option("--set", o->overrides, "Override a config value, as in fit (repeatable)"));
  auto* resume = sub->add_option("--resume", o->resume, "Continue the search in DIR (OUTPUT_DIR/tune) where it stopped (with its own options)");
  for (auto* opt : search) resume->excludes(opt);
  sub->callback([o, budget, sub] {
    if (o->resume.empty() && o->config.empty()) throw CLI::RequiredError("--config or --resume");
    o->options.budget_s = train::parse_duration(*budget);
    if (sub->count("--budget") > 0) o->budget_s = o->options.budget_s;  // --resume keeps the search's own otherwise
    app::tune(*o, std::cout);
  });
}

}  // namespace tltrain::cli
