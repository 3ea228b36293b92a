#pragma once
// The per-sample transform pipeline: decoded 8-bit BGR pixels → augmented H×W pixels → normalized
// CHW floats. Every random draw comes from the SampleRng passed in, so a sample's result depends
// on (seed, epoch, index) only. OpenCV-only (library sources and tests).
#include <opencv2/core.hpp>

#include <array>
#include <cstdint>

#include "tltrain/config/run_config.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/preprocess.h"

namespace tltrain::data {

/// torchvision RandomResizedCrop.get_params: 10 tries of (area scale, log-uniform aspect ratio),
/// then a center crop with the ratio clamped into RATIO.
cv::Rect random_resized_crop_rect(int width, int height, const std::array<double, 2>& scale,
                                  const std::array<double, 2>& ratio, SampleRng& rng);

/// Pillow's Image.resize(BILINEAR or BICUBIC) of 8-bit BGR, to the bit: the filter stretched by
/// the scale factor (antialiased when shrinking), horizontal pass first, 8 bits in between — what
/// torchvision's Resize does to a PIL image. Evaluation resizes with it.
cv::Mat pil_resize(const cv::Mat& bgr, int width, int height, config::Interpolation interp = config::Interpolation::Bilinear);

/// pil_resize of an IN_WIDTH×IN_HEIGHT image to WIDTH×HEIGHT, computing only the output
/// rectangle OUT from only SRC_WINDOW's pixels (SRC holds them): the same values as the full
/// resize's. SRC_WINDOW must cover every source pixel OUT reads.
cv::Mat pil_resize_window(const cv::Mat& src, const cv::Rect& src_window, int in_width, int in_height, int width, int height,
                          const cv::Rect& out, config::Interpolation interp = config::Interpolation::Bilinear);

/// torchvision Resize(shorter side = RESIZE) + CenterCrop(H, W); zero padding if the crop is larger.
/// ANTIALIAS: resized with pil_resize and INTERP (evaluation); otherwise shrinks by 2x or more
/// average pixel areas and the rest is OpenCV's bilinear (training augmentation, for speed).
cv::Mat resize_center_crop(const cv::Mat& img, int64_t resize, int64_t height, int64_t width, bool antialias = true,
                           config::Interpolation interp = config::Interpolation::Bilinear);

/// Keras ImageDataGenerator parameters of one sample's affine transform.
struct AffineParams {
  double theta_deg = 0, shift_x = 0, shift_y = 0, shear_deg = 0, zoom_x = 1, zoom_y = 1;  ///< shifts in pixels
  bool identity() const { return theta_deg == 0 && shift_x == 0 && shift_y == 0 && shear_deg == 0 && zoom_x == 1 && zoom_y == 1; }
};

/// The 2×3 matrix mapping OUTPUT pixel coordinates to INPUT coordinates (for WARP_INVERSE_MAP),
/// composed as Keras does (rotation · shift · shear · zoom) about the image centre.
cv::Matx23d affine_inverse_map(const AffineParams& p, int width, int height);

/// torchvision ColorJitter on 8-bit BGR: ORDER lists the ops 0 brightness, 1 contrast,
/// 2 saturation, 3 hue; factors as ColorJitter draws them (hue a shift in [-0.5, 0.5]).
struct ColorParams {
  std::array<int, 4> order{0, 1, 2, 3};
  double brightness = 1, contrast = 1, saturation = 1, hue = 0;
};
void apply_color_jitter(cv::Mat& bgr, const ColorParams& p);

/// Keras channel shift: INTENSITY (0..255 units) added to every channel of 8-bit BGR, clipped to
/// the image's own [min, max].
void apply_channel_shift(cv::Mat& bgr, double intensity);

class Transform {
 public:
  Transform(const Preprocess& pre, const config::AugmentConfig& augment, Mode mode);

  /// 8-bit BGR of any size → 8-bit BGR of exactly height×width (a new Mat; IMG is not changed).
  cv::Mat apply(const cv::Mat& bgr, SampleRng& rng) const;
  /// Evaluation: decodes BYTES and applies the transform, the same pixels as decode_image + apply.
  /// When no reduced decoding applies it resamples only what the centre crop keeps (and a JPEG
  /// decodes only that region). OUT is set when the result is ok.
  DecodeResult decode_eval(const std::string& bytes, const DecodeOptions& opts, cv::Mat& out) const;
  /// True when a training pipeline starts with a crop (random resized, or the centre crop of
  /// resize + crop), so that only the crop's region of the file needs decoding: draw_crop +
  /// apply_cropped then equal apply on the full image.
  bool crop_first() const { return crop_first_; }
  /// The first step's crop of a WIDTH×HEIGHT image (the same draw apply would make).
  cv::Rect draw_crop(int width, int height, SampleRng& rng) const;
  /// The rest of the pipeline after draw_crop, given the cropped pixels.
  cv::Mat apply_cropped(const cv::Mat& crop, SampleRng& rng) const;
  /// H×W 8-bit BGR → 3×H×W floats at OUT, channel order and normalization per the Preprocess.
  void normalize_into(const cv::Mat& bgr, float* out) const;
  /// Inverse of normalize_into, for previews: 3×H×W floats → 8-bit BGR.
  cv::Mat denormalize(const float* chw) const;
  /// Reduced decoding may shrink an image while its shorter side stays >= this: no output pixel
  /// then comes from a source region smaller than itself.
  int64_t min_decode_side() const { return min_decode_side_; }
  const Preprocess& preprocess() const { return pre_; }

 private:
  Preprocess pre_;
  config::AugmentConfig aug_;
  Mode mode_;
  int64_t min_decode_side_ = 0;
  bool color_ = false;
  bool crop_first_ = false;
  cv::Mat run(const cv::Mat& bgr, SampleRng& rng, size_t first_step) const;
  std::array<std::array<float, 256>, 3> lut_{};  ///< [output channel][pixel value] → normalized float
};

}  // namespace tltrain::data
