#pragma once
// Learning-rate schedules as pure functions of the optimizer step: easy to test, and a resumed
// run gets the same rate from the same step count.
#include <cstdint>

#include "tltrain/config/run_config.h"

namespace tltrain::train {

/// The multiplier applied to every parameter group's base rate at optimizer step STEP (0-based,
/// counted within the stage). BASE_LR is the stage's optimizer lr (the head group's rate); it is
/// needed because cosine's min_lr is absolute. STEPS_PER_EPOCH turns steps into epochs for
/// "step"; TOTAL_STEPS is the stage's length for "cosine".
///   constant:    1
///   step:        gamma ^ floor(epoch / step_epochs)
///   exponential: decay_rate ^ (step / decay_steps), integer division when staircase (Keras ExponentialDecay)
///   cosine:      (min_lr + (base - min_lr) * (1 + cos(pi * step / total)) / 2) / base
/// Linear warm-up multiplies by (step + 1) / warmup_steps while step < warmup_steps.
/// A cosine stage of zero steps is never asked for a rate (it has no steps).
double lr_factor(const config::ScheduleConfig& s, double base_lr, int64_t step, int64_t steps_per_epoch, int64_t total_steps);

}  // namespace tltrain::train
