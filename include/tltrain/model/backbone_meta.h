#pragma once
// What a backbone file says about itself (docs/backbone-format.md). No torch here: inspect,
// dry-run and the planner need only this.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/data/preprocess.h"

namespace tltrain::model {

/// A unit that freezing works on; owns every parameter whose name starts with "name.".
struct BlockInfo {
  std::string name;
  int64_t params = 0;      ///< parameter elements
  int64_t batchnorms = 0;  ///< BatchNorm modules inside
  std::vector<int64_t> output_shape;  ///< per image, at the metadata's input size; empty: not recorded
};

/// A layer as a Keras user counts them: every module that has no children or owns a parameter
/// or buffer itself, in forward order (docs/backbones.md says where counts differ from Keras').
/// Freezing by layers (trainable {"layers": N}, {"freeze_first": N}, {"from": sub-module}) works on these.
struct LayerInfo {
  std::string name;
  std::string type;        ///< module class, e.g. "Conv2d"
  int64_t params = 0;      ///< elements of the parameters it owns itself
  bool batchnorm = false;
  std::vector<int64_t> output_shape;  ///< per image, at the metadata's input size; empty: not recorded
  int block = -1;          ///< index of the block it belongs to; -1 for a parameter-free layer between blocks
};

struct BackboneMeta {
  std::string arch;
  std::array<int64_t, 2> input_size{224, 224};  ///< [height, width]
  int64_t resize = 256;                         ///< eval: shorter side before center crop
  std::array<double, 3> mean{0.485, 0.456, 0.406};
  std::array<double, 3> std{0.229, 0.224, 0.225};
  std::string color_order = "RGB";
  double pixel_range = 1.0;
  config::Interpolation interpolation = config::Interpolation::Bilinear;  ///< eval resize filter
  int64_t feature_channels = 0;
  std::array<int64_t, 2> feature_size{0, 0};
  std::vector<BlockInfo> blocks;
  /// From the metadata's "layers" when the exporter wrote them; otherwise derived from the
  /// module when the backbone is loaded (no output shapes then), or one per block from metadata alone.
  std::vector<LayerInfo> layers;
  std::string weights_source, weights_file, weights_sha256;
  std::string torch_version, torchvision_version, exported_at, exporter;
  config::json raw;  ///< the metadata as stored

  int64_t total_params() const;
  int64_t total_batchnorms() const;
  /// What the backbone expects of its input, for the data pipeline.
  data::ImageSpec image_spec() const;
};

/// Index of the layer owning parameter/buffer NAME (the layer named NAME minus its last part), or -1.
int layer_of(const std::vector<LayerInfo>& layers, const std::string& name);

/// Index of the block owning parameter/buffer NAME ("features.3.conv.0.weight" → features.3), or -1.
int block_of(const std::vector<BlockInfo>& blocks, const std::string& name);

constexpr const char* kMetaFileName = "tltrain_meta.json";

/// Validates metadata text read from FILE; a Data error naming FILE and the fix otherwise.
BackboneMeta parse_backbone_meta(const std::string& text, const std::string& file);

/// Loads the backbone file at PATH with every check of load_backbone and returns its metadata.
BackboneMeta read_backbone_meta(const std::string& path);

/// read_backbone_meta(PATH).image_spec(): what the data commands need of a backbone file.
data::ImageSpec read_image_spec(const std::string& path);

}  // namespace tltrain::model
