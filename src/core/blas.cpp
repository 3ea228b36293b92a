#include "tltrain/core/blas.h"

#include <link.h>

#include <filesystem>

namespace tltrain {

std::string reference_blas_loaded() {
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("libblas.so") == std::string::npos) return 0;
        std::error_code ec;
        // Debian's alternatives: .../libblas.so.3 → .../blas/libblas.so.3 (netlib) or
        // .../openblas-*/libblas.so.3, .../atlas/libblas.so.3, ...
        const std::string real = std::filesystem::canonical(name, ec).string();
        if (!ec && real.find("/blas/libblas.so") != std::string::npos) *static_cast<std::string*>(out) = real;
        return 0;
      },
      &found);
  return found;
}

}  // namespace tltrain
