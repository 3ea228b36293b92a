#include "tltrain/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "tltrain/core/error.h"
#include "tltrain/data/image_io.h"

namespace tltrain::data {

namespace {

/// PIL's filtered resampling coefficients for one axis (Pillow's precompute_coeffs, 22-bit fixed
/// point): output i reads inputs [first[i], first[i] + count[i]).
struct AxisTaps {
  std::vector<int> first, count;
  std::vector<int32_t> weights;  ///< ksize per output
  int ksize = 0;
};
/// Pillow's filters: bilinear is a triangle of support 1, bicubic Keys' cubic with a = -0.5 and support 2.
double pil_filter(config::Interpolation interp, double x) {
  x = std::abs(x);
  if (interp != config::Interpolation::Bicubic) return x < 1.0 ? 1.0 - x : 0.0;
  constexpr double a = -0.5;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}
AxisTaps pil_taps(int in, int out, config::Interpolation interp) {
  constexpr int kBits = 22;
  const double scale = static_cast<double>(in) / out;
  const double filterscale = std::max(scale, 1.0);
  const double support = (interp == config::Interpolation::Bicubic ? 2.0 : 1.0) * filterscale;
  AxisTaps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.weights.assign(static_cast<size_t>(out) * t.ksize, 0);
  std::vector<double> k(t.ksize);
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int n = std::min(static_cast<int>(center + support + 0.5), in) - lo;
    double sum = 0;
    for (int j = 0; j < n; ++j) {
      k[j] = pil_filter(interp, (j + lo - center + 0.5) / filterscale);
      sum += k[j];
    }
    for (int j = 0; j < n; ++j) {
      double w = sum != 0.0 ? k[j] / sum : k[j];
      t.weights[static_cast<size_t>(i) * t.ksize + j] = static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kBits) : 0.5 + w * (1 << kBits));
    }
    t.first[i] = lo;
    t.count[i] = n;
  }
  return t;
}
uchar pil_clip(int32_t acc) {
  acc >>= 22;
  return static_cast<uchar>(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

}  // namespace

cv::Mat pil_resize(const cv::Mat& src, int width, int height, config::Interpolation interp) {
  return pil_resize_window(src, {0, 0, src.cols, src.rows}, src.cols, src.rows, width, height, {0, 0, width, height}, interp);
}

cv::Mat pil_resize_window(const cv::Mat& src, const cv::Rect& src_window, int in_width, int in_height, int width, int height,
                          const cv::Rect& out, config::Interpolation interp) {
  TLTRAIN_ASSERT(src.type() == CV_8UC3 && src.cols == src_window.width && src.rows == src_window.height,
                 "pil_resize_window needs the window's 8-bit BGR pixels");
  const AxisTaps h = pil_taps(in_width, width, interp), v = pil_taps(in_height, height, interp);
  // Only the rows the vertical pass reads go through the horizontal one.
  const int row0 = v.first[out.y], row1 = v.first[out.y + out.height - 1] + v.count[out.y + out.height - 1];
  TLTRAIN_ASSERT(row0 >= src_window.y && row1 <= src_window.y + src_window.height, "source window misses rows");
  TLTRAIN_ASSERT(h.first[out.x] >= src_window.x &&
                     h.first[out.x + out.width - 1] + h.count[out.x + out.width - 1] <= src_window.x + src_window.width,
                 "source window misses columns");
  cv::Mat tmp(row1 - row0, out.width, CV_8UC3);
  // int32 sums as Pillow's: the weights add up to 2^22 and bicubic's negative lobes add at most
  // 15% to the positive ones, so 255 * 1.15 * 2^22 + 2^21 fits.
  constexpr int32_t kHalf = int32_t(1) << 21;
  for (int y = row0; y < row1; ++y) {
    const uchar* in = src.ptr<uchar>(y - src_window.y);
    uchar* o = tmp.ptr<uchar>(y - row0);
    for (int x = 0; x < out.width; ++x) {
      const int xx = out.x + x;
      const int32_t* k = &h.weights[static_cast<size_t>(xx) * h.ksize];
      int32_t a0 = kHalf, a1 = kHalf, a2 = kHalf;
      const uchar* p = in + 3 * (h.first[xx] - src_window.x);
      for (int j = 0; j < h.count[xx]; ++j, p += 3) {
        a0 += p[0] * k[j];
        a1 += p[1] * k[j];
        a2 += p[2] * k[j];
      }
      o[3 * x] = pil_clip(a0);
      o[3 * x + 1] = pil_clip(a1);
      o[3 * x + 2] = pil_clip(a2);
    }
  }
  cv::Mat dst(out.height, out.width, CV_8UC3);
  const size_t row = static_cast<size_t>(out.width) * 3;
  std::vector<int32_t> acc(row);
  for (int y = 0; y < out.height; ++y) {
    const int yy = out.y + y;
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = &v.weights[static_cast<size_t>(yy) * v.ksize];
    for (int j = 0; j < v.count[yy]; ++j) {
      const uchar* in = tmp.ptr<uchar>(v.first[yy] - row0 + j);
      for (size_t c = 0; c < row; ++c) acc[c] += in[c] * k[j];
    }
    uchar* o = dst.ptr<uchar>(y);
    for (size_t c = 0; c < row; ++c) o[c] = pil_clip(acc[c]);
  }
  return dst;
}

namespace {

/// ANTIALIAS (evaluation): exactly PIL's resize with filter INTERP, as torchvision applies it — plain
/// bilinear below 2x aliased the eval images and cost about a point of hymenoptera val accuracy
/// against the Python recipe (docs/benchmarks.md). Otherwise (training augmentation, where speed
/// counts): shrinking by 2x or more averages pixel areas, anything else is OpenCV's bilinear.
void resize_to(const cv::Mat& src, cv::Mat& dst, int width, int height, bool antialias, config::Interpolation interp) {
  if (antialias && src.type() == CV_8UC3) {
    dst = pil_resize(src, width, height, interp);
    return;
  }
  bool shrink = src.cols >= 2 * width && src.rows >= 2 * height;
  cv::resize(src, dst, cv::Size(width, height), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
}

int border_mode(config::FillMode fill_mode) {
  switch (fill_mode) {
    case config::FillMode::Constant: return cv::BORDER_CONSTANT;
    case config::FillMode::Reflect: return cv::BORDER_REFLECT;
    case config::FillMode::Wrap: return cv::BORDER_WRAP;
    case config::FillMode::Nearest: break;
  }
  return cv::BORDER_REPLICATE;  // Keras "nearest"
}

void apply_lut(cv::Mat& img, const std::function<int(int)>& f) {
  cv::Mat lut(1, 256, CV_8U);
  for (int v = 0; v < 256; ++v) lut.at<uchar>(v) = cv::saturate_cast<uchar>(f(v));
  cv::LUT(img, lut, img);
}

}  // namespace

cv::Rect random_resized_crop_rect(int width, int height, const std::array<double, 2>& scale, const std::array<double, 2>& ratio,
                                  SampleRng& rng) {
  const double area = static_cast<double>(width) * height;
  const double log_lo = std::log(ratio[0]), log_hi = std::log(ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target_area = area * rng.uniform(scale[0], scale[1]);
    double aspect = std::exp(rng.uniform(log_lo, log_hi));
    int w = static_cast<int>(std::lround(std::sqrt(target_area * aspect)));
    int h = static_cast<int>(std::lround(std::sqrt(target_area / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      int top = static_cast<int>(rng.below(height - h + 1));
      int left = static_cast<int>(rng.below(width - w + 1));
      return {left, top, w, h};
    }
  }
  double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio[0]) h = std::max(1, static_cast<int>(std::lround(w / ratio[0])));
  else if (in_ratio > ratio[1]) w = std::max(1, static_cast<int>(std::lround(h * ratio[1])));
  return {(width - w) / 2, (height - h) / 2, w, h};
}

namespace {
/// torchvision Resize(int): the shorter side becomes RESIZE, the longer keeps the aspect (truncated).
cv::Size resized_size(int width, int height, int64_t resize) {
  if (width <= height) return {static_cast<int>(resize), static_cast<int>(resize * height / width)};
  return {static_cast<int>(resize * width / height), static_cast<int>(resize)};
}
}  // namespace

cv::Mat resize_center_crop(const cv::Mat& img, int64_t resize, int64_t height, int64_t width, bool antialias,
                           config::Interpolation interp) {
  const cv::Size rs = resized_size(img.cols, img.rows, resize);
  const int rw = rs.width, rh = rs.height;
  cv::Mat resized;
  if (rw == img.cols && rh == img.rows) resized = img;
  else resize_to(img, resized, rw, rh, antialias, interp);
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  if (rh < H || rw < W) {  // torchvision CenterCrop pads with zeros
    int pad_y = std::max(0, H - rh), pad_x = std::max(0, W - rw);
    cv::copyMakeBorder(resized, resized, pad_y / 2, pad_y - pad_y / 2, pad_x / 2, pad_x - pad_x / 2, cv::BORDER_CONSTANT,
                       cv::Scalar::all(0));
  }
  int top = static_cast<int>(std::lround((resized.rows - H) / 2.0));
  int left = static_cast<int>(std::lround((resized.cols - W) / 2.0));
  return resized(cv::Rect(left, top, W, H)).clone();
}

cv::Matx23d affine_inverse_map(const AffineParams& p, int width, int height) {
  // Keras composes in (row, col) coordinates; written here directly in (x = col, y = row).
  const double th = p.theta_deg * CV_PI / 180.0, sh = p.shear_deg * CV_PI / 180.0;
  cv::Matx33d rotation(std::cos(th), std::sin(th), 0, -std::sin(th), std::cos(th), 0, 0, 0, 1);
  cv::Matx33d shift(1, 0, p.shift_x, 0, 1, p.shift_y, 0, 0, 1);
  cv::Matx33d shear(std::cos(sh), 0, 0, -std::sin(sh), 1, 0, 0, 0, 1);
  cv::Matx33d zoom(p.zoom_x, 0, 0, 0, p.zoom_y, 0, 0, 0, 1);
  // About the true pixel centre, so that e.g. a 180° turn maps the grid onto itself.
  const double cx = (width - 1) / 2.0, cy = (height - 1) / 2.0;
  cv::Matx33d to_center(1, 0, cx, 0, 1, cy, 0, 0, 1), from_center(1, 0, -cx, 0, 1, -cy, 0, 0, 1);
  cv::Matx33d m = to_center * rotation * shift * shear * zoom * from_center;
  return cv::Matx23d(m(0, 0), m(0, 1), m(0, 2), m(1, 0), m(1, 1), m(1, 2));
}

void apply_channel_shift(cv::Mat& img, double intensity) {
  // Keras' apply_channel_shift: every channel moves by the same intensity, clipped to the range
  // the image itself spans.
  double lo = 0, hi = 0;
  cv::minMaxLoc(img.reshape(1), &lo, &hi);
  cv::Mat f;
  img.convertTo(f, CV_32F, 1.0, intensity);
  f = cv::min(cv::max(f, lo), hi);
  f.convertTo(img, CV_8U);  // rounds to nearest
}

void apply_color_jitter(cv::Mat& img, const ColorParams& p) {
  // PIL ImageEnhance semantics (what torchvision ColorJitter runs on PIL images):
  // blend(degenerate, img, f) = degenerate + f * (img - degenerate), truncated to 8 bits.
  for (int op : p.order) {
    if (op == 0 && p.brightness != 1.0) {
      const double f = p.brightness;
      apply_lut(img, [f](int v) { return static_cast<int>(v * f); });
    } else if (op == 1 && p.contrast != 1.0) {
      cv::Mat gray;
      cv::cvtColor(img, gray, cv::COLOR_BGR2GRAY);
      const double mean = static_cast<int>(cv::mean(gray)[0] + 0.5), f = p.contrast;
      apply_lut(img, [=](int v) { return static_cast<int>(mean + f * (v - mean)); });
    } else if (op == 2 && p.saturation != 1.0) {
      cv::Mat gray;
      cv::cvtColor(img, gray, cv::COLOR_BGR2GRAY);
      const float f = static_cast<float>(p.saturation);
      for (int y = 0; y < img.rows; ++y) {
        uchar* row = img.ptr<uchar>(y);
        const uchar* g = gray.ptr<uchar>(y);
        for (int x = 0; x < img.cols; ++x)
          for (int c = 0; c < 3; ++c) {
            float v = g[x] + f * (static_cast<float>(row[3 * x + c]) - g[x]);
            row[3 * x + c] = static_cast<uchar>(std::clamp(static_cast<int>(v), 0, 255));
          }
      }
    } else if (op == 3 && p.hue != 0.0) {
      cv::Mat hsv;
      cv::cvtColor(img, hsv, cv::COLOR_BGR2HSV_FULL);  // hue over the full 0..255 range, as PIL's HSV
      const int shift = static_cast<int>(std::lround(p.hue * 255.0));
      for (int y = 0; y < hsv.rows; ++y) {
        uchar* row = hsv.ptr<uchar>(y);
        for (int x = 0; x < hsv.cols; ++x) row[3 * x] = static_cast<uchar>((row[3 * x] + shift + 256) & 0xFF);
      }
      cv::cvtColor(hsv, img, cv::COLOR_HSV2BGR_FULL);
    }
  }
}

Transform::Transform(const Preprocess& pre, const config::AugmentConfig& augment, Mode mode)
    : pre_(pre), aug_(augment), mode_(mode) {
  TLTRAIN_ASSERT(pre.height > 0 && pre.width > 0 && pre.resize > 0, "unresolved Preprocess");
  color_ = aug_.brightness > 0 || aug_.contrast > 0 || aug_.saturation > 0 || aug_.hue > 0;
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut_[c][v] = (static_cast<float>(v) * pre_.pixel_scale - pre_.mean[c]) / pre_.std[c];
  // A leading crop lets the loader decode only the crop's region. The centre crop qualifies when it
  // needs no zero padding (resize >= output), which depends on the config only.
  crop_first_ = mode_ == Mode::Train && !aug_.order.empty() && aug_.order[0] == config::AugmentStep::Crop &&
                (aug_.random_resized_crop.enabled || pre_.resize >= std::max(pre_.height, pre_.width));
  min_decode_side_ = pre_.resize;
  bool crops = std::find(aug_.order.begin(), aug_.order.end(), config::AugmentStep::Crop) != aug_.order.end();
  if (mode_ == Mode::Train && aug_.random_resized_crop.enabled && crops) {
    // The smallest crop (area share scale[0]) must still cover the output without upscaling.
    double side = static_cast<double>(std::max(pre_.height, pre_.width)) / std::sqrt(aug_.random_resized_crop.scale[0]);
    min_decode_side_ = static_cast<int64_t>(std::ceil(side));
  }
  if (mode_ == Mode::Train && aug_.zoom_range[0] < 1.0)
    min_decode_side_ = static_cast<int64_t>(std::ceil(static_cast<double>(min_decode_side_) / aug_.zoom_range[0]));
}

cv::Rect Transform::draw_crop(int width, int height, SampleRng& rng) const {
  if (aug_.random_resized_crop.enabled)
    return random_resized_crop_rect(width, height, aug_.random_resized_crop.scale, aug_.random_resized_crop.ratio, rng);
  // The region that resize (shorter side) + centre crop keeps, in the image's own pixels.
  const double scale = static_cast<double>(pre_.resize) / std::min(width, height);
  const int w = std::clamp(static_cast<int>(std::lround(pre_.width / scale)), 1, width);
  const int h = std::clamp(static_cast<int>(std::lround(pre_.height / scale)), 1, height);
  return {(width - w) / 2, (height - h) / 2, w, h};
}

cv::Mat Transform::apply_cropped(const cv::Mat& crop, SampleRng& rng) const {
  TLTRAIN_ASSERT(crop_first_, "apply_cropped without a leading crop");
  cv::Mat resized;
  resize_to(crop, resized, static_cast<int>(pre_.width), static_cast<int>(pre_.height), false, config::Interpolation::Bilinear);
  return run(resized, rng, 1);
}

DecodeResult Transform::decode_eval(const std::string& bytes, const DecodeOptions& opts, cv::Mat& out) const {
  TLTRAIN_ASSERT(mode_ == Mode::Eval, "decode_eval outside evaluation");
  const int H = static_cast<int>(pre_.height), W = static_cast<int>(pre_.width);
  const ImageHeader head = probe_header(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  // Exact only where apply() would see the full-resolution image and crop without padding.
  const bool windowed = reduced_decode_factor(head, opts) == 1 && pre_.resize >= std::max(H, W);
  if (!windowed) {
    DecodeResult r = decode_image(bytes, opts);
    SampleRng unused(0);
    if (r.ok()) out = apply(r.image, unused);
    return r;
  }
  cv::Rect window, crop;
  cv::Size rs;
  int fw = 0, fh = 0;
  auto choose = [&](int w, int h) {
    fw = w;
    fh = h;
    rs = resized_size(w, h, pre_.resize);
    crop = {static_cast<int>(std::lround((rs.width - W) / 2.0)), static_cast<int>(std::lround((rs.height - H) / 2.0)), W, H};
    const AxisTaps th = pil_taps(w, rs.width, pre_.interpolation), tv = pil_taps(h, rs.height, pre_.interpolation);
    const int x0 = th.first[crop.x], x1 = th.first[crop.x + W - 1] + th.count[crop.x + W - 1];
    const int y0 = tv.first[crop.y], y1 = tv.first[crop.y + H - 1] + tv.count[crop.y + H - 1];
    window = {x0, y0, x1 - x0, y1 - y0};
    return window;
  };
  DecodeOptions full = opts;
  full.min_short_side = 0;
  DecodeResult r = decode_image_region(bytes, choose, full);
  if (r.ok()) out = pil_resize_window(r.image, window, fw, fh, rs.width, rs.height, crop, pre_.interpolation);
  return r;
}

cv::Mat Transform::apply(const cv::Mat& bgr, SampleRng& rng) const {
  TLTRAIN_ASSERT(bgr.type() == CV_8UC3 && !bgr.empty(), "Transform::apply needs 8-bit BGR");
  if (mode_ == Mode::Eval) return resize_center_crop(bgr, pre_.resize, pre_.height, pre_.width, true, pre_.interpolation);
  return run(bgr, rng, 0);
}

cv::Mat Transform::run(const cv::Mat& bgr, SampleRng& rng, size_t first_step) const {
  const int H = static_cast<int>(pre_.height), W = static_cast<int>(pre_.width);
  cv::Mat img = bgr, tmp;
  // Draws happen for every configured step whether or not it changes the image, so one
  // step's settings never shift another step's random numbers.
  for (size_t s = first_step; s < aug_.order.size(); ++s) {
    const config::AugmentStep step = aug_.order[s];
    if (step == config::AugmentStep::Crop) {
      // In training the centre crop is cut first and then resized, like the random one, so that
      // decoding only the region (crop_first) gives exactly these pixels.
      if (aug_.random_resized_crop.enabled || (s == 0 && crop_first_)) {
        resize_to(img(draw_crop(img.cols, img.rows, rng)), tmp, W, H, false, config::Interpolation::Bilinear);
        img = tmp;
        tmp = cv::Mat();
      } else {
        img = resize_center_crop(img, pre_.resize, H, W, false);
      }
    } else if (step == config::AugmentStep::Affine) {
      AffineParams p;
      p.theta_deg = rng.uniform(-aug_.rotation_range, aug_.rotation_range);
      p.shift_y = rng.uniform(-aug_.height_shift_range, aug_.height_shift_range) * img.rows;
      p.shift_x = rng.uniform(-aug_.width_shift_range, aug_.width_shift_range) * img.cols;
      p.shear_deg = rng.uniform(-aug_.shear_range, aug_.shear_range);
      p.zoom_y = rng.uniform(aug_.zoom_range[0], aug_.zoom_range[1]);
      p.zoom_x = rng.uniform(aug_.zoom_range[0], aug_.zoom_range[1]);
      if (aug_.zoom_range[0] == aug_.zoom_range[1]) p.zoom_x = p.zoom_y = aug_.zoom_range[0];
      if (!p.identity()) {
        cv::warpAffine(img, tmp, cv::Mat(affine_inverse_map(p, img.cols, img.rows)), img.size(),
                       cv::INTER_LINEAR | cv::WARP_INVERSE_MAP, border_mode(aug_.fill_mode), cv::Scalar::all(aug_.fill_value));
        img = tmp;
        tmp = cv::Mat();
      }
    } else if (step == config::AugmentStep::Flip) {
      bool h = aug_.horizontal_flip && rng.uniform() < 0.5;
      bool v = aug_.vertical_flip && rng.uniform() < 0.5;
      if (h || v) {
        cv::flip(img, tmp, h && v ? -1 : h ? 1 : 0);
        img = tmp;
        tmp = cv::Mat();
      }
    } else if (step == config::AugmentStep::Color) {
      if (aug_.channel_shift_range > 0) {
        // Its own stream, seeded from a copy: turning it on leaves every other step's draws as they were.
        SampleRng peek = rng;
        SampleRng own(peek.next() ^ 0xC2B2AE3D27D4EB4FULL);
        if (img.data == bgr.data) img = img.clone();
        apply_channel_shift(img, own.uniform(-aug_.channel_shift_range, aug_.channel_shift_range));
      }
      if (!color_) continue;
      ColorParams c;
      for (int i = 0; i < 4; ++i) c.order[i] = i;
      for (int i = 3; i > 0; --i) std::swap(c.order[i], c.order[rng.below(i + 1)]);  // ColorJitter's random order
      auto factor = [&](double x) { return x > 0 ? rng.uniform(std::max(0.0, 1.0 - x), 1.0 + x) : 1.0; };
      c.brightness = factor(aug_.brightness);
      c.contrast = factor(aug_.contrast);
      c.saturation = factor(aug_.saturation);
      c.hue = aug_.hue > 0 ? rng.uniform(-aug_.hue, aug_.hue) : 0.0;
      if (img.data == bgr.data) img = img.clone();  // never write into the caller's pixels
      apply_color_jitter(img, c);
    }
  }
  if (img.cols != W || img.rows != H) img = resize_center_crop(img, pre_.resize, H, W, false);  // no crop step configured
  if (img.data == bgr.data) img = img.clone();
  return img;
}

void Transform::normalize_into(const cv::Mat& bgr, float* out) const {
  TLTRAIN_ASSERT(bgr.type() == CV_8UC3 && bgr.rows == pre_.height && bgr.cols == pre_.width, "normalize_into: wrong image size");
  const int H = bgr.rows, W = bgr.cols;
  const size_t plane = static_cast<size_t>(H) * W;
  // Source (BGR) channel feeding output channel c.
  const int s0 = pre_.bgr ? 0 : 2, s1 = 1, s2 = pre_.bgr ? 2 : 0;
  const float *l0 = lut_[0].data(), *l1 = lut_[1].data(), *l2 = lut_[2].data();
  for (int y = 0; y < H; ++y) {
    const uchar* row = bgr.ptr<uchar>(y);
    float* o0 = out + static_cast<size_t>(y) * W;
    float* o1 = o0 + plane;
    float* o2 = o1 + plane;
    for (int x = 0; x < W; ++x) {
      const uchar* px = row + 3 * x;
      o0[x] = l0[px[s0]];
      o1[x] = l1[px[s1]];
      o2[x] = l2[px[s2]];
    }
  }
}

cv::Mat Transform::denormalize(const float* chw) const {
  const int H = static_cast<int>(pre_.height), W = static_cast<int>(pre_.width);
  const size_t plane = static_cast<size_t>(H) * W;
  cv::Mat out(H, W, CV_8UC3);
  for (int c = 0; c < 3; ++c) {
    int dst = pre_.bgr ? c : 2 - c;
    for (int y = 0; y < H; ++y) {
      uchar* row = out.ptr<uchar>(y);
      const float* in = chw + c * plane + static_cast<size_t>(y) * W;
      for (int x = 0; x < W; ++x)
        row[3 * x + dst] = cv::saturate_cast<uchar>((in[x] * pre_.std[c] + pre_.mean[c]) / pre_.pixel_scale);
    }
  }
  return out;
}

}  // namespace tltrain::data
