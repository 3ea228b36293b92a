#pragma once
// Inference over a loader in micro-batches: validation, eval and predict share it.
#include <torch/torch.h>

#include <vector>

#include "tltrain/core/side_by_side.h"
#include "tltrain/data/loader.h"
#include "tltrain/model/classifier.h"

namespace tltrain::model {

/// MICRO (or the whole batch when 0 or larger) rows of X at a time through FN, side by side on CPU
/// (core/side_by_side.h): there small chunks are several times faster per image than one big batch.
std::vector<torch::Tensor> chunks_of(const torch::Tensor& x, int64_t micro,
                                     const std::function<torch::Tensor(const torch::Tensor&)>& fn);
/// chunks_of, concatenated.
torch::Tensor in_chunks(const torch::Tensor& x, int64_t micro, const std::function<torch::Tensor(const torch::Tensor&)>& fn);

/// MODULE frozen with BatchNorm folded into oneDNN convolutions (torch.jit.optimize_for_inference),
/// measured ~3x faster than the saved graph with Debian's LibTorch, when its output on a random
/// INPUT_SHAPE batch matches the original's; otherwise MODULE itself (LibTorch cannot freeze every
/// module), with the reason in *WHY. MODULE must be in inference mode and stays untouched.
/// With SIDE_BY_SIDE (the default) it is made for concurrent workers of one thread each (in_chunks,
/// core/side_by_side.h): its oneDNN primitives run on one thread wherever they are called;
/// otherwise on the calling thread's intra-op threads.
torch::jit::Module optimized_for_inference(const torch::jit::Module& module, const std::vector<int64_t>& input_shape,
                                           std::string* why = nullptr, bool side_by_side = true);

/// MODEL's forward may draw random numbers: head dropout, or an operation of the backbone's
/// TorchScript code that samples (dropout, stochastic depth's bernoulli, rand*, normal, ...),
/// reachable or not. Such a forward's result depends on the order of its calls.
bool draws_random_numbers(Classifier& model);
/// The same for a TorchScript MODULE's code (its own and its submodules' methods).
bool draws_random_numbers(const torch::jit::Module& module);

struct Predictions {
  torch::Tensor logits;          ///< N×C float, CPU, in loader order
  torch::Tensor labels;          ///< N int64
  std::vector<int64_t> indices;  ///< sample index of each row
};

/// A loader's images after the model's frozen blocks, kept by predict() so that the next call
/// runs only the blocks that train (validation in a stage that fine-tunes the top blocks).
struct FrozenInputs {
  std::vector<torch::Tensor> labels;
  std::vector<int64_t> indices;
  torch::Tensor rows;  ///< every kept image's activations as float, one row each (the first `used`)
  int64_t used = 0;
  /// Makes the ROWS×COLS float tensor the activations are kept in, on the model's device, or an
  /// undefined tensor to keep none (the blocks then run again each call). The caller decides
  /// where it lives: a run puts it under its feature_cache_memory_mb budget, in RAM or beyond it
  /// in a memory-mapped file, so that RAM stays flat in the data set's size. Unset: zeros on the
  /// activations' device.
  std::function<torch::Tensor(int64_t rows, int64_t cols)> storage;
  bool complete = false;  ///< every batch of the loader's epoch is stored

  /// Copies chunk F (n images) into rows, made on the first call for CAPACITY images; false when
  /// storage declined to make them.
  bool add(const torch::Tensor& f, int64_t capacity);
  /// The kept chunks, one per forward chunk, as the frozen blocks gave them (shape and dtype).
  std::vector<torch::Tensor> chunks() const;
  /// Drops what is kept (a new epoch to store); storage stays.
  void clear();

 private:
  std::vector<std::vector<int64_t>> shapes_;  ///< each kept chunk's shape
  torch::Dtype dtype_ = torch::kFloat;
};

/// Runs MODEL in inference mode over one epoch of LOADER. When MODEL's frozen blocks are
/// optimized (Classifier::optimize_frozen_blocks) and KEEP is given, the first call stores the
/// frozen blocks' outputs in KEEP (where KEEP's storage puts them) and later calls start from them;
/// KEEP is only valid while the same blocks stay frozen and LOADER's images do not change.
Predictions predict(Classifier& model, data::Loader& loader, int64_t micro, int64_t epoch = 0, FrozenInputs* keep = nullptr);

/// "" when the rows of X (N×D, N >= 2) differ; otherwise how little they do ("largest spread
/// 2.9e-09 across 16 rows, largest magnitude 7.6e-09"). Rows count as the same when no column
/// spreads by more than 1e-6 of max(1, the largest magnitude): features that small are below what
/// a head at ordinary learning rates can use.
std::string constant_rows(const torch::Tensor& x);
/// What to do about a backbone whose features do not vary, for the messages of the guards.
extern const char* const kConstantFeaturesFix;

/// The head's probabilities for LOGITS (N×C): a sigmoid per class for a multi-label head, the softmax otherwise.
torch::Tensor probabilities(config::HeadOutput output, const torch::Tensor& logits);

/// The classes a head of OUTPUT decides from one image's PROBS: every class above THRESHOLD
/// (multilabel), the second class when above it (sigmoid), the top class (softmax).
std::vector<int64_t> decided_classes(config::HeadOutput output, double threshold, const float* probs, size_t classes);

/// Mean cross-entropy and top-1 accuracy of predictions.
std::pair<double, double> loss_and_accuracy(const Predictions& p);

}  // namespace tltrain::model
