#pragma once
// Per-epoch scalars in TensorBoard's event-file format: TFRecord framing around tensorflow.Event
// protos, encoded by hand — a few floats per epoch do not justify a TensorFlow or protobuf
// dependency, and Debian 12 packages neither TensorBoard nor a C++ writer for it.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "tltrain/config/json_reader.h"

namespace tltrain::train {

/// CRC-32C (Castagnoli), as TFRecord uses; crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, size_t size);

/// Appends events to DIR/events.out.tfevents.<unix time>.tltrain (a new file per writer, as
/// TensorBoard expects: it merges every file in the folder). Records are flushed per epoch; a
/// crash can leave a torn last record, which TensorBoard's reader stops at.
class EventFileWriter {
 public:
  explicit EventFileWriter(const std::string& dir);
  /// A tensorflow.Event{wall_time, step, summary{value{tag, simple_value}}}.
  void add_scalar(const std::string& tag, int64_t step, float value, double wall_time);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& event_bytes);
  std::string path_;
  std::ofstream out_;
};

/// One log.jsonl entry as scalars at step = global_epoch: loss/train, loss/val, accuracy/train,
/// accuracy/val, lr/head, lr/backbone, images_per_s (those the entry has).
void add_epoch_scalars(EventFileWriter& writer, const config::json& entry, double wall_time);

}  // namespace tltrain::train
