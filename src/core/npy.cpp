#include "tltrain/core/npy.h"

#include <cstring>
#include <fstream>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

namespace tltrain {

namespace {
constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
}  // namespace

void write_npy(const std::string& path, const std::string& descr, const std::vector<int64_t>& shape, const void* bytes, size_t size) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // magic (6) + version (2) + length (2) + dict + padding + '\n', a multiple of 64 bytes.
  const size_t unpadded = kMagicLen + 4 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  TLTRAIN_ASSERT(dict.size() < 65536, "npy header too long");
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  out += dict;
  out.append(static_cast<const char*>(bytes), size);
  write_file_atomically(path, out);
}

NpyFile read_npy(const std::string& path) {
  const std::string all = read_file(path, "npy file");
  TLTRAIN_CHECK(all.size() >= 10 && all.compare(0, kMagicLen, kMagic, kMagicLen) == 0, ErrorKind::Data,
                "'" + path + "' is not a .npy file");
  const size_t len = static_cast<unsigned char>(all[8]) | (static_cast<size_t>(static_cast<unsigned char>(all[9])) << 8);
  TLTRAIN_CHECK(all.size() >= 10 + len, ErrorKind::Data, "'" + path + "': truncated .npy header");
  return {all.substr(10, len), all.substr(10 + len)};
}

}  // namespace tltrain
