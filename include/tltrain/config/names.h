#pragma once
// Every name a config may hold maps to an enum through one table per kind (OpenCV's name→enum
// maps). Validation, error messages, the CLI's --help and the docs check (tests) all read these
// tables; past validation the code holds enums, never strings.
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tltrain::config {

enum class Optimizer { Sgd, Adam, AdamW, RmsProp, Lbfgs };
enum class Loss { CrossEntropy, Hinge };
enum class Schedule { Constant, Step, Exponential, Cosine };
enum class Pooling { Avg, Max, AvgMax, Flatten };
enum class Activation { Relu, Gelu, Silu, Tanh };
enum class HeadOutput { Softmax, Sigmoid, MultiLabel };
enum class AugmentStep { Crop, Affine, Flip, Color };
enum class FillMode { Nearest, Constant, Reflect, Wrap };
enum class Normalization { Backbone, Imagenet, Unit, Symmetric, Caffe, Dataset };
enum class OnBadImage { Skip, Error };
enum class Interpolation { Backbone, Bilinear, Bicubic };
enum class BatchNormPolicy { Frozen, Train };
enum class Metric { ValLoss, ValAccuracy, Loss, Accuracy };
enum class Device { Auto, Cpu, Cuda };
enum class Precision { Fp32, Bf16, Fp16 };
enum class ModelFormat { TorchScript, Onnx };  ///< what `tltrain export --format` writes
enum class Quantize { None, Int8 };            ///< `tltrain export --quantize`

/// The names of one kind: WHAT names the kind in messages ("optimizer"), ENTRIES in the order
/// the docs list them.
template <typename E>
struct NameTable {
  const char* what;
  std::vector<std::pair<std::string, E>> entries;
};

/// The table of E; one specialisation per enum above, in names.cpp.
template <typename E>
const NameTable<E>& names();

/// E's name ("adamw").
template <typename E>
const std::string& name_of(E value) {
  for (const auto& [name, e] : names<E>().entries)
    if (e == value) return name;
  static const std::string unknown = "?";
  return unknown;  // unreachable while every enumerator has a row (tests/names_test.cpp)
}

/// Every name of E, in table order.
template <typename E>
std::vector<std::string> name_list() {
  std::vector<std::string> out;
  for (const auto& entry : names<E>().entries) out.push_back(entry.first);
  return out;
}

/// "sgd|adam|adamw|rmsprop", for --help and messages.
template <typename E>
std::string choices(const std::string& sep = "|") {
  std::string out;
  for (const auto& entry : names<E>().entries) out += (out.empty() ? "" : sep) + entry.first;
  return out;
}

/// Whether NAME is one of E's; OUT gets its value.
template <typename E>
bool parse_name(const std::string& name, E& out) {
  for (const auto& [n, e] : names<E>().entries)
    if (n == name) {
      out = e;
      return true;
    }
  return false;
}

/// E's value named NAME; a Usage error naming the kind, NAME and the valid names otherwise.
template <typename E>
E from_name(const std::string& name);

template <> const NameTable<Optimizer>& names<Optimizer>();
template <> const NameTable<Loss>& names<Loss>();
template <> const NameTable<Schedule>& names<Schedule>();
template <> const NameTable<Pooling>& names<Pooling>();
template <> const NameTable<Activation>& names<Activation>();
template <> const NameTable<HeadOutput>& names<HeadOutput>();
template <> const NameTable<AugmentStep>& names<AugmentStep>();
template <> const NameTable<FillMode>& names<FillMode>();
template <> const NameTable<Normalization>& names<Normalization>();
template <> const NameTable<OnBadImage>& names<OnBadImage>();
template <> const NameTable<Interpolation>& names<Interpolation>();
template <> const NameTable<BatchNormPolicy>& names<BatchNormPolicy>();
template <> const NameTable<Metric>& names<Metric>();
template <> const NameTable<Device>& names<Device>();
template <> const NameTable<Precision>& names<Precision>();
template <> const NameTable<ModelFormat>& names<ModelFormat>();
template <> const NameTable<Quantize>& names<Quantize>();

}  // namespace tltrain::config

#include "tltrain/core/error.h"

namespace tltrain::config {

template <typename E>
E from_name(const std::string& name) {
  E out{};
  TLTRAIN_CHECK(parse_name(name, out), ErrorKind::Usage,
                std::string("unknown ") + names<E>().what + " '" + name + "' (valid: " + choices<E>(", ") + ")");
  return out;
}

/// TABLE's row for VALUE, for the behaviour tables keyed by these enums (optimizers, poolings...):
/// every enumerator has a row, which tests check; a missing one is a Usage error, never a default.
template <typename E, typename V>
const V& row_of(const std::map<E, V>& table, E value) {
  auto it = table.find(value);
  TLTRAIN_CHECK(it != table.end(), ErrorKind::Usage,
                std::string(names<E>().what) + " '" + name_of(value) + "' is not supported here (" + std::to_string(table.size()) +
                    " of " + std::to_string(names<E>().entries.size()) + " have an entry)");
  return it->second;
}

}  // namespace tltrain::config
