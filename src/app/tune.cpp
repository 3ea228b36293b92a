#include <cstdio>
#include <ostream>

#include "tltrain/app/commands.h"
#include "fit_summary.h"
#include "tltrain/config/run_config.h"
#include "tltrain/core/log.h"
#include "tltrain/eval/report.h"
#include "tltrain/train/trainer.h"
#include "tltrain/train/tune.h"

namespace tltrain::app {

namespace {

std::string g(double v, const char* f = "%.3g") {
  char buf[32];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

/// The search's ranking and what it wrote.
void print_search(const train::TuneResult& r, std::ostream& out) {
  const auto& s = r.summary;
  const std::string metric = s.at("options").at("metric").get<std::string>();
  out << "tune: " << s.at("results").size() << " results in " << g(s.value("seconds", 0.0) / 60, "%.1f") << " min (" << s.at("status").get<std::string>()
      << "); " << metric << " on the holdout of the training images\n";
  out << "rank  cand  rung  " << metric << "  head lr  epochs  unfreeze  ft optimizer  ft lr  ft epochs  bb mult  smoothing  augment\n";
  int rank = 0;
  for (const auto& row : eval::tune_ranking(s)) {
    const auto& c = row.at("recipe");
    const bool head_only = c.at("unfreeze").get<double>() == 0;
    out << ++rank << "     " << row.at("candidate") << "     " << row.at("rung") << "     " << g(row.at("value").get<double>(), "%.4f") << "  "
        << g(c.at("head_lr")) << "  " << c.at("head_epochs") << "  "
        << (head_only ? "head only" : c.at("unfreeze").get<double>() < 0 ? "as config" : g(c.at("unfreeze").get<double>()))
        << "  " << (head_only ? "-" : c.at("optimizer").get<std::string>()) << "  " << (head_only ? "-" : g(c.at("finetune_lr")))
        << "  " << (head_only ? "-" : c.at("finetune_epochs").dump()) << "  " << (head_only ? "-" : g(c.at("backbone_lr_mult")))
        << "  " << (head_only ? "-" : g(c.at("label_smoothing"))) << "  " << g(c.at("augment")) << "\n";
  }
  out << "wrote " << r.best_config << " and " << eval::write_tune_report(r.dir) << "\n";
}

}  // namespace

void tune(const TuneRequest& o, std::ostream& out) {
  auto [cfg, options] = o.resume.empty() ? std::make_pair(config::load_run_config(o.config, o.overrides), o.options)
                                         : train::load_tune_dir(o.resume);
  if (!o.resume.empty() && o.budget_s) options.budget_s = *o.budget_s;
  // Under a launch, one trial per rank; the winner's fit then is data-parallel over the same ranks.
  train::tune_on_ranks(cfg, options, [&](const train::TuneResult& r, dist::ProcessGroup* group) {
    if (log::is_output_rank()) print_search(r, out);
    if (!o.fit) {
      if (log::is_output_rank()) out << "train it on all the training data: tltrain fit --config " << r.best_config << "\n";
      return;
    }
    const config::RunConfig best = config::load_run_config(r.best_config);
    train::FitOptions fo;
    fo.group = group;
    const train::FitResult fr = train::fit(best, fo);
    if (log::is_output_rank()) report_fit(fr, best, out);
  });
}

}  // namespace tltrain::app
