#pragma once
// `tltrain features`: a pretrained network as a feature extractor for other tools (an SVM or a
// logistic regression in scikit-learn): the head's pooled backbone features of every training and
// validation image, with labels, class names and paths, as NumPy .npy files and CSV.
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"

namespace tltrain::train {

struct FeaturesOptions {
  std::string config;                  ///< a run config: its backbone (cut at model.features_from), data and pooling
  std::vector<std::string> overrides;  ///< --set, with --config
  std::string checkpoint;              ///< or a checkpoint: its trained backbone and its run's data
  std::string out;                     ///< the folder to write
  config::Device device = config::Device::Auto;
  int64_t threads = 0;                 ///< loader threads; 0: one per core
};

/// Writes OUT/{train,val}_features.npy (float32 N×D, D the head's input: pooled channels, or the
/// flattened map), {train,val}_labels.npy (int64 N; multi-label: uint8 N×C, 1 per class),
/// {train,val}.csv (index,path,label,class), classes.txt and features.json (what made them, the
/// preprocessing, the counts and the images left out because they did not decode). Images are
/// un-augmented, as evaluation sees them. Returns features.json's content.
config::json export_features(const FeaturesOptions& o);

}  // namespace tltrain::train
