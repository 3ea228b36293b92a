#include "tltrain/core/threads.h"

#include <algorithm>
#include <thread>

namespace tltrain {

int64_t threads_or_cores(int64_t requested, int64_t sharers) {
  if (requested > 0) return requested;
  const int64_t cores = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  return std::max<int64_t>(1, cores / std::max<int64_t>(1, sharers));
}

}  // namespace tltrain
