// The threaded loader: bit-identical batches for any thread count, epoch order, bad images
// under skip and error, bounded prefetch, and prompt shutdown mid-epoch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/data/device_batches.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/loader.h"
#include "tltrain/data/transforms.h"

using namespace tltrain;
using namespace tltrain::data;
using tltrain::test::TempDir;

namespace {
std::vector<Sample> color_samples(const TempDir& dir, int per_class, int size = 16) {
  tltrain::test::write_color_dataset(dir / "root", {"a", "b", "c"}, per_class, size);
  return scan_source(dir / "root").samples;
}
Preprocess pre(int size) {
  Preprocess p;
  p.height = p.width = size;
  p.resize = size + 2;
  return p;
}
config::AugmentConfig all_augment() {
  config::AugmentConfig a;
  a.vertical_flip = true;
  a.rotation_range = 40;
  a.width_shift_range = a.height_shift_range = 0.2;
  a.shear_range = 20;
  a.zoom_range = {0.8, 1.2};
  a.brightness = a.contrast = a.saturation = 0.3;
  a.hue = 0.1;
  return a;
}
std::vector<Batch> epoch(Loader& l, int64_t e) {
  std::vector<Batch> out;
  l.start_epoch(e);
  while (auto b = l.next()) out.push_back(std::move(*b));
  return out;
}
}  // namespace

TEST(DataLoader, BatchesAreBitIdenticalForOneAndFourThreads) {
  TempDir dir;
  // PNGs (full decode) and JPEG copies (the random crop's region-only decode), 48 samples.
  for (const auto& s : color_samples(dir, 8, 40)) cv::imwrite(s.path.substr(0, s.path.size() - 4) + ".jpg", cv::imread(s.path));
  auto samples = scan_source(dir / "root").samples;
  ASSERT_EQ(samples.size(), 48u);
  LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = true;
  o.seed = 11;
  o.threads = 1;
  Loader one(samples, pre(12), all_augment(), Mode::Train, o);
  o.threads = 4;
  o.prefetch_batches = 2;
  Loader four(samples, pre(12), all_augment(), Mode::Train, o);
  for (int64_t e : {0, 1}) {
    auto a = epoch(one, e), b = epoch(four, e);
    ASSERT_EQ(a.size(), 10u);  // 48 samples in batches of 5
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].indices, b[i].indices);
      EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "epoch " << e << " batch " << i;
      EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels));
    }
  }
  auto e0 = epoch(one, 0), e1 = epoch(one, 1);
  EXPECT_FALSE(torch::equal(e0[0].images, e1[0].images)) << "a new epoch must draw new augmentation";
}

TEST(DataLoader, OutputFollowsEpochOrderWithLabelsAndShape) {
  TempDir dir;
  auto samples = color_samples(dir, 4);
  LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = true;
  o.seed = 3;
  o.threads = 3;
  Loader l(samples, pre(8), config::AugmentConfig{}, Mode::Eval, o);
  EXPECT_EQ(l.batches_per_epoch(), 3);
  auto batches = epoch(l, 2);
  std::vector<int64_t> seen;
  for (const auto& b : batches) {
    EXPECT_EQ(b.images.dim(), 4);
    EXPECT_EQ(b.images.size(1), 3);
    EXPECT_EQ(b.images.size(2), 8);
    EXPECT_TRUE(b.images.is_contiguous());
    EXPECT_EQ(b.images.scalar_type(), torch::kFloat32);
    EXPECT_EQ(b.labels.scalar_type(), torch::kLong);
    for (size_t i = 0; i < b.indices.size(); ++i) EXPECT_EQ(b.labels[i].item<int64_t>(), samples[b.indices[i]].label);
    seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  }
  EXPECT_EQ(seen, epoch_order(12, 3, 2, true, 0, 1));
  o.drop_last = true;
  Loader dl(samples, pre(8), config::AugmentConfig{}, Mode::Eval, o);
  EXPECT_EQ(dl.batches_per_epoch(), 2);
  EXPECT_EQ(epoch(dl, 0).size(), 2u);
}

