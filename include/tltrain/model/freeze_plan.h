#pragma once
// Which part of the backbone a stage trains. The single place that turns --unfreeze 0.2,
// --unfreeze-blocks N, --unfreeze-layers N, --unfreeze-from NAME (or a stage's "trainable") into
// a cut point; inspect, dry-run and the trainer all call it.
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/model/backbone_meta.h"

namespace tltrain::model {

/// Where the trainable part begins. Layers [layer, L) train and [0, layer) stay frozen; BLOCK is
/// the block of layer LAYER, so blocks [0, block) are wholly frozen (and can run as an
/// inference-optimised copy) while block BLOCK may be frozen in part. {N, L} is head only, {0, 0}
/// the whole backbone.
struct Cut {
  size_t block = 0;
  size_t layer = 0;
  bool operator==(const Cut& o) const { return block == o.block && layer == o.layer; }
};

/// The cut at the start of block B: every layer of blocks [B, N) trains.
Cut block_cut(const BackboneMeta& meta, size_t b);

/// A fraction f unfreezes ceil(f * N) blocks: the top share, at least one block for any f > 0.
/// Throws a Usage error for a name that is no block or sub-module (with a did-you-mean) or a
/// count beyond the backbone's blocks or layers.
Cut resolve_cut(const BackboneMeta& meta, const config::TrainableSpec& spec);

/// Parameter elements of layers [cut.layer, L).
int64_t trainable_params(const BackboneMeta& meta, const Cut& cut);

}  // namespace tltrain::model
