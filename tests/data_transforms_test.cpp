// Transforms on known images: crop bounds, flips, resize+center crop, affine maps, colour, and
// normalization values; plus the per-sample RNG and epoch_order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "tltrain/data/transforms.h"

using namespace tltrain;
using namespace tltrain::data;

namespace {
/// Left half red, right half blue (BGR).
cv::Mat halves(int w, int h) {
  cv::Mat m(h, w, CV_8UC3, cv::Scalar(0, 0, 255));
  m(cv::Rect(w / 2, 0, w - w / 2, h)).setTo(cv::Scalar(255, 0, 0));
  return m;
}
Preprocess small(int size) {
  Preprocess p;
  p.height = p.width = size;
  p.resize = size;
  return p;
}
config::AugmentConfig no_augment() {
  config::AugmentConfig a;
  a.random_resized_crop.enabled = false;
  a.horizontal_flip = false;
  return a;
}
bool same(const cv::Mat& a, const cv::Mat& b) { return a.size() == b.size() && cv::norm(a, b, cv::NORM_INF) == 0; }
}  // namespace

TEST(DataTransforms, RandomResizedCropStaysInsideWithScaleAndRatio) {
  for (int i = 0; i < 500; ++i) {
    SampleRng rng = SampleRng::for_sample(7, 0, i);
    cv::Rect r = random_resized_crop_rect(300, 200, {0.08, 1.0}, {3.0 / 4, 4.0 / 3}, rng);
    ASSERT_GE(r.x, 0);
    ASSERT_GE(r.y, 0);
    ASSERT_LE(r.x + r.width, 300);
    ASSERT_LE(r.y + r.height, 200);
    double area = static_cast<double>(r.area()) / (300.0 * 200.0), ratio = static_cast<double>(r.width) / r.height;
    EXPECT_GE(area, 0.07);
    EXPECT_LE(area, 1.0);
    EXPECT_GE(ratio, 0.74);
    EXPECT_LE(ratio, 1.35);
  }
}

TEST(DataTransforms, RandomResizedCropFallsBackToClampedCenterCrop) {
  SampleRng rng(1);
  // Ratio 2 at full area never fits a square: torchvision's fallback is a centered 100×50.
  cv::Rect r = random_resized_crop_rect(100, 100, {1.0, 1.0}, {2.0, 2.0}, rng);
  EXPECT_EQ(r, cv::Rect(0, 25, 100, 50));
}

