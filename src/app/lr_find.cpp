#include <ostream>

#include "tltrain/app/commands.h"
#include "tltrain/config/run_config.h"
#include "tltrain/eval/report.h"
#include "tltrain/train/lr_find.h"

namespace tltrain::app {

void lr_find(const LrFindRequest& o, std::ostream& out) {
  const config::RunConfig cfg = config::load_run_config(o.config, o.overrides);
  const train::LrFindResult r = train::find_lr(cfg, o.options);
  const std::string page = eval::write_lr_find_page(r.dir);
  const auto& s = r.suggestion;
  const std::string stage = "stages[" + std::to_string(o.options.stage) + "]";
  out << "lr-find " << stage << " '" << cfg.stages[o.options.stage].name << "': " << r.lrs.size() << " steps"
      << (r.diverged ? ", stopped where the loss diverged at lr " + std::to_string(r.lrs.back()) : "") << "\n"
      << "suggested learning rates: valley " << s.valley << " (fastai's default), steep " << s.steep << ", minimum/10 " << s.minimum << "\n"
      << "use one: tltrain fit --config " << o.config << " --set " << stage << ".optimizer.lr=" << s.valley << "\n"
      << "wrote " << r.dir << "/lr_find.json, lr_find.csv and " << page << "\n";
}

}  // namespace tltrain::app
