#pragma once
// "N threads when the user says, else the machine's cores": one rule, written once.
#include <cstdint>

namespace tltrain {

/// REQUESTED when > 0; else the machine's cores shared evenly by SHARERS processes or workers
/// (ranks on one machine, forwards side by side), at least 1.
int64_t threads_or_cores(int64_t requested, int64_t sharers = 1);

}  // namespace tltrain