TEST(DataTransforms, EvalResizesShorterSideThenCentersCrop) {
  // 80×40, columns coloured by x: after resize to shorter side 20 (40×20) the 20×20 center crop
  // covers source columns 20..59.
  cv::Mat img(40, 80, CV_8UC3);
  for (int x = 0; x < 80; ++x) img.col(x).setTo(cv::Scalar(x * 3, 0, 0));
  cv::Mat out = resize_center_crop(img, 20, 20, 20);
  ASSERT_EQ(out.size(), cv::Size(20, 20));
  EXPECT_NEAR(out.at<cv::Vec3b>(10, 0)[0], 20 * 3 + 1.5, 4);
  EXPECT_NEAR(out.at<cv::Vec3b>(10, 19)[0], 58 * 3 + 1.5, 4);
  // Smaller than the crop: zero padding, as torchvision's CenterCrop.
  cv::Mat pad = resize_center_crop(cv::Mat(10, 10, CV_8UC3, cv::Scalar::all(200)), 10, 14, 14);
  EXPECT_EQ(pad.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(pad.at<cv::Vec3b>(7, 7), cv::Vec3b(200, 200, 200));
}

TEST(DataTransforms, EvalResizeIsPillowsBilinearToTheBit) {
  // Expected pixels from Pillow (python3-pil, Debian 12): Image.fromarray(a).resize((w, h),
  // Image.BILINEAR) of the 13x9 pattern below: shrinking, enlarging, and one axis each way.
  cv::Mat img(9, 13, CV_8UC3);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      for (int c = 0; c < 3; ++c) img.at<cv::Vec3b>(y, x)[c] = static_cast<uchar>((x * 37 + y * 91 + c * 53 + x * y * 7) % 256);
  struct Case {
    int w, h;
    std::vector<int> pixels;
  };
  const std::vector<Case> cases = {
      {5, 4, {106,131,143,120,135,146,126,124,134,115,130,137,119,144,118,123,134,130,140,141,132,141,128,126,127,129,127,135,144,144,115,147,122,128,130,113,144,134,127,124,132,109,138,106,128,131,105,146,132,117,138,122,121,128,128,124,132,129,100,153}},
      {17, 11, {0,53,106,24,77,130,52,105,158,81,134,187,109,162,215,137,190,243,165,218,151,194,186,44,222,19,72,55,47,100,23,76,129,51,104,157,79,132,185,107,160,213,136,189,91,164,217,14,188,241,38,66,119,172,93,146,199,125,178,155,158,178,78,190,67,110,90,89,142,68,121,142,100,137,136,133,116,169,112,148,201,127,180,135,159,158,79,181,59,112,70,90,143,70,123,135,102,155,138,129,182,165,141,194,107,171,134,138,151,121,127,105,138,95,141,85,131,96,115,168,99,152,139,135,155,101,172,85,138,101,122,175,105,158,150,142,161,131,172,115,160,119,151,89,135,106,101,123,85,138,63,116,169,122,175,65,157,104,100,131,88,141,76,129,165,117,170,135,158,145,170,155,158,135,146,161,90,187,77,130,103,118,100,106,110,119,120,107,160,95,148,191,136,189,108,177,134,120,160,108,128,90,143,103,34,87,140,72,125,148,117,151,177,154,169,185,164,215,70,207,112,103,154,95,126,88,130,148,133,140,193,143,185,78,177,119,74,161,66,105,58,108,118,104,119,164,122,155,208,148,201,180,186,239,83,108,161,214,150,203,90,200,147,50,204,46,99,58,96,149,93,146,199,143,196,128,192,185,42,242,39,92,96,89,142,85,138,191,135,188,166,185,223,35,235,77,85,134,81,134,78,131,184,120,173,226,182,235,79,93,146,95,73,107,133,119,134,150,137,188,43,189,94,85,144,86,117,87,129,147,141,148,201,160,202,95,92,145,99,47,100,140,102,152,149,156,170,42,182,93,60,143,61,114,54,107,160,94,147,107,83,136,156,109,162,148,139,192,94,72,125,81,122,109,134,136,140,116,145,160,89,204,94,147,138,152,134,109,162,84,123,128,66,172,72,119,106,130,106,135,134,148,161,97,150,150,40,93,75,128,181,129,106,159,144,128,123,113,166,104,69,122,167,124,95,148,132,123,111,133,153,100,196,109,162,152,83,136,121,119,98,128,140,95,183,98,151,139,72,125,109,114,167,124,128,181,177,91,144,150,133,186,162,69,122,127,71,124,85,126,179,153,140,193,171,71,124,129,84,104,82,135,134,95,148,201,163,73,126,131,97,113,90,143,147,108,150,203,176,75,128,133,69,122,99,107,160,111,164,217,216,13,66,111,73,126,91,144,197,162,170,223,234,46,99,124,102,155,120,173,105,131,184,41,6,59,112,77,130,183,148,201,119,144,197,69,34,87,140,106,159,212,177,79,132,157,45,98,52,105,158}},
      {8, 9, {15,68,121,72,125,178,133,186,220,190,166,82,75,51,104,55,108,161,116,169,159,173,226,23,109,162,215,177,179,90,109,53,99,61,114,167,137,190,201,198,142,74,72,74,127,89,142,195,203,150,53,88,79,132,110,163,196,188,164,80,97,73,126,98,151,198,182,173,83,111,58,111,41,94,147,130,183,185,207,138,82,101,112,165,159,170,86,133,64,98,88,141,194,177,230,134,135,188,134,184,95,85,92,139,173,186,162,78,119,95,148,142,189,133,186,97,99,93,146,199,122,175,79,84,137,139,183,114,59,99,110,163,139,192,108,55,108,135,154,145,55,116,62,115,67,120,173,137,190,101,69,122,149,184,160,76,141,117,128,179,123,55,111,113,166,181,85,138,161,107,160,100,90,143,159,91,144,97,108,161,161,77,130,99,126,179,158,69,122,97,150,203,148,52,105,142,144,197,154,98,132,105,158,74,86,139,150,114,167,98,126,117,170,120,66,119}},
  };
  for (const auto& k : cases) {
    cv::Mat out = pil_resize(img, k.w, k.h);
    ASSERT_EQ(out.total() * 3, k.pixels.size());
    std::vector<int> got(out.data, out.data + out.total() * 3);
    EXPECT_EQ(got, k.pixels) << k.w << "x" << k.h;
  }
}

TEST(DataTransforms, EvalResizeIsPillowsBicubicToTheBit) {
  // As above with Image.BICUBIC (torchvision's eval filter for EfficientNet, Swin, MaxViT): its
  // negative lobes overshoot, so this also checks the clipping to 0..255.
  cv::Mat img(9, 13, CV_8UC3);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      for (int c = 0; c < 3; ++c) img.at<cv::Vec3b>(y, x)[c] = static_cast<uchar>((x * 37 + y * 91 + c * 53 + x * y * 7) % 256);
  struct Case {
    int w, h;
    std::vector<int> pixels;
  };
  const std::vector<Case> cases = {
      {5, 4, {101,130,143,122,135,147,123,125,134,112,126,139,118,147,115,126,133,128,144,140,134,139,130,122,128,129,129,137,145,145,112,154,122,128,128,110,146,137,126,125,132,105,140,104,130,131,102,150,133,117,140,119,122,125,127,124,134,129,97,156}},
      {17, 11, {0,47,100,18,71,123,48,100,158,77,131,194,104,167,221,140,196,255,171,239,154,204,202,20,227,14,67,38,36,94,2,70,129,45,101,162,73,136,190,110,164,233,140,193,83,169,222,0,193,246,33,61,112,184,86,152,226,128,204,163,175,197,54,208,52,98,77,71,132,42,112,142,89,132,145,120,128,181,115,159,226,136,205,132,177,171,50,195,39,99,51,73,149,44,120,142,96,162,147,136,188,177,155,217,102,197,134,141,163,114,121,94,139,75,142,68,133,78,109,182,84,164,140,142,163,88,174,82,135,93,115,194,92,173,158,147,178,130,189,114,165,118,162,67,143,93,84,122,59,145,40,101,187,127,190,43,175,89,83,131,59,146,47,125,181,108,182,141,171,150,189,166,170,136,151,174,71,195,69,122,91,113,84,94,98,112,115,94,178,83,157,213,140,218,96,206,134,109,175,90,123,75,137,90,15,67,142,54,121,153,114,160,198,162,182,204,175,232,53,235,97,86,156,69,126,60,125,163,121,152,205,148,213,60,206,117,51,179,38,97,40,98,114,91,111,176,112,162,242,152,221,192,206,255,62,105,158,223,146,217,84,213,153,32,216,31,99,52,96,149,85,146,218,143,211,130,198,197,25,242,39,92,84,83,142,70,138,208,135,196,177,185,229,28,250,65,81,128,68,134,64,135,188,123,176,229,206,254,65,84,139,82,45,81,144,112,133,169,148,205,27,217,79,68,146,60,117,59,124,162,129,160,213,182,230,76,86,142,84,15,76,156,90,158,164,159,194,20,208,81,31,150,39,109,30,111,168,87,137,91,66,132,173,107,178,167,154,216,79,61,116,68,114,103,148,136,153,119,152,173,69,212,86,139,130,162,148,98,184,71,131,128,38,183,49,114,81,141,108,132,156,167,179,94,154,158,16,69,52,127,198,136,101,171,166,130,111,112,176,83,49,119,184,120,87,160,133,128,104,135,165,89,213,107,160,154,61,143,110,116,90,132,153,84,204,94,151,140,50,121,87,124,185,117,146,198,200,83,136,153,149,202,179,57,109,127,45,106,63,121,191,158,154,208,193,55,111,131,61,90,59,135,148,90,161,214,185,57,114,135,76,102,68,148,163,103,166,220,198,62,116,134,49,102,83,111,164,108,183,236,228,1,54,99,67,120,70,162,215,171,185,238,245,33,86,109,96,169,117,194,108,147,199,17,1,54,107,66,128,205,167,225,118,159,211,46,24,77,137,97,177,233,198,75,128,169,29,82,40,107,160}},
      {8, 9, {12,65,118,71,124,178,132,195,235,203,168,69,73,38,98,46,109,170,117,170,163,176,229,16,106,165,221,187,186,86,109,40,90,51,116,173,135,200,214,211,142,59,65,64,128,86,145,198,209,150,49,84,67,131,100,171,211,201,166,68,95,60,120,90,161,211,194,177,76,111,52,108,36,89,149,129,193,192,221,138,69,89,107,178,164,182,83,133,50,90,78,142,206,182,235,134,136,192,134,190,90,74,79,139,187,200,165,66,116,81,153,142,202,133,191,91,90,89,145,204,121,174,80,72,136,145,197,114,45,92,105,177,146,204,105,41,103,139,166,149,49,117,58,114,67,120,176,143,196,97,55,118,154,198,163,69,138,114,135,183,124,41,105,113,177,181,87,140,163,105,158,95,89,142,164,90,143,90,111,164,168,74,127,94,130,183,163,63,116,95,151,204,145,51,104,140,149,203,163,94,134,97,162,67,83,136,157,115,176,94,128,110,174,123,64,117}},
  };
  for (const auto& k : cases) {
    cv::Mat out = pil_resize(img, k.w, k.h, config::Interpolation::Bicubic);
    ASSERT_EQ(out.total() * 3, k.pixels.size());
    std::vector<int> got(out.data, out.data + out.total() * 3);
    EXPECT_EQ(got, k.pixels) << k.w << "x" << k.h;
  }
  // The eval transform uses the resolved filter, windowed decode included (same pixels either way).
  Preprocess pre;
  pre.height = pre.width = 5;
  pre.resize = 6;
  pre.interpolation = config::Interpolation::Bicubic;
  const cv::Mat bicubic = Transform(pre, config::AugmentConfig{}, Mode::Eval).apply(img, *std::make_unique<SampleRng>(0));
  pre.interpolation = config::Interpolation::Bilinear;
  const cv::Mat bilinear = Transform(pre, config::AugmentConfig{}, Mode::Eval).apply(img, *std::make_unique<SampleRng>(0));
  EXPECT_GT(cv::norm(bicubic, bilinear, cv::NORM_L1), 0) << "the filter reaches the eval transform";
  EXPECT_EQ(cv::norm(bicubic, resize_center_crop(img, 6, 5, 5, true, config::Interpolation::Bicubic), cv::NORM_L1), 0);
}

TEST(DataTransforms, DownscalingIsAntialiasedLikePil) {
  // A one-pixel checkerboard shrunk 1.5x: PIL's (torchvision's) filtered resize gives 120..135,
  // plain bilinear sampling a 96/159 moire. Eval, cached features and matching the Python
  // recipe's accuracy depend on the former.
  cv::Mat board(300, 300, CV_8UC3);
  for (int y = 0; y < board.rows; ++y)
    for (int x = 0; x < board.cols; ++x) board.at<cv::Vec3b>(y, x) = cv::Vec3b::all((x + y) % 2 ? 255 : 0);
  cv::Mat out = resize_center_crop(board, 200, 200, 200);
  double lo, hi;
  cv::minMaxLoc(out.reshape(1), &lo, &hi);
  EXPECT_GE(lo, 108);
  EXPECT_LE(hi, 147);
}

TEST(DataTransforms, HorizontalFlipMirrorsAboutHalfTheSamples) {
  cv::Mat img = halves(16, 16);
  auto aug = no_augment();
  aug.horizontal_flip = true;
  Transform t(small(16), aug, Mode::Train);
  int flipped = 0;
  cv::Mat mirrored;
  cv::flip(img, mirrored, 1);
  for (int i = 0; i < 100; ++i) {
    SampleRng rng = SampleRng::for_sample(3, 0, i);
    cv::Mat out = t.apply(img, rng);
    bool f = same(out, mirrored);
    ASSERT_TRUE(f || same(out, img)) << "sample " << i << " is neither the image nor its mirror";
    flipped += f;
  }
  EXPECT_GT(flipped, 30);
  EXPECT_LT(flipped, 70);
  EXPECT_EQ(img.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 255)) << "the input must not be modified";
}

