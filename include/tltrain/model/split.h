#pragma once
// A backbone cut at a block boundary, for stages that train only its top blocks: the frozen
// bottom can then run as an inference-optimized copy while the top keeps the backbone's own,
// trainable modules.
#include <torch/script.h>

#include <optional>
#include <string>
#include <vector>

#include "tltrain/model/backbone.h"
#include "tltrain/model/backbone_meta.h"

namespace tltrain::model {

struct SplitBackbone {
  torch::jit::Module bottom;  ///< blocks [0, cut): the backbone's modules, shared
  torch::jit::Module top;     ///< blocks [cut, N): the backbone's modules, shared
};

/// BACKBONE cut before block CUT (0 < CUT < number of blocks). Works when the forward applies the
/// top-level submodules one after another (torch.nn.Sequential containers opened up), as every
/// exporter architecture and the tiny test backbone do; top(bottom(x)) is checked against
/// forward(x) on a random INPUT_SHAPE batch with every module in inference mode (training flags
/// are restored afterwards). nullopt, with the reason in *WHY, when the backbone is not such a chain.
std::optional<SplitBackbone> split_backbone(torch::jit::Module& backbone, const BackboneMeta& meta, size_t cut,
                                            const std::vector<int64_t>& input_shape, std::string* why = nullptr);

/// BACKBONE ending after its block LAST (model.features_from): the head then sits on that block's
/// output. The module keeps the backbone's own submodules under their own names, so checkpoints
/// and freezing by name work as on the whole backbone; the metadata keeps the blocks and layers up
/// to LAST and records the cut's feature map at the input size and "features_from". A Usage error
/// naming SOURCE when LAST is no block (with a did-you-mean) or the backbone cannot be cut there.
Backbone truncate_backbone(Backbone backbone, const std::string& last, const std::string& source);

}  // namespace tltrain::model
