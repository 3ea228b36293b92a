#pragma once
// The run config: one JSON file (comments allowed) → a validated, resolved, immutable RunConfig.
// Defaults live here, on the structs that own them; docs/config.md describes every key.
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "tltrain/config/json_reader.h"
#include "tltrain/config/names.h"

namespace tltrain::config {

/// Which part of the network a stage trains. Mirrors finetune's --unfreeze* options. Blocks are
/// the exporter's freezing units; layers are counted as Keras counts them (model::LayerInfo).
struct TrainableSpec {
  enum class Kind { Head, All, Fraction, Blocks, From, Layers, FreezeFirst };
  Kind kind = Kind::Head;
  double fraction = 0.0;  ///< Fraction: share of the backbone's blocks, counted from the top, in (0, 1]
  int64_t blocks = 0;     ///< Blocks: number of top blocks, >= 0
  std::string from;       ///< From: this block or sub-module and everything after it
  int64_t layers = 0;     ///< Layers: the last N layers train; FreezeFirst: the first N stay frozen
  /// "head only", "all", "top 20% of blocks", "top 3 blocks", "from features.14", "last 50 layers", "all but the first 100 layers"
  std::string describe() const;
  json to_json() const;
};

struct RandomResizedCrop {
  bool enabled = true;
  std::array<double, 2> scale{0.08, 1.0};      ///< area fraction of the source image
  std::array<double, 2> ratio{3.0 / 4.0, 4.0 / 3.0};  ///< aspect ratio range
};

/// Training-time augmentation (Keras ImageDataGenerator + torchvision names). Evaluation never augments.
struct AugmentConfig {
  RandomResizedCrop random_resized_crop;  ///< disabled: resize shorter side + center crop instead
  bool horizontal_flip = true;
  bool vertical_flip = false;
  double rotation_range = 0.0;          ///< degrees, uniform in [-r, r]
  double width_shift_range = 0.0;       ///< fraction of width
  double height_shift_range = 0.0;      ///< fraction of height
  double shear_range = 0.0;             ///< shear angle in degrees, Keras-style
  std::array<double, 2> zoom_range{1.0, 1.0};  ///< scale factor range; a single z means [1-z, 1+z]
  FillMode fill_mode = FillMode::Nearest;
  double fill_value = 0.0;              ///< for fill_mode constant, 0..255
  double brightness = 0.0;              ///< jitter factor in [max(0,1-b), 1+b]
  double contrast = 0.0;
  double saturation = 0.0;
  double hue = 0.0;                     ///< in [0, 0.5], fraction of the hue circle
  /// Keras channel_shift_range: one intensity in [-r, r] (0..255 pixel units) added to every
  /// channel, clipped to the image's own range; drawn from a stream of its own.
  double channel_shift_range = 0.0;
  std::vector<AugmentStep> order{AugmentStep::Crop, AugmentStep::Affine, AugmentStep::Flip, AugmentStep::Color};
  /// Whether training draws anything at random (else every epoch sees the same images).
  bool random() const;
};

/// Per-channel statistics of the training images (RGB, pixels scaled to 0..1), for normalization "dataset".
struct NormalizationStats {
  std::array<double, 3> mean{0, 0, 0}, std{1, 1, 1};
};

struct DataConfig {
  std::string train;              ///< class-subfolder root, or a CSV list file (path,label)
  std::string val;                ///< same; empty = split from train by validation_split
  double validation_split = 0.0;  ///< share of train held out (stratified, seeded); 0 = none
  std::optional<std::array<int64_t, 2>> image_size;  ///< [height, width]; default: the backbone's
  int64_t resize = 0;             ///< eval: shorter side before center crop; 0 = the backbone's
  Interpolation interpolation = Interpolation::Backbone;  ///< eval resize filter; "backbone": its metadata's
  Normalization normalization = Normalization::Backbone;
  /// "dataset": given, or computed by fit from the training images and recorded in the run's config.
  std::optional<NormalizationStats> normalization_stats;
  int64_t batch_size = 32;
  OnBadImage on_bad_image = OnBadImage::Skip;
  int64_t max_pixels = 89478485;  ///< decompression-bomb guard (PIL's default)
  AugmentConfig augment;
};

struct HeadConfig {
  Pooling pooling = Pooling::Avg;
  std::vector<int64_t> hidden;          ///< widths of hidden Dense layers
  Activation activation = Activation::Relu;
  double dropout = 0.0;                 ///< before each Dense layer
  /// softmax: one logit per class; sigmoid: the binary head, one logit z for two classes (Keras
  /// Dense(1, "sigmoid") with binary cross-entropy), given out as the class logits [0, z];
  /// multilabel: one sigmoid per class and binary cross-entropy, an image may have any number of classes.
  HeadOutput output = HeadOutput::Softmax;
  double threshold = 0.5;               ///< sigmoid, multilabel: a class is decided when its probability is above this
};

struct ModelConfig {
  std::string backbone;  ///< TorchScript file made by scripts/export_backbone.py
  /// A block name: the backbone ends after it and the head sits on its output (features from an
  /// inner block, for little data unlike ImageNet). Empty: the whole backbone.
  std::string features_from;
  HeadConfig head;
};

struct OptimizerConfig {
  Optimizer name = Optimizer::Adam;
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.9;       ///< sgd, rmsprop
  bool nesterov = false;       ///< sgd
  std::array<double, 2> betas{0.9, 0.999};  ///< adam, adamw
  double eps = 1e-8;           ///< adam, adamw, rmsprop
  double alpha = 0.99;         ///< rmsprop smoothing
  /// lbfgs: iterations per step; a step is one epoch, over the whole cached training set (full
  /// batch), with the strong-Wolfe line search. Its weight_decay is an L2 term 0.5·wd·|W|² in the
  /// loss (LBFGS has no decay of its own), on the head's weights, not its biases (as sklearn).
  int64_t max_iter = 20;
  int64_t history_size = 100;  ///< lbfgs: remembered updates
};

struct ScheduleConfig {
  Schedule name = Schedule::Constant;
  int64_t warmup_steps = 0;       ///< linear warm-up: step k (0-based) runs at (k+1)/warmup_steps of the rate
  int64_t step_epochs = 10;       ///< step: multiply by gamma every step_epochs epochs
  double gamma = 0.1;             ///< step
  int64_t decay_steps = 1000;     ///< exponential: lr * decay_rate^(step / decay_steps) (Keras ExponentialDecay)
  double decay_rate = 0.9;        ///< exponential
  bool staircase = false;         ///< exponential: integer division of step / decay_steps
  double min_lr = 0.0;            ///< cosine: final learning rate
};

struct EarlyStoppingConfig {
  bool enabled = false;
  Metric monitor = Metric::ValLoss;
  int64_t patience = 3;
  double min_delta = 0.0;
  bool restore_best = true;
};

/// Knowledge distillation (Hinton et al.): the loss A·T²·KL(softmax(t/T) ‖ softmax(s/T)) +
/// (1−A)·CE(s, y) with the logits t of a fixed TEACHER on the same images. The defaults are the
/// Keras tutorial's (temperature 10, its alpha 0.1 on the student loss).
struct DistillConfig {
  std::string teacher;       ///< a tltrain checkpoint or exported model; empty: no distillation
  double temperature = 10.0;
  double alpha = 0.9;        ///< the teacher term's weight
  bool enabled() const { return !teacher.empty(); }
};

struct StageConfig {
  std::string name;                 ///< default "stage<i>"
  int64_t epochs = 1;
  TrainableSpec trainable;
  BatchNormPolicy batch_norm = BatchNormPolicy::Frozen;  ///< frozen: backbone BN stays in inference mode
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  double backbone_lr_mult = 1.0;    ///< backbone lr = lr * mult (discriminative rates)
  double label_smoothing = 0.0;
  /// cross_entropy; hinge: the multi-class linear SVM's loss (Keras categorical_hinge,
  /// Crammer-Singer: max(0, 1 + max_{j != y} z_j - z_y)), softmax head only.
  Loss loss = Loss::CrossEntropy;
  enum class ClassWeights { None, Auto, List };
  ClassWeights class_weights_mode = ClassWeights::None;  ///< null, "auto" (balanced) or a list
  std::vector<double> class_weights;        ///< for "list"
  EarlyStoppingConfig early_stopping;
  /// Head-only stages compute backbone features once and train the head on the cache.
  bool feature_cache = true;        ///< default: on when trainable is "head"
  int64_t cache_views = 0;          ///< 0: un-augmented features; K > 0: K augmented views, pass p uses view p % K
  /// Keras fit with a generator: an epoch is this many batches drawn from an endless stream of
  /// shuffled passes over the training data (0: one pass). Epoch e of the stage takes batches
  /// [e·N, (e+1)·N) of the stream, so a resumed epoch draws exactly what it would have.
  int64_t steps_per_epoch = 0;
  /// Validation measures the first N batches of the (unshuffled) validation set (0: all of it),
  /// the same images every epoch so that epochs stay comparable.
  int64_t validation_steps = 0;
  /// The training forward's compute type (autocast; fp32 master weights): the run's unless set.
  Precision precision = Precision::Fp32;
  DistillConfig distill;  ///< the run's unless set; off for null/false
};

/// fp16 training multiplies the loss by a scale so small gradients survive, and adapts it as
/// PyTorch's GradScaler: a step whose gradients overflow is skipped and the scale backs off;
/// GROWTH_INTERVAL clean steps in a row grow it.
struct LossScaleConfig {
  enum class Mode { Auto, On, Off };
  Mode mode = Mode::Auto;  ///< auto: on for the fp16 stages
  bool dynamic = true;     ///< false: INIT stays the scale
  double init = 65536.0, growth_factor = 2.0, backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool on_for(Precision p) const { return mode == Mode::On || (mode == Mode::Auto && p == Precision::Fp16); }
};

struct RunConfig {
  std::string source;        ///< the file it was read from
  std::string name;          ///< run name; default: the config file's stem
  int64_t seed = 42;
  Device device = Device::Auto;
  int64_t intra_op_threads = 0;  ///< 0: one per core
  int64_t loader_threads = 0;    ///< 0: one per core
  std::string output_dir;        ///< default: runs/<name>
  Metric monitor = Metric::ValAccuracy;  ///< the metric that picks the 'best' checkpoint
  /// Images per forward/backward chunk; a batch's gradients are accumulated over its chunks,
  /// exact while backbone BatchNorm is frozen. 0: 8 on CPU (measured 3-4x faster per image
  /// than 32 there), the whole batch on CUDA or when a stage trains BatchNorm.
  int64_t micro_batch = 0;
  /// Feature caches larger than this many MiB live in a memory-mapped file in output_dir rather
  /// than in RAM, so a run's memory does not grow with the data set. 0: a quarter of the machine's
  /// physical memory.
  double feature_cache_memory_mb = 0;
  Precision precision = Precision::Fp32;  ///< the stages' default
  DistillConfig distill;                  ///< the stages' default
  LossScaleConfig loss_scale;
  DataConfig data;
  ModelConfig model;
  std::vector<StageConfig> stages;
  json resolved;                 ///< every key with its value or default, for the run directory
  std::vector<Problem> warnings; ///< settings that are valid but ignored
};

struct ParseOptions {
  bool data_only = false;  ///< the data commands: model.backbone and stages may be absent
};

/// Reads, overrides (--set), and validates a config file; throws a Usage error listing all problems.
/// Relative paths are taken from the current directory (as any CLI does) and stored absolute,
/// so a resumed run finds its files from anywhere.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {},
                          const ParseOptions& options = {});

/// Validates an already parsed config. SOURCE names it in messages.
RunConfig parse_run_config(const json& j, const std::string& source, const ParseOptions& options = {});

/// Applies one "--set a.b[1].c=value" override. The value is parsed as JSON when it is valid JSON
/// (numbers, true, null, [..], {..}), otherwise taken as a string.
void apply_override(json& j, const std::string& assignment);

/// Parses a JSON file with comments allowed; a Usage error with line and column on a syntax error.
json parse_json_file(const std::string& path);

}  // namespace tltrain::config