TEST(DataTransforms, EvalModeNeverAugments) {
  cv::Mat img = halves(16, 16);
  config::AugmentConfig aug;  // flips and crops on, but Eval ignores them
  aug.rotation_range = 40;
  Transform t(small(16), aug, Mode::Eval);
  for (int i = 0; i < 10; ++i) {
    SampleRng rng = SampleRng::for_sample(3, 0, i);
    EXPECT_TRUE(same(t.apply(img, rng), img));
  }
}

TEST(DataTransforms, AffineMapsAboutTheCentre) {
  AffineParams p;
  p.theta_deg = 180;
  cv::Matx23d m = affine_inverse_map(p, 11, 7);
  cv::Vec3d pt(2, 1, 1);
  cv::Vec2d src = m * pt;  // output (2,1) reads input (8,5) after a half turn of an 11×7 grid
  EXPECT_NEAR(src[0], 8, 1e-9);
  EXPECT_NEAR(src[1], 5, 1e-9);
  AffineParams s;
  s.shift_x = 3;
  cv::Vec2d shifted = affine_inverse_map(s, 11, 7) * pt;
  EXPECT_NEAR(shifted[0], 5, 1e-9);
  EXPECT_NEAR(shifted[1], 1, 1e-9);
  AffineParams z;
  z.zoom_x = z.zoom_y = 2;  // Keras: zoom > 1 reads a wider area (zooms out)
  cv::Vec2d zoomed = affine_inverse_map(z, 11, 7) * cv::Vec3d(6, 3, 1);
  EXPECT_NEAR(zoomed[0], 7, 1e-9);
  EXPECT_NEAR(zoomed[1], 3, 1e-9);
}

