#pragma once
// Which backbone blocks a stage trains. The single place that turns --unfreeze 0.2,
// --unfreeze-blocks N, --unfreeze-from NAME (or a stage's "trainable") into a cut point;
// inspect, dry-run and the trainer all call it.
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/model/backbone_meta.h"

namespace tltrain::model {

/// Index of the first trainable block: blocks [cut, N) train, [0, cut) stay frozen.
/// cut == N means head only, cut == 0 the whole backbone.
/// A fraction f unfreezes ceil(f * N) blocks: the top share, at least one block for any f > 0.
/// Throws a Usage error for a block name that does not exist (with a did-you-mean) or too many blocks.
size_t resolve_cut(const std::vector<BlockInfo>& blocks, const config::TrainableSpec& spec);

/// Parameter elements in blocks [cut, N).
int64_t trainable_params(const std::vector<BlockInfo>& blocks, size_t cut);

}  // namespace tltrain::model