TEST(DataLoader, EvalOfASolidImageIsItsNormalizedColour) {
  TempDir dir;
  tltrain::test::write_solid_image(dir / "r/x/a.png", 20, 10, 0, 128, 255);  // BGR
  LoaderOptions o;
  o.threads = 1;
  Loader l(scan_source(dir / "r").samples, pre(8), config::AugmentConfig{}, Mode::Eval, o);
  auto b = epoch(l, 0).at(0);
  auto img = b.images[0];
  EXPECT_NEAR(img[0].min().item<float>(), (1.0 - 0.485) / 0.229, 1e-4);  // R
  EXPECT_NEAR(img[1].max().item<float>(), (128 / 255.0 - 0.456) / 0.224, 1e-4);
  EXPECT_NEAR(img[2].max().item<float>(), (0 - 0.406) / 0.225, 1e-4);
}

TEST(DataLoader, BadImagesAreLeftOutAndNamedOnceUnderSkip) {
  TempDir dir;
  auto samples = color_samples(dir, 2);
  std::ofstream(dir / "root/a/zero.jpg").close();
  tltrain::test::write_text(dir / "root/b/text.jpg", "not an image");
  samples = scan_source(dir / "root").samples;
  ASSERT_EQ(samples.size(), 8u);
  LoaderOptions o;
  o.batch_size = 4;
  o.threads = 2;
  Loader l(samples, pre(8), config::AugmentConfig{}, Mode::Train, o);
  for (int e = 0; e < 2; ++e) {
    int64_t n = 0;
    for (const auto& b : epoch(l, e)) n += b.images.size(0);
    EXPECT_EQ(n, 6);
  }
  auto bad = l.bad_images();
  ASSERT_EQ(bad.size(), 2u);
  for (const auto& b : bad) {
    bool zero = b.path.find("zero.jpg") != std::string::npos;
    EXPECT_NE(b.reason.find(zero ? "empty" : "not an image"), std::string::npos) << b.reason;
  }
}

TEST(DataLoader, BadImageUnderErrorThrowsADataErrorNamingIt) {
  TempDir dir;
  color_samples(dir, 2);
  tltrain::test::write_text(dir / "root/b/text.jpg", "not an image");
  Preprocess p = pre(8);
  p.skip_bad_images = false;
  LoaderOptions o;
  o.batch_size = 3;
  Loader l(scan_source(dir / "root").samples, p, config::AugmentConfig{}, Mode::Eval, o);
  l.start_epoch(0);
  try {
    while (l.next()) {
    }
    FAIL() << "expected a Data error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("text.jpg"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("on_bad_image"), std::string::npos) << e.what();
  }
}