TEST(DataTransforms, ShiftFillsWithTheFillMode) {
  cv::Mat img(16, 16, CV_8UC3, cv::Scalar::all(100));
  auto aug = no_augment();
  aug.width_shift_range = 0.5;
  aug.fill_mode = config::FillMode::Constant;
  aug.fill_value = 7;
  Transform t(small(16), aug, Mode::Train);
  int filled = 0;
  for (int i = 0; i < 20; ++i) {
    SampleRng rng = SampleRng::for_sample(1, 0, i);
    cv::Mat out = t.apply(img, rng);
    filled += out.at<cv::Vec3b>(8, 0)[0] == 7 || out.at<cv::Vec3b>(8, 15)[0] == 7;
  }
  EXPECT_GT(filled, 10);
  aug.fill_mode = config::FillMode::Nearest;
  Transform n(small(16), aug, Mode::Train);
  for (int i = 0; i < 20; ++i) {
    SampleRng rng = SampleRng::for_sample(1, 0, i);
    EXPECT_EQ(cv::norm(n.apply(img, rng), img, cv::NORM_INF), 0) << "nearest fill of a flat image stays flat";
  }
}

TEST(DataTransforms, EachAugmentKnobChangesTheOutput) {
  cv::Mat img(32, 32, CV_8UC3);
  cv::randu(img, cv::Scalar::all(0), cv::Scalar::all(255));
  Transform base(small(32), no_augment(), Mode::Train);
  std::vector<std::function<void(config::AugmentConfig&)>> knobs = {
      [](auto& a) { a.random_resized_crop.enabled = true; }, [](auto& a) { a.vertical_flip = true; },
      [](auto& a) { a.rotation_range = 40; },               [](auto& a) { a.height_shift_range = 0.2; },
      [](auto& a) { a.shear_range = 20; },                  [](auto& a) { a.zoom_range = {0.8, 1.2}; },
      [](auto& a) { a.brightness = 0.5; },                  [](auto& a) { a.contrast = 0.5; },
      [](auto& a) { a.saturation = 0.5; },                  [](auto& a) { a.hue = 0.2; }};
  for (size_t k = 0; k < knobs.size(); ++k) {
    auto aug = no_augment();
    knobs[k](aug);
    Transform t(small(32), aug, Mode::Train);
    int differ = 0;
    for (int i = 0; i < 8; ++i) {
      SampleRng r1 = SampleRng::for_sample(5, 0, i), r2 = SampleRng::for_sample(5, 0, i);
      differ += !same(t.apply(img, r1), base.apply(img, r2));
    }
    EXPECT_GT(differ, 0) << "knob " << k << " changed nothing";
  }
}

