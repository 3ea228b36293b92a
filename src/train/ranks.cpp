// train::fit on the ranks the environment describes.
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/dist/context.h"
#include "tltrain/train/trainer.h"

namespace tltrain::train {

std::unique_ptr<dist::ProcessGroup> start_process_group(const dist::DistContext& ctx, double dist_timeout) {
  TLTRAIN_CHECK(dist::gloo_available(), ErrorKind::Usage,
                "world size " + std::to_string(ctx.world) + " (" + ctx.source +
                    " environment) needs c10d Gloo, which this build lacks: install libgloo-dev and rebuild");
  return dist::init_process_group(ctx, dist::timeout_from_env(dist_timeout));
}

FitResult fit_on_ranks(const config::RunConfig& cfg, FitOptions fo, double dist_timeout) {
  const dist::DistContext ctx = dist::context_from_env();
  log::set_rank(ctx.rank);
  std::unique_ptr<dist::ProcessGroup> group;
  if (ctx.distributed()) group = start_process_group(ctx, dist_timeout);
  fo.group = group.get();
  try {
    auto r = fit(cfg, fo);
    if (group) group->barrier();  // rank 0 hosts the store: it leaves last
    return r;
  } catch (const std::exception& e) {
    if (group) group->report_failure(e.what());
    throw;
  }
}

}  // namespace tltrain::train
