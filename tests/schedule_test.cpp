// Learning-rate schedules: each factor checked against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "tltrain/core/error.h"
#include "tltrain/train/schedule.h"

using namespace tltrain;
using train::lr_factor;

namespace {

config::ScheduleConfig schedule(const std::string& name) {
  config::ScheduleConfig s;
  s.name = config::from_name<config::Schedule>(name);
  return s;
}

constexpr double kTol = 1e-12;

}  // namespace

TEST(Schedule, ConstantIsOneEverywhere) {
  auto s = schedule("constant");
  for (int64_t step : {0, 1, 999, 1000000}) EXPECT_DOUBLE_EQ(lr_factor(s, 1e-3, step, 10, 100), 1.0) << step;
}

TEST(Schedule, ExponentialMatchesKerasExponentialDecay) {
  // Keras ExponentialDecay(1e-3, decay_steps=1000, decay_rate=0.9): lr = 1e-3 * 0.9^(step/1000).
  auto s = schedule("exponential");
  s.decay_steps = 1000;
  s.decay_rate = 0.9;
  EXPECT_NEAR(lr_factor(s, 1e-3, 0, 10, 0), 1.0, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 500, 10, 0), 0.9486832980505138, kTol);   // sqrt(0.9)
  EXPECT_NEAR(lr_factor(s, 1e-3, 1000, 10, 0), 0.9, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 2500, 10, 0), 0.7684334714209162, kTol);  // 0.81 * sqrt(0.9)
  // The rate itself, as Keras would print it.
  EXPECT_NEAR(1e-3 * lr_factor(s, 1e-3, 2500, 10, 0), 7.684334714209162e-4, 1e-15);
}

TEST(Schedule, ExponentialStaircaseDecaysOnlyAtMultiplesOfDecaySteps) {
  auto s = schedule("exponential");
  s.decay_steps = 1000;
  s.decay_rate = 0.9;
  s.staircase = true;
  EXPECT_NEAR(lr_factor(s, 1e-3, 0, 10, 0), 1.0, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 500, 10, 0), 1.0, kTol);    // 500/1000 = 0
  EXPECT_NEAR(lr_factor(s, 1e-3, 999, 10, 0), 1.0, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 1000, 10, 0), 0.9, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 2500, 10, 0), 0.81, kTol);  // 2500/1000 = 2
}

TEST(Schedule, StepDropsByGammaAtEpochBoundaries) {
  // 10 steps per epoch, gamma 0.1 every 2 epochs: epochs 0-1 → 1, 2-3 → 0.1, 4-5 → 0.01.
  auto s = schedule("step");
  s.step_epochs = 2;
  s.gamma = 0.1;
  EXPECT_NEAR(lr_factor(s, 0.1, 0, 10, 1000), 1.0, kTol);
  EXPECT_NEAR(lr_factor(s, 0.1, 19, 10, 1000), 1.0, kTol);  // last step of epoch 1
  EXPECT_NEAR(lr_factor(s, 0.1, 20, 10, 1000), 0.1, kTol);  // first step of epoch 2
  EXPECT_NEAR(lr_factor(s, 0.1, 39, 10, 1000), 0.1, kTol);
  EXPECT_NEAR(lr_factor(s, 0.1, 40, 10, 1000), 0.01, kTol);
  // Epochs are counted in steps_per_epoch: with 5 per epoch, step 20 is already epoch 4.
  EXPECT_NEAR(lr_factor(s, 0.1, 20, 5, 1000), 0.01, kTol);
}

TEST(Schedule, CosineGoesFromBaseToMinLr) {
  // base 0.1, min_lr 0.001, 100 steps: lr = 0.001 + 0.099 * (1 + cos(pi * t / 100)) / 2.
  auto s = schedule("cosine");
  s.min_lr = 0.001;
  EXPECT_NEAR(lr_factor(s, 0.1, 0, 10, 100), 1.0, kTol);
  EXPECT_NEAR(lr_factor(s, 0.1, 25, 10, 100), 0.855017856687341, kTol);  // (0.001 + 0.099 * 0.853553) / 0.1
  EXPECT_NEAR(lr_factor(s, 0.1, 50, 10, 100), 0.505, kTol);              // (0.001 + 0.0495) / 0.1
  EXPECT_NEAR(lr_factor(s, 0.1, 100, 10, 100), 0.01, kTol);              // min_lr / base
  // A step past the end (e.g. a rounding of steps per epoch) stays at min_lr, not back up the curve.
  EXPECT_NEAR(lr_factor(s, 0.1, 150, 10, 100), 0.01, kTol);
}

TEST(Schedule, CosineMinLrIsAbsoluteNotRelative) {
  // The same min_lr is a different factor for a different base rate.
  auto s = schedule("cosine");
  s.min_lr = 0.001;
  EXPECT_NEAR(lr_factor(s, 0.01, 100, 10, 100), 0.1, kTol);
  EXPECT_NEAR(lr_factor(s, 0.01, 50, 10, 100), 0.55, kTol);  // (0.001 + 0.0045) / 0.01
}

TEST(Schedule, CosineWithZeroBaseRateStaysFinite) {
  // lr = 0 is a valid config; the factor must not be NaN/inf, or 0 * factor would poison the optimizer.
  auto s = schedule("cosine");
  s.min_lr = 0.001;
  double f = lr_factor(s, 0.0, 50, 10, 100);
  EXPECT_TRUE(std::isfinite(f));
  EXPECT_EQ(0.0 * f, 0.0);
}

TEST(Schedule, LinearWarmupRampsThenHandsOver) {
  auto s = schedule("constant");
  s.warmup_steps = 4;
  EXPECT_NEAR(lr_factor(s, 1e-3, 0, 10, 100), 0.25, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 1, 10, 100), 0.50, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 2, 10, 100), 0.75, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 3, 10, 100), 1.00, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 4, 10, 100), 1.00, kTol);
  EXPECT_NEAR(lr_factor(s, 1e-3, 1000, 10, 100), 1.00, kTol);
}

TEST(Schedule, WarmupMultipliesCosine) {
  // Warm-up 10 over a 100-step cosine to 0: the cosine keeps counting from step 0 during warm-up.
  auto s = schedule("cosine");
  s.warmup_steps = 10;
  s.min_lr = 0.0;
  EXPECT_NEAR(lr_factor(s, 0.1, 0, 10, 100), 0.1 * (1 + std::cos(0.0)) / 2, kTol);  // 1/10 of 1
  EXPECT_NEAR(lr_factor(s, 0.1, 4, 10, 100), 0.4980286753286195, kTol);  // 5/10 * (1 + cos(0.04 pi)) / 2
  EXPECT_NEAR(lr_factor(s, 0.1, 10, 10, 100), 0.9755282581475768, kTol);  // (1 + cos(0.1 pi)) / 2, warm-up over
  EXPECT_NEAR(lr_factor(s, 0.1, 50, 10, 100), 0.5, kTol);
  EXPECT_NEAR(lr_factor(s, 0.1, 100, 10, 100), 0.0, kTol);
}

TEST(Schedule, UnknownNameThrowsWithChoices) {
  try {
    lr_factor(schedule("linear"), 1e-3, 0, 10, 100);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("linear"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("cosine"), std::string::npos);
  }
}
