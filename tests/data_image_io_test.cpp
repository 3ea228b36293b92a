// Decoding real-world files: every bad input is a typed reason, odd formats become 8-bit BGR.
#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_util.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/transforms.h"

using namespace tltrain;
using namespace tltrain::data;
using tltrain::test::TempDir;

namespace {
std::string encode(const cv::Mat& img, const std::string& ext) {
  std::vector<uchar> buf;
  EXPECT_TRUE(cv::imencode(ext, img, buf));
  return std::string(buf.begin(), buf.end());
}
void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }
cv::Mat noise(int w, int h) {
  cv::Mat m(h, w, CV_8UC3);
  cv::randu(m, cv::Scalar::all(0), cv::Scalar::all(255));
  return m;
}
}  // namespace

TEST(DataImageIo, DecodesPngKeepingColours) {
  auto r = decode_image(encode(cv::Mat(8, 6, CV_8UC3, cv::Scalar(10, 20, 30)), ".png"));
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(r.image.type(), CV_8UC3);
  EXPECT_EQ(r.image.cols, 6);
  EXPECT_EQ(r.image.rows, 8);
  EXPECT_EQ(r.image.at<cv::Vec3b>(3, 3), cv::Vec3b(10, 20, 30));
}

TEST(DataImageIo, EachBadInputHasItsReason) {
  TempDir dir;
  write_bytes(dir / "zero.jpg", "");
  tltrain::test::write_text(dir / "text.jpg", "this is not a picture\n");
  std::string jpeg = encode(noise(64, 64), ".jpg");
  write_bytes(dir / "cut.jpg", jpeg.substr(0, jpeg.size() / 2));
  std::string png = encode(noise(64, 64), ".png");
  write_bytes(dir / "cut.png", png.substr(0, png.size() / 2));
  EXPECT_EQ(decode_file(dir / "zero.jpg").failure, DecodeFailure::Empty);
  EXPECT_EQ(decode_file(dir / "text.jpg").failure, DecodeFailure::NotAnImage);
  EXPECT_EQ(decode_file(dir / "cut.jpg").failure, DecodeFailure::Truncated);
  EXPECT_EQ(decode_file(dir / "cut.png").failure, DecodeFailure::Truncated);  // refused before libpng prints its error
  EXPECT_EQ(decode_file(dir / "missing.jpg").failure, DecodeFailure::Unreadable);
  EXPECT_TRUE(decode_file(dir / "cut.jpg").image.empty());
  // A complete JPEG with trailing bytes after its end marker is fine, 0xFF bytes among them.
  EXPECT_TRUE(decode_image(jpeg + std::string(100, '\0')).ok());
  EXPECT_TRUE(decode_image(jpeg + std::string("\xff\xff\x00\xff", 4)).ok());
  // One byte short: the file ends in the end marker's 0xFF without its D9.
  ASSERT_EQ(jpeg.substr(jpeg.size() - 2), std::string("\xff\xd9", 2));
  EXPECT_EQ(decode_image(jpeg.substr(0, jpeg.size() - 1)).failure, DecodeFailure::Truncated);
}

TEST(DataImageIo, PixelGuardRefusesBeforeDecoding) {
  DecodeOptions o;
  o.max_pixels = 100;
  auto r = decode_image(encode(noise(16, 16), ".png"), o);
  EXPECT_EQ(r.failure, DecodeFailure::TooLarge);
  EXPECT_NE(r.reason().find("16x16 = 256 pixels"), std::string::npos) << r.reason();
  o.max_pixels = 256;
  EXPECT_TRUE(decode_image(encode(noise(16, 16), ".png"), o).ok());
}

