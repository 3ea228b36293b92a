#include "tltrain/checkpoint/onnx_file.h"

#include <mutex>
#include <opencv2/dnn.hpp>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

namespace tltrain::checkpoint {

namespace {

// Protobuf's wire format, enough to walk ModelProto's top-level fields.
uint64_t varint(const std::string& b, size_t& i, const std::string& path) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    TLTRAIN_CHECK(i < b.size(), ErrorKind::Data, "'" + path + "' is truncated or not an ONNX file");
    const auto c = static_cast<uint8_t>(b[i++]);
    v |= static_cast<uint64_t>(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
  }
  TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not an ONNX file (bad varint)");
}

/// Calls F(field, bytes) for each length-delimited field of message B; skips the others.
template <class F>
void fields(const std::string& b, const std::string& path, F&& f) {
  size_t i = 0;
  while (i < b.size()) {
    const uint64_t key = varint(b, i, path);
    const int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (type == 0) {
      varint(b, i, path);
    } else if (type == 1 || type == 5) {
      i += type == 1 ? 8 : 4;
    } else if (type == 2) {
      const uint64_t len = varint(b, i, path);
      TLTRAIN_CHECK(len <= b.size() - i, ErrorKind::Data, "'" + path + "' is truncated or not an ONNX file");
      f(field, b.substr(i, len));
      i += len;
    } else {
      TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not an ONNX file (wire type " + std::to_string(type) + ")");
    }
  }
  TLTRAIN_CHECK(i == b.size(), ErrorKind::Data, "'" + path + "' is truncated or not an ONNX file");
}

}  // namespace

std::map<std::string, std::string> onnx_metadata(const std::string& path) {
  const std::string bytes = read_file(path, "ONNX file");
  std::map<std::string, std::string> props;
  bool graph = false;
  fields(bytes, path, [&](int field, const std::string& value) {
    if (field == 7) graph = true;  // ModelProto.graph
    if (field != 14) return;       // ModelProto.metadata_props: StringStringEntryProto {key = 1, value = 2}
    std::string k, v;
    fields(value, path, [&](int f, const std::string& s) { (f == 1 ? k : v) = s; });
    props[k] = v;
  });
  TLTRAIN_CHECK(graph, ErrorKind::Data, "'" + path + "' is not an ONNX model (no graph)");
  return props;
}

struct OnnxNet::Impl {
  cv::dnn::Net net;
  std::mutex turn;
};

OnnxNet::OnnxNet(const std::string& path) : impl_(std::make_unique<Impl>()) {
  try {
    impl_->net = cv::dnn::readNetFromONNX(path);
  } catch (const cv::Exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "OpenCV DNN cannot read '" + path + "' as ONNX: " + e.msg);
  }
  TLTRAIN_CHECK(!impl_->net.empty(), ErrorKind::Data, "OpenCV DNN read no network from '" + path + "'");
  impl_->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  impl_->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
}

OnnxNet::~OnnxNet() = default;

std::vector<float> OnnxNet::forward(const float* batch, int64_t n, int64_t h, int64_t w, int64_t* classes) {
  const int dims[4] = {static_cast<int>(n), 3, static_cast<int>(h), static_cast<int>(w)};
  const cv::Mat blob(4, dims, CV_32F, const_cast<float*>(batch));  // read only: setInput copies it
  std::lock_guard<std::mutex> lock(impl_->turn);
  impl_->net.setInput(blob);
  cv::Mat out;
  try {
    out = impl_->net.forward();
  } catch (const cv::Exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "OpenCV DNN failed on a " + std::to_string(n) + "×3×" + std::to_string(h) + "×" +
                                      std::to_string(w) + " batch: " + e.msg);
  }
  TLTRAIN_CHECK(out.type() == CV_32F && out.dims == 2 && out.size[0] == n, ErrorKind::Data,
                "the ONNX network's output is not N×C float32 logits");
  *classes = out.size[1];
  const cv::Mat c = out.isContinuous() ? out : out.clone();
  return std::vector<float>(c.ptr<float>(), c.ptr<float>() + n * *classes);
}

}  // namespace tltrain::checkpoint
