#pragma once
// Which BLAS the process loaded: Debian's default libblas.so.3 is the unoptimized netlib
// reference, and LibTorch falls back to it (1x1 convolutions with one thread and small batches,
// every Dense layer).
#include <string>

namespace tltrain {

/// Path of the netlib reference BLAS when that is the libblas.so.3 loaded in this process, else "".
std::string reference_blas_loaded();

}  // namespace tltrain
