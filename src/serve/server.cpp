#include "tltrain/serve/server.h"

#include <httplib.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/threads.h"
#include "tltrain/core/log.h"
#include "tltrain/data/image_io.h"
#include "tltrain/data/transforms.h"
#include "tltrain/model/inference.h"
#include "tltrain/serve/batcher.h"
#include "tltrain/checkpoint/model_file.h"
#include "tltrain/core/side_by_side.h"

namespace tltrain::serve {

namespace {
using Clock = std::chrono::steady_clock;
using config::json;

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void reply_error(httplib::Response& res, int status, const std::string& message) {
  reply(res, status, json{{"error", message}, {"status", status}});
}

/// The batcher needs to know how many requests are decoding; this keeps the count exact on every path.
struct Expecting {
  Batcher& b;
  bool done = false;
  explicit Expecting(Batcher& batcher) : b(batcher) { b.expect(); }
  void arrived() {
    if (!done) b.arrived();
    done = true;
  }
  ~Expecting() { arrived(); }
};
}  // namespace

struct Server::Impl {
  ServeOptions opts;
  checkpoint::ModelFile model;
  data::Transform transform;
  data::DecodeOptions decode;
  std::unique_ptr<Batcher> batcher;
  httplib::Server http;
  std::thread listener;
  int port = 0;
  std::atomic<int64_t> ok{0}, bad_request{0}, too_large{0}, busy{0}, timeouts{0}, failed{0};
  std::atomic<bool> running{false};
  int listen_fd = -1;
  bool optimized = false;  ///< the frozen oneDNN module serves (ServeOptions::optimize and it worked)
  int64_t workers = 1;     ///< forwards side by side

  explicit Impl(const ServeOptions& o)
      : opts(o), model(checkpoint::load_model_file(o.model)), transform(model.info.preprocess, config::AugmentConfig{}, data::Mode::Eval) {
    decode.max_pixels = opts.max_pixels > 0 ? opts.max_pixels : model.info.preprocess.max_pixels;
    decode.min_short_side = transform.min_decode_side();
    // One forward per core side by side, one intra-op thread each: measured 190 vs 133-146 req/s
    // for one forward on one or two threads (docs/benchmarks.md, Serving).
    workers = threads_or_cores(opts.forward_workers);
    const int64_t threads = threads_or_cores(opts.torch_threads, workers);
    set_intra_op_threads(threads);  // this thread's, for optimize and warm-up; each worker sets its own
    if (opts.optimize && !model.is_onnx()) optimize();  // OpenCV DNN optimises an ONNX net itself
    warm_up();
    BatcherOptions bo;
    bo.max_batch = opts.max_batch;
    bo.max_wait_ms = opts.max_wait_ms;
    bo.queue_capacity = opts.queue_capacity;
    bo.fill = opts.micro;
    bo.workers = workers;
    bo.threads = threads;
    batcher = std::make_unique<Batcher>(bo, [this](const torch::Tensor& x) {
      return checkpoint::probabilities(model.info, model.logits(x));
    });
    routes();
  }

  /// Swaps in the frozen, oneDNN-folded module when it computes what the file computes; otherwise
  /// (LibTorch cannot freeze every module, e.g. one whose types were already loaded differently in
  /// this process) serves the file as saved, with a warning.
  void optimize() {
    torch::InferenceMode guard;
    const auto& pre = model.info.preprocess;
    std::string why;
    // made on this thread's count, the one each batcher worker runs with
    model.module = model::optimized_for_inference(model.module, {2, 3, pre.height, pre.width}, &why, false);
    optimized = why.empty();
    if (!optimized) log::warn("cannot optimize the model for inference (" + why + "); serving the file as saved");
  }

  /// The first calls of a TorchScript module profile and optimize its graph: pay that before
  /// the first client does, for a single image and for a full micro-batch.
  void warm_up() {
    torch::InferenceMode guard;
    const auto& pre = model.info.preprocess;
    for (int64_t n : {int64_t{1}, std::max<int64_t>(1, std::min(opts.micro, opts.max_batch))})
      for (int i = 0; i < 2; ++i) model.logits(torch::zeros({n, 3, pre.height, pre.width}));
  }

  json metadata() const {
    const json& raw = model.info.raw;
    return {{"classes", model.info.classes},
            {"input_size", raw.at("preprocess").at("input_size")},
            {"preprocess", raw.at("preprocess")},
            {"backbone", raw.at("backbone")},
            {"head", raw.value("head", json::object())},
            {"training", raw.value("training", json::object())},
            {"exported_at", raw.value("exported_at", "")},
            {"serving", {{"max_batch", opts.max_batch}, {"max_wait_ms", opts.max_wait_ms}, {"queue_capacity", opts.queue_capacity},
                         {"max_body_bytes", opts.max_body_bytes}, {"max_pixels", decode.max_pixels},
                         {"timeout_ms", opts.timeout_ms}, {"topk", opts.topk}, {"optimized", optimized},
                         {"runtime", model.is_onnx() ? "opencv-dnn" : "libtorch"},
                         {"workers", workers}, {"intra_op_threads", torch::get_num_threads()}}}};
  }