TEST(DataTransforms, ColorJitterFollowsPilBlends) {
  cv::Mat img(2, 2, CV_8UC3, cv::Scalar(40, 100, 201));
  ColorParams p;
  p.brightness = 0.5;
  cv::Mat b = img.clone();
  apply_color_jitter(b, p);
  EXPECT_EQ(b.at<cv::Vec3b>(0, 0), cv::Vec3b(20, 50, 100));  // truncated, as PIL's blend
  ColorParams s;
  s.saturation = 0;
  cv::Mat g = img.clone();
  apply_color_jitter(g, s);
  cv::Vec3b px = g.at<cv::Vec3b>(1, 1);
  EXPECT_EQ(px[0], px[1]);
  EXPECT_EQ(px[1], px[2]);
  EXPECT_NEAR(px[0], 0.299 * 201 + 0.587 * 100 + 0.114 * 40, 1.0);
}

TEST(DataTransforms, NormalizationPresets) {
  cv::Mat px(1, 1, CV_8UC3, cv::Scalar(128, 0, 255));  // B=128 G=0 R=255
  auto norm = [&](const std::string& preset) {
    config::DataConfig cfg;
    cfg.normalization = config::from_name<config::Normalization>(preset);
    cfg.image_size = std::array<int64_t, 2>{1, 1};
    Preprocess p = resolve_preprocess(cfg, ImageSpec{});
    std::array<float, 3> out{};
    Transform(p, no_augment(), Mode::Eval).normalize_into(px, out.data());
    return out;
  };
  auto in = norm("imagenet");
  EXPECT_NEAR(in[0], (1.0 - 0.485) / 0.229, 1e-5);
  EXPECT_NEAR(in[1], (0.0 - 0.456) / 0.224, 1e-5);
  EXPECT_NEAR(in[2], (128 / 255.0 - 0.406) / 0.225, 1e-5);
  auto u = norm("unit");
  EXPECT_NEAR(u[0], 1.0, 1e-6);
  EXPECT_NEAR(u[1], 0.0, 1e-6);
  auto s = norm("symmetric");
  EXPECT_NEAR(s[0], 1.0, 1e-6);
  EXPECT_NEAR(s[1], -1.0, 1e-6);
  auto c = norm("caffe");  // BGR order, raw pixels minus the BGR mean
  EXPECT_NEAR(c[0], 128 - 103.939, 1e-4);
  EXPECT_NEAR(c[1], 0 - 116.779, 1e-4);
  EXPECT_NEAR(c[2], 255 - 123.68, 1e-4);
  auto b = norm("backbone");  // the default metadata is ImageNet's
  EXPECT_NEAR(b[0], in[0], 1e-6);
}

