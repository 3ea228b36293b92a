// tltrain data check --config X [--no-decode] | tltrain data preview --config X --out grid.png
#include <iostream>

#include "commands.h"
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/data/tools.h"
#include "tltrain/model/backbone_meta.h"

namespace tltrain::cli {

namespace {
struct DataCheckOptions {
  std::string config;
  std::vector<std::string> overrides;
  bool no_decode = false;
  int64_t threads = 0;
};

void run_data_check(const DataCheckOptions& o) {
  auto setup = data::load_data_setup(o.config, o.overrides, model::read_image_spec);
  std::cout << "preprocessing: " << setup.pre.describe() << "\n  (" << setup.note << ")\n";
  data::CheckOptions co;
  co.decode = !o.no_decode;
  co.threads = o.threads;
  auto report = data::check_data(setup, co);
  std::cout << data::format_check(report);
  TLTRAIN_CHECK(report.usable(), ErrorKind::Data, "a split has no usable images (see above): fix or replace the files listed");
}

struct DataPreviewOptions {
  std::string config, out;
  std::vector<std::string> overrides;
  int64_t n = 16, epoch = 0;
};

void run_data_preview(const DataPreviewOptions& o) {
  auto setup = data::load_data_setup(o.config, o.overrides, model::read_image_spec);
  int64_t tiles = data::write_preview(setup, o.out, o.n, o.epoch);
  std::cout << "wrote " << o.out << ": " << tiles << " augmented training samples of epoch " << o.epoch << " ("
            << setup.pre.height << "x" << setup.pre.width << ")\n";
}
}  // namespace

void setup_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Look at the data a config points to");
  data->require_subcommand(1);

  auto check = std::make_shared<DataCheckOptions>();
  auto* c = data->add_subcommand("check", "Images per class and split, skipped and undecodable files, class imbalance");
  c->add_option("-c,--config", check->config, "Run config (JSON, comments allowed)")->required()->check(CLI::ExistingFile);
  c->add_option("--set", check->overrides, "Override a config value: --set data.val=path (repeatable)");
  c->add_flag("--no-decode", check->no_decode, "Only scan the folders; do not decode every image");
  c->add_option("--threads", check->threads, "Decoding threads (default: one per core)")->check(CLI::NonNegativeNumber);
  c->callback([check] { run_data_check(*check); });

  auto preview = std::make_shared<DataPreviewOptions>();
  auto* p = data->add_subcommand("preview", "Write a PNG grid of augmented training samples");
  p->add_option("-c,--config", preview->config, "Run config (JSON, comments allowed)")->required()->check(CLI::ExistingFile);
  p->add_option("-o,--out", preview->out, "Output PNG")->required();
  p->add_option("--set", preview->overrides, "Override a config value (repeatable)");
  p->add_option("-n,--n", preview->n, "Number of samples")->capture_default_str();
  p->add_option("--epoch", preview->epoch, "Epoch whose augmentation to show")->capture_default_str();
  p->callback([preview] { run_data_preview(*preview); });
}

}  // namespace tltrain::cli