TEST(DataLoader, PrefetchIsBoundedAndStopIsPromptMidEpoch) {
  TempDir dir;
  auto samples = color_samples(dir, 40, 256);
  LoaderOptions o;
  o.batch_size = 4;
  o.threads = 4;
  o.prefetch_batches = 2;
  auto aug = all_augment();
  using clock = std::chrono::steady_clock;
  {
    Loader l(samples, pre(64), aug, Mode::Train, o);
    l.start_epoch(0);
    ASSERT_TRUE(l.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the workers fill the queue
    EXPECT_LE(l.pending_batches(), o.prefetch_batches);
    auto t0 = clock::now();
    l.stop();
    EXPECT_LT(std::chrono::duration<double>(clock::now() - t0).count(), 2.0);
    EXPECT_FALSE(l.next().has_value()) << "a stopped loader has no more batches";
    ASSERT_TRUE(epoch(l, 1).size() == 30u) << "a stopped loader restarts with the next epoch";
  }
  auto t0 = clock::now();
  {
    Loader l(samples, pre(64), aug, Mode::Train, o);
    l.start_epoch(0);  // destroyed mid-epoch without reading a batch
  }
  EXPECT_LT(std::chrono::duration<double>(clock::now() - t0).count(), 2.0);
}

TEST(DataLoader, RegionDecodedJpegMatchesTheFullDecodePipeline) {
  TempDir dir;
  cv::Mat img(120, 160, CV_8UC3);
  cv::randu(img, cv::Scalar::all(0), cv::Scalar::all(255));
  std::filesystem::create_directories(dir / "r/a");
  cv::imwrite(dir / "r/a/x.jpg", img);
  auto samples = scan_source(dir / "r").samples;
  // A random resized crop first, and the Keras set's centre crop (resize + crop) first.
  for (bool random : {true, false}) {
    auto aug = all_augment();
    aug.random_resized_crop.enabled = random;
    Preprocess p = pre(32);
    p.resize = 50;  // with zoom 0.8 no reduced decoding of the 160x120 image: shorter side 60 < 50 / 0.8
    LoaderOptions o;
    o.threads = 1;
    o.seed = 5;
    Loader l(samples, p, aug, Mode::Train, o);
    auto batch = epoch(l, 3).at(0);
    // The reference: decode everything, then the whole transform on the full image.
    Transform t(p, aug, Mode::Train);
    ASSERT_TRUE(t.crop_first());
    SampleRng rng = SampleRng::for_sample(5, 3, 0);
    std::vector<float> ref(3 * 32 * 32);
    t.normalize_into(t.apply(decode_file(samples[0].path).image, rng), ref.data());
    EXPECT_TRUE(torch::equal(batch.images[0], torch::from_blob(ref.data(), {3, 32, 32}))) << "random crop " << random;
  }
  {
    // A JPEG large enough for reduced decoding: decoded in full at 1/2 scale, the region scaled to
    // it. A smooth image then gives nearly the full-resolution pipeline's pixels.
    cv::Mat big(600, 800, CV_8UC3);
    for (int y = 0; y < big.rows; ++y)
      for (int x = 0; x < big.cols; ++x) big.at<cv::Vec3b>(y, x) = cv::Vec3b(x * 255 / 800, y * 255 / 600, 128);
    std::filesystem::create_directories(dir / "big/a");
    cv::imwrite(dir / "big/a/x.jpg", big);
    auto bs = scan_source(dir / "big").samples;
    auto aug = all_augment();
    aug.random_resized_crop.enabled = false;
    Preprocess p = pre(32);
    p.resize = 200;  // minimum decoded side 250: 1/2 of 600 qualifies
    LoaderOptions o;
    o.threads = 1;
    Loader l(bs, p, aug, Mode::Train, o);
    auto got = epoch(l, 0).at(0).images[0];
    Transform t(p, aug, Mode::Train);
    SampleRng rng = SampleRng::for_sample(o.seed, 0, 0);
    std::vector<float> ref(3 * 32 * 32);
    t.normalize_into(t.apply(decode_file(bs[0].path).image, rng), ref.data());
    EXPECT_LT((got - torch::from_blob(ref.data(), {3, 32, 32})).abs().mean().item<double>(), 0.05);
  }
  // A centre crop that would need zero padding (resize < output) keeps the full decode.
  auto aug = all_augment();
  aug.random_resized_crop.enabled = false;
  Preprocess small = pre(32);
  small.resize = 30;
  EXPECT_FALSE(Transform(small, aug, Mode::Train).crop_first());
}

TEST(DataLoader, DeviceBatchesOnTheCpuAreTheLoadersBatches) {
  TempDir dir;
  auto samples = color_samples(dir, 4);
  LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = true;
  o.seed = 7;
  o.threads = 2;
  Loader plain(samples, pre(8), all_augment(), Mode::Train, o), wrapped(samples, pre(8), all_augment(), Mode::Train, o);
  auto want = epoch(plain, 1);
  wrapped.start_epoch(1);
  DeviceBatches batches(wrapped, torch::kCPU);
  EXPECT_FALSE(batches.overlapping()) << "no side stream on the CPU";
  size_t i = 0;
  while (auto b = batches.next()) {
    ASSERT_LT(i, want.size());
    EXPECT_EQ(b->indices, want[i].indices);
    EXPECT_TRUE(torch::equal(b->images, want[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(b->labels, want[i].labels));
    ++i;
  }
  EXPECT_EQ(i, want.size());
  EXPECT_FALSE(batches.next()) << "the end stays the end";
}