TEST(DataTransforms, PreprocessFollowsTheBackboneUnlessOverridden) {
  ImageSpec meta;  // as BackboneMeta::image_spec() gives it
  meta.input_size = {299, 299};
  meta.resize = 342;
  meta.mean = {0.5, 0.5, 0.5};
  meta.std = {0.5, 0.5, 0.5};
  config::DataConfig cfg;
  Preprocess p = resolve_preprocess(cfg, meta);
  EXPECT_EQ(p.height, 299);
  EXPECT_EQ(p.resize, 342);
  EXPECT_FLOAT_EQ(p.mean[0], 0.5f);
  cfg.image_size = std::array<int64_t, 2>{224, 224};
  EXPECT_EQ(resolve_preprocess(cfg, ImageSpec{}).resize, 256);  // round(224 / 0.875)
  cfg.resize = 300;
  EXPECT_EQ(resolve_preprocess(cfg, meta).resize, 300);
}

TEST(DataTransforms, DenormalizeInvertsNormalize) {
  cv::Mat img(4, 4, CV_8UC3);
  cv::randu(img, cv::Scalar::all(0), cv::Scalar::all(255));
  Transform t(small(4), no_augment(), Mode::Eval);
  std::vector<float> chw(3 * 16);
  t.normalize_into(img, chw.data());
  EXPECT_TRUE(same(t.denormalize(chw.data()), img));
}

