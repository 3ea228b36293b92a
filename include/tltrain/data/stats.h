#pragma once
// data.normalization "dataset": per-channel mean and standard deviation of the training images,
// as Keras' ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True).fit(x).
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/preprocess.h"

namespace tltrain::data {

/// Mean and standard deviation per RGB channel, on 0..1 pixels, over every pixel of SAMPLES as
/// evaluation sees them (resize and centre crop to CFG's input size, no augmentation). Images that
/// do not decode are left out; a Data error when none does. Summed in double in a fixed order:
/// the same numbers for any THREADS.
config::NormalizationStats dataset_stats(const std::vector<Sample>& samples, const config::DataConfig& cfg, const ImageSpec& spec,
                                         int64_t threads);

/// CFG itself, or for normalization "dataset" without statistics CFG with them computed from the
/// training SAMPLES and recorded in its resolved JSON (so config.json and checkpoints carry them
/// and eval, export, predict and a resumed run normalise alike). Logs the figures.
config::RunConfig with_dataset_stats(const config::RunConfig& cfg, const std::vector<Sample>& samples, const ImageSpec& spec,
                                     int64_t threads);

}  // namespace tltrain::data
