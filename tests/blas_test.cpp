// reference_blas_loaded() against an independent reading of /proc/self/maps: the test binary
// links LibTorch, which loads libblas.so.3 (netlib or OpenBLAS, whichever Debian's alternatives pick).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "tltrain/core/blas.h"

TEST(Blas, ReferenceBlasIsReportedExactlyWhenItIsMapped) {
  torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));  // LibTorch is loaded and in use
  std::ifstream maps("/proc/self/maps");
  std::string line, netlib;
  bool any_blas = false;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (path.find("libblas.so") == std::string::npos && path.find("libopenblas") == std::string::npos) continue;
    any_blas = true;
    if (std::filesystem::canonical(path).string().find("/blas/libblas.so") != std::string::npos) netlib = std::filesystem::canonical(path);
  }
  if (!any_blas) GTEST_SKIP() << "this LibTorch loads no shared BLAS";
  EXPECT_EQ(tltrain::reference_blas_loaded(), netlib);
}