TEST(DataSampling, SampleRngDependsOnSeedEpochAndIndexOnly) {
  auto draw = [](uint64_t s, int64_t e, int64_t i) { return SampleRng::for_sample(s, e, i).next(); };
  EXPECT_EQ(draw(1, 2, 3), draw(1, 2, 3));
  EXPECT_NE(draw(1, 2, 3), draw(1, 2, 4));
  EXPECT_NE(draw(1, 2, 3), draw(1, 3, 3));
  EXPECT_NE(draw(1, 2, 3), draw(2, 2, 3));
  EXPECT_NE(draw(0, 0, 1), draw(0, 1, 0));
}

TEST(DataSampling, EpochOrderShufflesPerEpochAndShardsLikeDistributedSampler) {
  auto identity = epoch_order(10, 1, 0, false, 0, 1);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(identity[i], i);
  auto e0 = epoch_order(100, 1, 0, true, 0, 1), e1 = epoch_order(100, 1, 1, true, 0, 1);
  EXPECT_EQ(e0, epoch_order(100, 1, 0, true, 0, 1));
  EXPECT_NE(e0, e1);
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, epoch_order(100, 1, 0, false, 0, 1));
  // 10 samples over 3 ranks: 4 each, padded by wrapping; rank r takes positions r, r+3, ...
  std::multiset<int64_t> all;
  auto perm = epoch_order(10, 9, 2, true, 0, 1);
  for (int64_t r = 0; r < 3; ++r) {
    auto mine = epoch_order(10, 9, 2, true, r, 3);
    ASSERT_EQ(mine.size(), 4u);
    for (size_t k = 0; k < mine.size(); ++k) EXPECT_EQ(mine[k], perm[(r + 3 * k) % 10]);
    all.insert(mine.begin(), mine.end());
  }
  for (int64_t i = 0; i < 10; ++i) EXPECT_GE(all.count(i), 1u);
  EXPECT_EQ(all.size(), 12u);
  // Without padding (evaluation) each sample lands on exactly one rank: 4 + 3 + 3.
  std::multiset<int64_t> once;
  for (int64_t r = 0; r < 3; ++r) {
    auto mine = epoch_order(10, 9, 2, true, r, 3, /*pad=*/false);
    EXPECT_EQ(mine.size(), r == 0 ? 4u : 3u);
    once.insert(mine.begin(), mine.end());
  }
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(once.count(i), 1u);
}