  json stats() const {
    auto b = batcher->stats();
    return {{"ok", ok.load()}, {"bad_request", bad_request.load()}, {"too_large", too_large.load()}, {"busy", busy.load()},
            {"timeouts", timeouts.load()}, {"optimized", optimized}, {"failed", failed.load()}, {"queued", batcher->queued()},
            {"batches", b.batches}, {"images", b.images}, {"largest_batch", b.largest_batch}};
  }

  void predict(const httplib::Request& req, httplib::Response& res) {
    const auto t0 = Clock::now();
    int64_t k = opts.topk;
    if (req.has_param("topk")) {
      try {
        k = std::stoll(req.get_param_value("topk"));
      } catch (...) {
        k = 0;
      }
      if (k < 1) {
        ++bad_request;
        return reply_error(res, 400, "topk must be a positive integer");
      }
    }
    k = std::min<int64_t>(k, static_cast<int64_t>(model.info.classes.size()));
    const std::string* bytes = &req.body;
    std::string upload;
    if (req.is_multipart_form_data()) {
      if (!req.has_file("file")) {
        ++bad_request;
        return reply_error(res, 400, "multipart upload without a 'file' field");
      }
      upload = req.get_file_value("file").content;
      bytes = &upload;
    }
    if (bytes->empty()) {
      ++bad_request;
      return reply_error(res, 400, "empty upload: POST the image as the body or as multipart field 'file'");
    }
    auto job = std::make_shared<Batcher::Job>();
    auto future = job->result.get_future();
    {
      Expecting expecting(*batcher);
      cv::Mat pixels;
      auto decoded = transform.decode_eval(*bytes, decode, pixels);
      if (!decoded.ok()) {
        bool huge = decoded.failure == data::DecodeFailure::TooLarge;
        ++(huge ? too_large : bad_request);
        return reply_error(res, huge ? 413 : 400, "cannot use the image: " + decoded.reason());
      }
      const auto& pre = model.info.preprocess;
      job->image = torch::empty({3, pre.height, pre.width});
      transform.normalize_into(pixels, job->image.data_ptr<float>());
      if (!batcher->submit(job)) {
        ++busy;
        res.set_header("Retry-After", "1");
        return reply_error(res, 503, "server busy: the queue is full, retry shortly");
      }
    }
    if (future.wait_until(t0 + std::chrono::milliseconds(opts.timeout_ms)) != std::future_status::ready) {
      job->cancelled = true;
      ++timeouts;
      return reply_error(res, 504, "timed out after " + std::to_string(opts.timeout_ms) + " ms");
    }
    torch::Tensor probs;
    try {
      probs = future.get();
    } catch (const std::exception& e) {
      ++failed;
      return reply_error(res, 500, std::string("inference failed: ") + e.what());
    }
    probs = probs.contiguous();
    json labels = json::array();
    for (int64_t c : checkpoint::decided_classes(model.info, probs.data_ptr<float>(), static_cast<size_t>(probs.numel())))
      labels.push_back(model.info.classes[static_cast<size_t>(c)]);
    auto [p, idx] = probs.topk(k);
    json top = json::array();
    for (int64_t j = 0; j < k; ++j) {
      int64_t c = idx[j].item<int64_t>();
      top.push_back({{"class", model.info.classes[static_cast<size_t>(c)]}, {"index", c}, {"probability", p[j].item<float>()}});
    }
    ++ok;
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    reply(res, 200, json{{"labels", labels}, {"predictions", top}, {"latency_ms", ms}});
  }

