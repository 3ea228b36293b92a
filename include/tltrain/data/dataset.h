#pragma once
// Which images a run sees: folder or CSV sources → sorted class names + (path, label) samples,
// with the held-out validation split. No decoding here.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tltrain/config/run_config.h"

namespace tltrain::data {

struct Sample {
  std::string path;
  int64_t label = 0;            ///< the class; multi-label: the first of LABELS, -1 when it has none
  std::vector<int64_t> labels;  ///< multi-label sets only: every class of the image, ascending
};

/// A file that failed to decode, with the reason; skipped under on_bad_image: skip.
struct BadImage {
  std::string path, reason;
};

/// Files a scan left out, by reason ("not an image type: .gif" → [paths]).
struct SkipReport {
  std::map<std::string, std::vector<std::string>> by_reason;
  size_t count() const;
};

struct Dataset {
  std::string source;                ///< folder or CSV it came from
  std::vector<std::string> classes;  ///< sorted; label i is classes[i]
  std::vector<Sample> samples;       ///< sorted by (label, path): independent of directory order
  SkipReport skipped;
  bool multi_label = false;          ///< a CSV whose rows carry several labels or one 0/1 column per class
  std::vector<int64_t> class_counts() const;  ///< images per class (multi-label: images having it)
};

struct Datasets {
  Dataset train;
  Dataset val;        ///< empty samples when there is no validation data
  bool has_val = false;
  bool val_is_split = false;  ///< val was held out of train by validation_split
};

/// The classes and the held-out validation files, to save with a run so that it can be
/// reproduced and audited ({"classes": [...], "train_source": ..., "val_source": ..., "val_files": [...]}).
config::json split_to_json(const Datasets& d);

/// True for the accepted image extensions: jpg jpeg png bmp webp tif tiff, any case.
bool is_image_extension(const std::string& path);

/// The image files under DIR, recursively and sorted. Symlinked files and folders are followed
/// once (a folder is entered once, by device + inode, so link loops end); everything else met on
/// the way (other file types, loops, dangling links, unreadable folders) goes to SKIPPED with its
/// reason. Never throws on the filesystem.
std::vector<std::string> list_images(const std::string& dir, SkipReport& skipped);

/// Scans a class-subfolder root or a CSV list file (paths relative to the CSV's folder): rows
/// "path,label", where "cat;dog" gives an image several labels, or a header "path,cat,dog,..." and
/// one 0/1 column per class. Data error when it does not exist, has no classes or no images, or a
/// row is malformed (naming the file, line and value).
Dataset scan_source(const std::string& source);

/// Train and validation sets per the config: separate roots (same classes required — the error
/// lists the difference), or a stratified split of train seeded by SEED.
Datasets load_datasets(const config::DataConfig& cfg, uint64_t seed);

/// Deterministic stratified split: from each class, round(n * fraction) samples (at least one when
/// the class has two or more) go to the second set; the choice depends only on SEED and the paths.
std::pair<std::vector<Sample>, std::vector<Sample>> stratified_split(const std::vector<Sample>& samples, size_t num_classes,
                                                                     double fraction, uint64_t seed);

/// K stratified folds for cross-validation: the fold in [0, K) of each of SAMPLES, for repeat
/// REPEAT. Each class's images (multi-label: by their first class), in path order, are shuffled
/// from (SEED, REPEAT, class) and dealt to the folds in turn, each class going on where the one
/// before stopped, so fold sizes differ by at most one and each class's counts by at most one.
/// Usage error when K < 2 or K exceeds the number of images.
std::vector<int64_t> stratified_folds(const std::vector<Sample>& samples, size_t num_classes, int64_t k, uint64_t seed,
                                      int64_t repeat);

/// What `tltrain cv` folds: the training set and a separate validation set merged (sorted by
/// (label, path)); a validation_split's held-out images are the training set's own anyway.
Dataset merge_for_cv(const Datasets& d);

/// Fold F of ALL under FOLDS (stratified_folds): the other folds train, fold F validates.
Datasets fold_datasets(const Dataset& all, const std::vector<int64_t>& folds, int64_t f);

}  // namespace tltrain::data
