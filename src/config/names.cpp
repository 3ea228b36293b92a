#include "tltrain/config/names.h"

namespace tltrain::config {

template <>
const NameTable<Optimizer>& names<Optimizer>() {
  static const NameTable<Optimizer> t{
      "optimizer", {{"sgd", Optimizer::Sgd}, {"adam", Optimizer::Adam}, {"adamw", Optimizer::AdamW}, {"rmsprop", Optimizer::RmsProp}, {"lbfgs", Optimizer::Lbfgs}}};
  return t;
}

template <>
const NameTable<Loss>& names<Loss>() {
  static const NameTable<Loss> t{"loss", {{"cross_entropy", Loss::CrossEntropy}, {"hinge", Loss::Hinge}}};
  return t;
}

template <>
const NameTable<Schedule>& names<Schedule>() {
  static const NameTable<Schedule> t{"schedule",
                                     {{"constant", Schedule::Constant},
                                      {"step", Schedule::Step},
                                      {"exponential", Schedule::Exponential},
                                      {"cosine", Schedule::Cosine}}};
  return t;
}

template <>
const NameTable<Pooling>& names<Pooling>() {
  static const NameTable<Pooling> t{"pooling", {{"avg", Pooling::Avg}, {"max", Pooling::Max}, {"avgmax", Pooling::AvgMax}, {"flatten", Pooling::Flatten}}};
  return t;
}

template <>
const NameTable<Activation>& names<Activation>() {
  static const NameTable<Activation> t{
      "activation", {{"relu", Activation::Relu}, {"gelu", Activation::Gelu}, {"silu", Activation::Silu}, {"tanh", Activation::Tanh}}};
  return t;
}

template <>
const NameTable<HeadOutput>& names<HeadOutput>() {
  static const NameTable<HeadOutput> t{"head output", {{"softmax", HeadOutput::Softmax}, {"sigmoid", HeadOutput::Sigmoid}, {"multilabel", HeadOutput::MultiLabel}}};
  return t;
}

template <>
const NameTable<AugmentStep>& names<AugmentStep>() {
  static const NameTable<AugmentStep> t{"augmentation step",
                                        {{"crop", AugmentStep::Crop},
                                         {"affine", AugmentStep::Affine},
                                         {"flip", AugmentStep::Flip},
                                         {"color", AugmentStep::Color}}};
  return t;
}

template <>
const NameTable<FillMode>& names<FillMode>() {
  static const NameTable<FillMode> t{"fill_mode",
                                     {{"nearest", FillMode::Nearest},
                                      {"constant", FillMode::Constant},
                                      {"reflect", FillMode::Reflect},
                                      {"wrap", FillMode::Wrap}}};
  return t;
}

template <>
const NameTable<Normalization>& names<Normalization>() {
  static const NameTable<Normalization> t{"normalization",
                                          {{"backbone", Normalization::Backbone},
                                           {"imagenet", Normalization::Imagenet},
                                           {"unit", Normalization::Unit},
                                           {"symmetric", Normalization::Symmetric},
                                           {"caffe", Normalization::Caffe},
                                           {"dataset", Normalization::Dataset}}};
  return t;
}

template <>
const NameTable<Interpolation>& names<Interpolation>() {
  static const NameTable<Interpolation> t{
      "interpolation", {{"backbone", Interpolation::Backbone}, {"bilinear", Interpolation::Bilinear}, {"bicubic", Interpolation::Bicubic}}};
  return t;
}

template <>
const NameTable<OnBadImage>& names<OnBadImage>() {
  static const NameTable<OnBadImage> t{"on_bad_image", {{"skip", OnBadImage::Skip}, {"error", OnBadImage::Error}}};
  return t;
}

template <>
const NameTable<BatchNormPolicy>& names<BatchNormPolicy>() {
  static const NameTable<BatchNormPolicy> t{"batch_norm", {{"frozen", BatchNormPolicy::Frozen}, {"train", BatchNormPolicy::Train}}};
  return t;
}

template <>
const NameTable<Metric>& names<Metric>() {
  static const NameTable<Metric> t{"metric",
                                   {{"val_loss", Metric::ValLoss},
                                    {"val_accuracy", Metric::ValAccuracy},
                                    {"loss", Metric::Loss},
                                    {"accuracy", Metric::Accuracy}}};
  return t;
}

template <>
const NameTable<Device>& names<Device>() {
  static const NameTable<Device> t{"device", {{"auto", Device::Auto}, {"cpu", Device::Cpu}, {"cuda", Device::Cuda}}};
  return t;
}

template <>
const NameTable<Precision>& names<Precision>() {
  static const NameTable<Precision> t{"precision", {{"fp32", Precision::Fp32}, {"bf16", Precision::Bf16}, {"fp16", Precision::Fp16}}};
  return t;
}

template <>
const NameTable<ModelFormat>& names<ModelFormat>() {
  static const NameTable<ModelFormat> t{"format", {{"torchscript", ModelFormat::TorchScript}, {"onnx", ModelFormat::Onnx}}};
  return t;
}

template <>
const NameTable<Quantize>& names<Quantize>() {
  static const NameTable<Quantize> t{"quantization", {{"none", Quantize::None}, {"int8", Quantize::Int8}}};
  return t;
}

}  // namespace tltrain::config
