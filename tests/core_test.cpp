// core helpers: the threads rule and the name tables.
#include <gtest/gtest.h>

#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/threads.h"

using namespace tltrain;

TEST(CoreThreads, RequestedWinsElseCoresSharedAtLeastOne) {
  const int64_t cores = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  EXPECT_EQ(threads_or_cores(3), 3);
  EXPECT_EQ(threads_or_cores(3, 4), 3);  // an explicit count is never divided
  EXPECT_EQ(threads_or_cores(0), cores);
  EXPECT_EQ(threads_or_cores(0, 2), std::max<int64_t>(1, cores / 2));
  EXPECT_EQ(threads_or_cores(0, 1000), 1);
  EXPECT_EQ(threads_or_cores(-1, 0), cores);
}

