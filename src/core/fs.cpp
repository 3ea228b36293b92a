#include "tltrain/core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tltrain/core/error.h"

namespace fs = std::filesystem;

namespace tltrain {

namespace {
void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}
}  // namespace

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  TLTRAIN_CHECK(!ec, ErrorKind::Runtime, "cannot create directory '" + dir.string() + "': " + ec.message());
  // A random suffix keeps two writers (e.g. two ranks by mistake) from sharing a temp file.
  std::random_device rd;
  // Appended piece by piece: GCC 12 in C++20 mode (LibTorch 2.x) warns -Wrestrict, wrongly, on "." + std::string&&.
  std::string tmp_name = ".";
  tmp_name += target.filename().string();
  tmp_name += ".tmp";
  tmp_name += std::to_string(rd());
  fs::path tmp = dir / tmp_name;
  try {
    write(tmp.string());
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(tmp.string());
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    TLTRAIN_FAIL(ErrorKind::Runtime, "cannot write '" + path + "': " + ec.message());
  }
  fsync_path(dir.string());  // makes the rename itself durable
}

void write_file_atomically(const std::string& path, const std::string& content) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    TLTRAIN_CHECK(out.good(), ErrorKind::Runtime, "cannot write '" + tmp + "': " + std::strerror(errno));
  });
}

std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  TLTRAIN_CHECK(fs::exists(path, ec), ErrorKind::Data, what + " '" + path + "' does not exist");
  TLTRAIN_CHECK(!fs::is_directory(path, ec), ErrorKind::Data,
                what + " '" + path + "' is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  TLTRAIN_CHECK(in.good(), ErrorKind::Data, "cannot read " + what + " '" + path + "': " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RemoveOnExit::~RemoveOnExit() {
  std::error_code ec;
  std::filesystem::remove(path, ec);  // a destructor must not throw; a file already gone is fine
}

}  // namespace tltrain
