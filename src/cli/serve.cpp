// tltrain serve --model model.pt [--host 127.0.0.1] [--port 8080] [--max-batch 16] [--max-wait-ms 2] ...
#include <atomic>
#include <csignal>
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

namespace {
std::atomic<bool> g_stop{false};

void run_serve(const serve::ServeOptions& o) {
  // Ctrl-C/SIGTERM: stop accepting, answer what is in flight, exit 0. A second signal kills.
  auto on_signal = [](int sig) {
    g_stop = true;
    std::signal(sig, SIG_DFL);
  };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  app::serve(o, [] { return g_stop.load(); }, std::cout);
}
}  // namespace

void setup_serve(CLI::App& app) {
  auto o = std::make_shared<serve::ServeOptions>();
  auto* sub = app.add_subcommand("serve", "Serve an exported model over HTTP with dynamic batching");
  sub->add_option("--model", o->model, "Model file from `tltrain export`")->required()->check(CLI::ExistingFile);
  sub->add_option("--host", o->host, "Address to bind (default 127.0.0.1: this machine only)");
  sub->add_option("--port", o->port, "Port (default 8080; 0: any free port)")->check(CLI::Range(0, 65535));
  sub->add_option("--max-batch", o->max_batch, "Images per forward (default 16; 1: no dynamic batching)")->check(CLI::PositiveNumber);
  sub->add_option("--max-wait-ms", o->max_wait_ms, "Longest a batch waits to fill (default 2)")->check(CLI::NonNegativeNumber);
  sub->add_option("--queue", o->queue_capacity, "Images waiting at most; beyond: 503 (default 128)")->check(CLI::PositiveNumber);
  sub->add_option("--max-body", o->max_body_bytes, "Largest request body in bytes; beyond: 413 (default 20 MiB)")->check(CLI::PositiveNumber);
  sub->add_option("--max-pixels", o->max_pixels, "Largest image in pixels; beyond: 413 (default: the model's)")->check(CLI::NonNegativeNumber);
  sub->add_option("--timeout-ms", o->timeout_ms, "Per-request limit; beyond: 504 (default 10000)")->check(CLI::PositiveNumber);
  sub->add_option("--http-threads", o->http_threads, "Connections served at once (default 64)")->check(CLI::PositiveNumber);
  sub->add_option("--topk", o->topk, "Classes per answer (default 5; ?topk=N per request)")->check(CLI::PositiveNumber);
  sub->add_option("--threads", o->torch_threads, "Intra-op threads per forward (default: cores / workers)")->check(CLI::NonNegativeNumber);
  sub->add_option("--workers", o->forward_workers, "Forwards running side by side, each on its own batch (default: one per core)")
      ->check(CLI::PositiveNumber);
  sub->add_flag("!--no-optimize", o->optimize, "Run the file as saved, without freezing and oneDNN folding (slower; exact logits)");
  sub->add_option("--micro-batch", o->micro, "Rows per forward call, and the fill a batch waits for (default 4)")->check(CLI::PositiveNumber);
  sub->callback([o] { run_serve(*o); });
}

}  // namespace tltrain::cli
