#pragma once
// `tltrain serve`: an exported model behind HTTP (cpp-httplib). POST /predict (raw image body or
// multipart field "file") → top-k JSON; GET /health; GET /metadata. Requests are decoded on the
// connection threads and batched dynamically for the forward. No torch, no httplib here.
#include <cstdint>
#include <memory>
#include <string>

#include "tltrain/config/json_reader.h"

namespace tltrain::serve {

struct ServeOptions {
  std::string model;                    ///< file from `tltrain export`
  std::string host = "127.0.0.1";       ///< loopback unless told otherwise
  int port = 8080;                      ///< 0: any free port (Server::port() says which)
  int64_t max_batch = 16;               ///< images per forward; 1: no dynamic batching
  int64_t max_wait_ms = 2;              ///< longest the first image of a batch waits for more
  int64_t micro = 4;                    ///< rows per forward call (MobileNetV2 on CPU: 4 is fastest per image)
  int64_t queue_capacity = 128;         ///< preprocessed images waiting; beyond: 503
  int64_t max_body_bytes = 20 << 20;    ///< larger bodies: 413
  int64_t max_pixels = 0;               ///< decode guard (413 beyond); 0: the model's (PIL's default)
  int64_t timeout_ms = 10000;           ///< per request, arrival to answer: 504 beyond
  int64_t http_threads = 64;            ///< connections served at once (keep-alive holds one each)
  int64_t topk = 5;                     ///< default; ?topk=N per request
  int64_t torch_threads = 0;            ///< intra-op threads per forward; 0: cores / forward_workers
  int64_t forward_workers = 0;          ///< forwards running side by side; 0: one per core
  /// Freeze the module and fold BatchNorm into oneDNN convolutions (torch.jit.optimize_for_inference):
  /// ~20x faster per image on Debian's CPU LibTorch, whose generic BLAS makes plain convolutions slow.
  /// Logits then differ from the file's own by float rounding (~1e-5).
  bool optimize = true;
};

class Server {
 public:
  /// Loads the model (a Data error for a bad file) and starts the batcher; does not bind yet.
  explicit Server(const ServeOptions& opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds host:port (port 0: any free one) and serves on a background thread; returns the port.
  /// A Runtime error when the address cannot be bound.
  int start();
  /// Stops accepting, finishes the requests in flight and the queued images, then returns.
  void stop();
  int port() const;
  /// Counters for /health and tests: requests by outcome and the batcher's figures.
  config::json stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tltrain::serve