TEST(DataImageIo, AlphaGrayAnd16BitBecome8BitBgr) {
  cv::Mat bgra(4, 4, CV_8UC4, cv::Scalar(50, 100, 150, 0));  // fully transparent: colour kept, alpha dropped
  auto a = decode_image(encode(bgra, ".png"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.image.type(), CV_8UC3);
  EXPECT_EQ(a.image.at<cv::Vec3b>(1, 1), cv::Vec3b(50, 100, 150));

  cv::Mat gray(4, 4, CV_8UC1, cv::Scalar(77));
  auto g = decode_image(encode(gray, ".png"));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.image.type(), CV_8UC3);
  EXPECT_EQ(g.image.at<cv::Vec3b>(2, 2), cv::Vec3b(77, 77, 77));

  cv::Mat deep(4, 4, CV_16UC3, cv::Scalar(200 * 257, 100 * 257, 10 * 257));
  auto d = decode_image(encode(deep, ".png"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.image.type(), CV_8UC3);
  EXPECT_EQ(d.image.at<cv::Vec3b>(0, 0), cv::Vec3b(200, 100, 10));
}

TEST(DataImageIo, ExifOrientationIsHonoured) {
  // 40 wide × 20 high: left half red, right half blue. Orientation 6 = rotate 90° clockwise.
  cv::Mat img(20, 40, CV_8UC3, cv::Scalar(0, 0, 255));
  img(cv::Rect(20, 0, 20, 20)).setTo(cv::Scalar(255, 0, 0));
  std::string jpeg = encode(img, ".jpg");
  const unsigned char tiff[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
  std::string app1 = "\xFF\xE1";
  const size_t len = 2 + 6 + sizeof tiff;
  app1 += static_cast<char>(len >> 8);
  app1 += static_cast<char>(len & 0xFF);
  app1 += std::string("Exif\0\0", 6) + std::string(reinterpret_cast<const char*>(tiff), sizeof tiff);
  auto r = decode_image(jpeg.substr(0, 2) + app1 + jpeg.substr(2));
  ASSERT_TRUE(r.ok()) << r.reason();
  ASSERT_EQ(r.image.cols, 20);
  ASSERT_EQ(r.image.rows, 40);
  cv::Vec3b top = r.image.at<cv::Vec3b>(5, 10), bottom = r.image.at<cv::Vec3b>(35, 10);
  EXPECT_GT(top[2], 200);     // red (the left half) is now on top
  EXPECT_GT(bottom[0], 200);  // blue below
}

TEST(DataImageIo, ReducedDecodeKeepsTheNeededSide) {
  std::string jpeg = encode(noise(400, 320), ".jpg");
  DecodeOptions o;
  o.min_short_side = 80;
  auto r = decode_image(jpeg, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.reduction, 4);
  EXPECT_EQ(r.image.cols, 100);
  EXPECT_EQ(r.image.rows, 80);
  o.min_short_side = 81;  // 320/4 = 80 is too small now: only a 2× reduction fits
  EXPECT_EQ(decode_image(jpeg, o).reduction, 2);
  o.min_short_side = 0;
  EXPECT_EQ(decode_image(jpeg, o).image.cols, 400);
  // PNG never decodes reduced (OpenCV would decode fully and resize without antialiasing).
  o.min_short_side = 10;
  EXPECT_EQ(decode_image(encode(noise(400, 320), ".png"), o).reduction, 1);
}

TEST(DataImageIo, ProbeReadsSizesFromHeaders) {
  for (const char* ext : {".png", ".jpg", ".bmp", ".tiff", ".webp"}) {
    std::string bytes = encode(noise(37, 23), ext);
    auto h = probe_header(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    EXPECT_FALSE(h.format.empty()) << ext;
    EXPECT_EQ(h.width, 37) << ext;
    EXPECT_EQ(h.height, 23) << ext;
  }
}

TEST(DataImageIo, RegionDecodeGivesTheSamePixelsAsFullDecodeThenCrop) {
  cv::Mat img(150, 203, CV_8UC3);
  cv::randu(img, cv::Scalar::all(0), cv::Scalar::all(255));
  cv::GaussianBlur(img, img, cv::Size(5, 5), 2);  // photo-like, so chroma subsampling matters
  std::string jpeg = encode(img, ".jpg");
  cv::Mat full = decode_image(jpeg).image;
  for (cv::Rect roi : {cv::Rect(37, 21, 101, 77), cv::Rect(0, 0, 203, 150), cv::Rect(190, 140, 13, 10), cv::Rect(5, 0, 1, 1)}) {
    int seen_w = 0, seen_h = 0;
    auto r = decode_image_region(jpeg, [&](int w, int h) { seen_w = w; seen_h = h; return roi; });
    ASSERT_TRUE(r.ok()) << r.reason();
    EXPECT_TRUE(r.region);
    EXPECT_EQ(seen_w, 203);
    EXPECT_EQ(seen_h, 150);
    ASSERT_EQ(r.image.size(), roi.size());
    cv::Mat diff;
    cv::absdiff(r.image, full(roi), diff);
    cv::Mat nz;
    cv::findNonZero(diff.reshape(1, diff.rows) > 0, nz);
    cv::Rect where = nz.empty() ? cv::Rect() : cv::boundingRect(nz);
    EXPECT_EQ(cv::norm(r.image, full(roi), cv::NORM_INF), 0) << roi << " differs in " << where << " (x in channel units)";
  }
  // Other formats decode fully and crop; bad files keep their reasons.
  auto png = decode_image_region(encode(img, ".png"), [](int, int) { return cv::Rect(1, 2, 3, 4); });
  ASSERT_TRUE(png.ok());
  EXPECT_FALSE(png.region);
  EXPECT_EQ(cv::norm(png.image, img(cv::Rect(1, 2, 3, 4)), cv::NORM_INF), 0);
  EXPECT_EQ(decode_image_region(jpeg.substr(0, jpeg.size() / 2), [](int, int) { return cv::Rect(0, 0, 1, 1); }).failure,
            DecodeFailure::Truncated);
}

TEST(DataImageIo, EvalDecodesOnlyTheCentreCropAndGivesTheSamePixels) {
  // decode_eval resamples only what the centre crop keeps from only the JPEG region it reads:
  // bit-identical to decoding everything and resizing everything, in every shape and path.
  Preprocess pre;
  pre.height = pre.width = 32;
  pre.resize = 37;
  DecodeOptions o;
  o.min_short_side = pre.resize;
  cv::Mat exif_src = noise(90, 60);
  std::string exif = encode(exif_src, ".jpg");
  const unsigned char tiff[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
  std::string app1 = "\xFF\xE1";
  app1 += static_cast<char>(0);
  app1 += static_cast<char>(2 + 6 + sizeof tiff);
  app1 += std::string("Exif\0\0", 6) + std::string(reinterpret_cast<const char*>(tiff), sizeof tiff);
  exif = exif.substr(0, 2) + app1 + exif.substr(2);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"landscape jpeg", encode(noise(160, 120), ".jpg")}, {"portrait jpeg", encode(noise(57, 101), ".jpg")},
      {"odd sizes", encode(noise(73, 41), ".jpg")},        {"png", encode(noise(160, 120), ".png")},
      {"reduced jpeg (full path)", encode(noise(400, 320), ".jpg")}, {"exif-rotated jpeg", exif}};
  for (auto interp : {config::Interpolation::Bilinear, config::Interpolation::Bicubic})
  for (const auto& [file_name, bytes] : files) {
    pre.interpolation = interp;
    Transform t(pre, config::AugmentConfig{}, Mode::Eval);
    const std::string name = file_name + " (" + config::name_of(interp) + ")";
    cv::Mat fast;
    DecodeResult r = t.decode_eval(bytes, o, fast);
    ASSERT_TRUE(r.ok()) << name << ": " << r.reason();
    // Shorter sides under 2 x 37 decode at full scale, so those JPEGs take the region path.
    if (file_name == "portrait jpeg" || file_name == "odd sizes") EXPECT_TRUE(r.region) << name;
    if (file_name == "reduced jpeg (full path)") EXPECT_EQ(r.reduction, 8) << name;  // 320 / 8 = 40 >= 37
    SampleRng unused(0);
    cv::Mat want = t.apply(decode_image(bytes, o).image, unused);
    ASSERT_EQ(fast.size(), want.size()) << name;
    EXPECT_EQ(cv::norm(fast, want, cv::NORM_INF), 0.0) << name;
  }
  // The windowed resample itself: any output rectangle equals that part of the full resize.
  cv::Mat src = noise(50, 31), full = pil_resize(src, 37, 23);
  cv::Mat part = pil_resize_window(src, {0, 0, 50, 31}, 50, 31, 37, 23, {5, 3, 20, 17});
  cv::Mat full_bicubic = pil_resize(src, 37, 23, config::Interpolation::Bicubic);
  EXPECT_EQ(cv::norm(pil_resize_window(src, {0, 0, 50, 31}, 50, 31, 37, 23, {5, 3, 20, 17}, config::Interpolation::Bicubic),
                     full_bicubic(cv::Rect(5, 3, 20, 17)), cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(part, full(cv::Rect(5, 3, 20, 17)), cv::NORM_INF), 0.0);
}

namespace {
/// PNG bytes with CHUNK (type + data, length and CRC computed here) inserted after IHDR.
std::string with_chunk_after_ihdr(const std::string& png, const std::string& type, const std::string& data) {
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  // CRC-32 as PNG defines it (ISO 3309), over type and data.
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : type + data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  const size_t after_ihdr = 8 + 12 + 13;
  return png.substr(0, after_ihdr) + be32(uint32_t(data.size())) + type + data + be32(crc ^ 0xFFFFFFFFu) + png.substr(after_ihdr);
}
}  // namespace

TEST(DataImageIo, BadColourProfileDecodesWithoutLibpngNoise) {
  const cv::Mat img = noise(12, 10);
  // An iCCP chunk whose "profile" is not zlib data: libpng warns about it on stderr.
  const std::string png = with_chunk_after_ihdr(encode(img, ".png"), "iCCP", std::string("bad\0\0", 5) + "not a profile");
  testing::internal::CaptureStderr();
  cv::Mat raw = cv::imdecode(cv::Mat(1, int(png.size()), CV_8UC1, const_cast<char*>(png.data())), cv::IMREAD_COLOR);
  const std::string opencv_noise = testing::internal::GetCapturedStderr();
  ASSERT_NE(opencv_noise.find("iCCP"), std::string::npos) << "the fixture no longer makes libpng warn: " << opencv_noise;
  testing::internal::CaptureStderr();
  auto r = decode_image(png);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(cv::norm(r.image, img, cv::NORM_INF), 0.0);  // the profile never changed pixels
  EXPECT_EQ(cv::norm(raw, img, cv::NORM_INF), 0.0);
}
