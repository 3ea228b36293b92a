#include "tltrain/ship/onnx.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <opencv2/dnn.hpp>

#include "tltrain/config/json_reader.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

#ifndef TLTRAIN_SCRIPTS_DIR
#define TLTRAIN_SCRIPTS_DIR "scripts"
#endif

namespace tltrain::ship {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs CMD through the shell; its exit status and what it printed (stdout and stderr).
std::pair<int, std::string> run(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  TLTRAIN_CHECK(p != nullptr, ErrorKind::Runtime, "cannot start: " + cmd);
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

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

std::string onnx_python() { return env_or("TLTRAIN_PYTHON", "/usr/bin/python3"); }
std::string onnx_script() { return env_or("TLTRAIN_SCRIPTS_DIR", TLTRAIN_SCRIPTS_DIR) + "/export_onnx.py"; }

OnnxExport convert_to_onnx(const std::string& model_pt, const std::string& out, int opset) {
  const std::string py = onnx_python(), script = onnx_script();
  TLTRAIN_CHECK(std::filesystem::exists(py), ErrorKind::Usage,
                "ONNX export needs Python with torch and onnx: " + py +
                    " is missing (install python3-torch python3-onnx, or set TLTRAIN_PYTHON to an interpreter that has them)");
  TLTRAIN_CHECK(std::filesystem::exists(script), ErrorKind::Usage,
                "ONNX export needs " + script + " (set TLTRAIN_SCRIPTS_DIR to the tltrain checkout's scripts/ folder)");
  auto [rc, text] = run(shell_quote(py) + " " + shell_quote(script) + " --model " + shell_quote(model_pt) + " --out " +
                        shell_quote(out) + " --opset " + std::to_string(opset));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const auto nl = text.rfind('\n');
  const std::string last = nl == std::string::npos ? text : text.substr(nl + 1);
  if (rc == 3) TLTRAIN_FAIL(ErrorKind::Usage, "ONNX export: " + text);
  TLTRAIN_CHECK(rc == 0, ErrorKind::Data, "ONNX export of '" + model_pt + "' failed (" + script + " exit " + std::to_string(rc) + "): " + text);
  OnnxExport r;
  try {
    auto j = config::json::parse(last);
    r.out = j.at("out").get<std::string>();
    r.opset = j.at("opset").get<int>();
    r.bytes = j.at("bytes").get<int64_t>();
    r.ops = j.at("ops").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Runtime, script + " printed no summary (" + e.what() + "): " + text);
  }
  return r;
}

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

}  // namespace tltrain::ship