  void routes() {
    http.new_task_queue = [n = opts.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(std::max<int64_t>(1, n))); };
    http.set_socket_options([this](socket_t sock) {
      httplib::default_socket_options(sock);
      // Accepted sockets inherit it on Linux: without it, httplib's header and body writes meet
      // Nagle and delayed ACKs and every answer waits ~40 ms.
      int one = 1;
      ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      listen_fd = static_cast<int>(sock);
    });
    http.set_payload_max_length(static_cast<size_t>(opts.max_body_bytes));
    http.set_keep_alive_max_count(1000);
    http.set_read_timeout(std::max<int64_t>(1, opts.timeout_ms / 1000), 0);
    http.set_write_timeout(std::max<int64_t>(1, opts.timeout_ms / 1000), 0);
    http.Post("/predict", [this](const httplib::Request& q, httplib::Response& r) { predict(q, r); });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
      json s = stats();
      s["status"] = "ok";
      reply(r, 200, s);
    });
    http.Get("/metadata", [this](const httplib::Request&, httplib::Response& r) { reply(r, 200, metadata()); });
    auto not_allowed = [](const char* allow) {
      return [allow](const httplib::Request& q, httplib::Response& r) {
        r.set_header("Allow", allow);
        reply_error(r, 405, q.method + " " + q.path + " is not allowed; use " + allow);
      };
    };
    for (const char* path : {"/predict"}) {
      http.Get(path, not_allowed("POST"));
      http.Put(path, not_allowed("POST"));
      http.Delete(path, not_allowed("POST"));
      http.Patch(path, not_allowed("POST"));
    }
    for (const char* path : {"/health", "/metadata"}) {
      http.Post(path, not_allowed("GET"));
      http.Put(path, not_allowed("GET"));
      http.Delete(path, not_allowed("GET"));
      http.Patch(path, not_allowed("GET"));
    }
    // httplib's own answers (404, 413 over max body, 400 unparsable) get a JSON body too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& q, httplib::Response& r) {
      if (r.body.empty()) {
        if (r.status == 413) ++too_large;
        // httplib parses form-encoded bodies and caps them at 8 KiB: curl --data-binary sends that type by default.
        bool form = q.get_header_value("Content-Type") == "application/x-www-form-urlencoded";
        std::string msg = r.status == 413 && form ? "the image was sent as application/x-www-form-urlencoded (curl --data-binary's "
                                                    "default); send it with -H 'Content-Type: image/jpeg' or as -F file=@image.jpg"
                          : r.status == 413 ? "body larger than max_body_bytes " + std::to_string(opts.max_body_bytes)
                          : r.status == 404 ? "no route " + q.path + "; try POST /predict, GET /health, GET /metadata"
                                            : "HTTP " + std::to_string(r.status);
        reply_error(r, r.status, msg);
      }
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([this](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
      ++failed;
      std::string msg = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        msg += std::string(": ") + e.what();
      } catch (...) {
      }
      reply_error(r, 500, msg);
    });
  }
};

Server::Server(const ServeOptions& opts) {
  TLTRAIN_CHECK(opts.max_batch >= 1, ErrorKind::Usage, "--max-batch must be >= 1, got " + std::to_string(opts.max_batch));
  TLTRAIN_CHECK(opts.max_wait_ms >= 0, ErrorKind::Usage, "--max-wait-ms must be >= 0");
  TLTRAIN_CHECK(opts.queue_capacity >= 1, ErrorKind::Usage, "--queue must be >= 1");
  TLTRAIN_CHECK(opts.max_body_bytes >= 1, ErrorKind::Usage, "--max-body must be >= 1");
  TLTRAIN_CHECK(opts.timeout_ms >= 1, ErrorKind::Usage, "--timeout-ms must be >= 1");
  TLTRAIN_CHECK(opts.http_threads >= 1, ErrorKind::Usage, "--http-threads must be >= 1");
  TLTRAIN_CHECK(opts.topk >= 1, ErrorKind::Usage, "--topk must be >= 1");
  TLTRAIN_CHECK(opts.port >= 0 && opts.port <= 65535, ErrorKind::Usage, "--port must be in 0..65535");
  impl_ = std::make_unique<Impl>(opts);
}

Server::~Server() { stop(); }

int Server::start() {
  Impl& m = *impl_;
  TLTRAIN_CHECK(!m.running, ErrorKind::Usage, "server already started");
  if (m.opts.port == 0) m.port = m.http.bind_to_any_port(m.opts.host);
  else m.port = m.http.bind_to_port(m.opts.host, m.opts.port) ? m.opts.port : -1;
  TLTRAIN_CHECK(m.port > 0, ErrorKind::Runtime,
                "cannot listen on " + m.opts.host + ":" + std::to_string(m.opts.port) + " (in use, or not an address of this machine)");
  // httplib listens with a backlog of 5: a burst of new connections overflows it and clients
  // see resets. Listening again on the bound socket only enlarges the queue.
  if (m.listen_fd >= 0) ::listen(m.listen_fd, SOMAXCONN);
  m.running = true;
  m.listener = std::thread([&m] { m.http.listen_after_bind(); });
  // stop() right after start() must find the server listening, or httplib would ignore it.
  while (!m.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return m.port;
}

void Server::stop() {
  if (!impl_) return;
  Impl& m = *impl_;
  if (m.running.exchange(false)) {
    // Closing the listener lets the connection threads finish what they hold; the batcher,
    // still running, answers their queued images before it stops.
    m.http.stop();
    if (m.listener.joinable()) m.listener.join();
  }
  m.batcher->stop();
}

int Server::port() const { return impl_->port; }

config::json Server::stats() const { return impl_->stats(); }

}  // namespace tltrain::serve
