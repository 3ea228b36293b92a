#include "tltrain/train/event_file.h"

#include <array>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "tltrain/core/error.h"

namespace fs = std::filesystem;

namespace tltrain::train {

namespace {

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> t = [] {
    std::array<uint32_t, 256> a{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli polynomial
      a[i] = c;
    }
    return a;
  }();
  return t;
}

/// TFRecord stores CRCs rotated and offset, so a CRC of data that holds CRCs stays informative.
uint32_t masked_crc(const void* data, size_t size) {
  uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

// Protobuf wire format: key = field << 3 | wire type (0 varint, 1 fixed64, 2 bytes, 5 fixed32).
void put_double(std::string& out, int field, double v) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | 1);
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_le(out, bits, 8);
}
void put_float(std::string& out, int field, float v) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | 5);
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_le(out, bits, 4);
}
void put_int64(std::string& out, int field, int64_t v) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | 0);
  put_varint(out, static_cast<uint64_t>(v));
}
void put_bytes(std::string& out, int field, const std::string& b) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | 2);
  put_varint(out, b.size());
  out += b;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto& t = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  fs::create_directories(dir);
  const std::string base = dir + "/events.out.tfevents." + std::to_string(std::time(nullptr)) + ".tltrain";
  path_ = base;
  for (int i = 1; fs::exists(path_); ++i) path_ = base + "." + std::to_string(i);  // a resume within the same second
  out_.open(path_, std::ios::binary);
  TLTRAIN_CHECK(out_.good(), ErrorKind::Runtime, "cannot create the TensorBoard event file '" + path_ + "'");
  // Event.file_version (field 3) first: TensorBoard's loader checks it.
  std::string ev;
  put_double(ev, 1, static_cast<double>(std::time(nullptr)));
  put_bytes(ev, 3, "brain.Event:2");
  write_record(ev);
  flush();
}

void EventFileWriter::write_record(const std::string& data) {
  std::string rec;
  put_le(rec, data.size(), 8);
  put_le(rec, masked_crc(rec.data(), 8), 4);
  rec += data;
  put_le(rec, masked_crc(data.data(), data.size()), 4);
  out_.write(rec.data(), static_cast<std::streamsize>(rec.size()));
}

void EventFileWriter::add_scalar(const std::string& tag, int64_t step, float value, double wall_time) {
  std::string val;  // Summary.Value: tag = 1, simple_value = 2
  put_bytes(val, 1, tag);
  put_float(val, 2, value);
  std::string summary;  // Summary: repeated Value value = 1
  put_bytes(summary, 1, val);
  std::string ev;  // Event: wall_time = 1, step = 2, summary = 5
  put_double(ev, 1, wall_time);
  put_int64(ev, 2, step);
  put_bytes(ev, 5, summary);
  write_record(ev);
}

void EventFileWriter::flush() {
  out_.flush();
  TLTRAIN_CHECK(out_.good(), ErrorKind::Runtime, "could not write the TensorBoard event file '" + path_ + "' (disk full?)");
}

void add_epoch_scalars(EventFileWriter& w, const config::json& e, double wall_time) {
  const int64_t step = e.value("global_epoch", int64_t{0});
  static const std::pair<const char*, const char*> tags[] = {{"loss", "loss/train"},         {"val_loss", "loss/val"},
                                                             {"accuracy", "accuracy/train"}, {"val_accuracy", "accuracy/val"},
                                                             {"lr", "lr/head"},              {"lr_backbone", "lr/backbone"},
                                                             {"images_per_s", "images_per_s"}};
  for (const auto& [key, tag] : tags)
    if (e.contains(key) && e[key].is_number()) w.add_scalar(tag, step, e[key].get<float>(), wall_time);
}

}  // namespace tltrain::train
