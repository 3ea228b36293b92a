#include "tltrain/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "tltrain/core/error.h"

namespace tltrain::train {

namespace {

double schedule_factor(const config::ScheduleConfig& s, double base_lr, int64_t step, int64_t steps_per_epoch,
                       int64_t total_steps) {
  switch (s.name) {
    case config::Schedule::Constant:
      return 1.0;
    case config::Schedule::Step: {
    TLTRAIN_ASSERT(steps_per_epoch > 0, "step schedule needs steps_per_epoch > 0");
    TLTRAIN_ASSERT(s.step_epochs > 0, "step schedule needs step_epochs > 0");
    const int64_t epoch = step / steps_per_epoch;
    return std::pow(s.gamma, static_cast<double>(epoch / s.step_epochs));
    }
    case config::Schedule::Exponential: {
    TLTRAIN_ASSERT(s.decay_steps > 0, "exponential schedule needs decay_steps > 0");
    const double exponent = s.staircase ? static_cast<double>(step / s.decay_steps)
                                        : static_cast<double>(step) / static_cast<double>(s.decay_steps);
    return std::pow(s.decay_rate, exponent);
    }
    case config::Schedule::Cosine: {
    TLTRAIN_ASSERT(total_steps > 0, "cosine schedule needs total_steps > 0");
    // lr = 0 is a valid config (nothing moves); min_lr cannot be expressed as a multiple of 0.
    if (base_lr <= 0.0) return 1.0;
    // Past the end the rate stays at min_lr instead of climbing back up the cosine.
    const double progress = static_cast<double>(std::min(step, total_steps)) / static_cast<double>(total_steps);
    const double lr = s.min_lr + (base_lr - s.min_lr) * (1.0 + std::cos(M_PI * progress)) / 2.0;
    return lr / base_lr;
    }
  }
  TLTRAIN_FAIL(ErrorKind::Usage, "schedule '" + config::name_of(s.name) + "' has no rule");
}

}  // namespace

double lr_factor(const config::ScheduleConfig& s, double base_lr, int64_t step, int64_t steps_per_epoch,
                 int64_t total_steps) {
  TLTRAIN_ASSERT(step >= 0, "optimizer step must be >= 0");
  double factor = schedule_factor(s, base_lr, step, steps_per_epoch, total_steps);
  if (step < s.warmup_steps)
    factor *= static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  return factor;
}

}  // namespace tltrain::train
