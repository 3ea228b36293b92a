#pragma once
// NumPy's .npy format (version 1.0), written so that numpy.load reads it unchanged: a header
// dict {'descr', 'fortran_order', 'shape'} padded to 64 bytes, then the C-order data.
#include <cstdint>
#include <string>
#include <vector>

namespace tltrain {

/// Writes BYTES (C order) as an array of numpy dtype DESCR ("<f4", "<i8", "|u1") and SHAPE to
/// PATH atomically. BYTES' size must be the product of SHAPE times the item size.
void write_npy(const std::string& path, const std::string& descr, const std::vector<int64_t>& shape, const void* bytes, size_t size);

/// The .npy file's bytes, for tests: the header dict's text and the data.
struct NpyFile {
  std::string header;
  std::string data;
};
NpyFile read_npy(const std::string& path);

}  // namespace tltrain
