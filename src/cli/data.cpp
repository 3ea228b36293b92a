// tltrain data check --config X [--no-decode] | tltrain data preview --config X --out grid.png
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

namespace {
struct DataOptions {
  std::string config, out;
  std::vector<std::string> overrides;
  bool no_decode = false;
  int64_t threads = 0, n = 16, epoch = 0;
};
}  // namespace

void setup_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Look at the data a config points to");
  data->require_subcommand(1);

  auto check = std::make_shared<DataOptions>();
  auto* c = data->add_subcommand("check", "Images per class and split, skipped and undecodable files, class imbalance");
  add_config_options(*c, check->config, check->overrides);
  c->add_flag("--no-decode", check->no_decode, "Only scan the folders; do not decode every image");
  c->add_option("--threads", check->threads, "Decoding threads (default: one per core)")->check(CLI::NonNegativeNumber);
  c->callback([check] { app::check_data(check->config, check->overrides, {!check->no_decode, check->threads}, std::cout); });

  auto preview = std::make_shared<DataOptions>();
  auto* p = data->add_subcommand("preview", "Write a PNG grid of augmented training samples");
  add_config_options(*p, preview->config, preview->overrides);
  p->add_option("-o,--out", preview->out, "Output PNG")->required();
  p->add_option("-n,--n", preview->n, "Number of samples")->capture_default_str();
  p->add_option("--epoch", preview->epoch, "Epoch whose augmentation to show")->capture_default_str();
  p->callback([preview] { app::preview_data(preview->config, preview->overrides, preview->out, preview->n, preview->epoch, std::cout); });
}

}  // namespace tltrain::cli
