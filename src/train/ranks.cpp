// train::fit on the ranks the environment describes.
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/dist/context.h"
#include "tltrain/model/classifier.h"
#include "tltrain/train/trainer.h"

namespace tltrain::train {

std::unique_ptr<dist::ProcessGroup> start_process_group(const dist::DistContext& ctx, double dist_timeout,
                                                        const torch::Device& device) {
  TLTRAIN_CHECK(dist::gloo_available(), ErrorKind::Usage,
                "world size " + std::to_string(ctx.world) + " (" + ctx.source +
                    " environment) needs c10d Gloo, which this build lacks: install libgloo-dev and rebuild");
  dist::GroupOptions o;
  o.timeout = dist::timeout_from_env(dist_timeout);
  o.backend = dist::choose_backend(device.is_cuda());
  o.cuda_device = device.is_cuda() ? device.index() : 0;
  return dist::init_process_group(ctx, o);
}

FitResult fit_on_ranks(const config::RunConfig& cfg, FitOptions fo, double dist_timeout) {
  const dist::DistContext ctx = dist::context_from_env();
  log::set_rank(ctx.rank);
  std::unique_ptr<dist::ProcessGroup> group;
  if (ctx.distributed()) group = start_process_group(ctx, dist_timeout, model::resolve_device(cfg.device, ctx.local_rank));
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
