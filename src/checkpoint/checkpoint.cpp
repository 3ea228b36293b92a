#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/checkpoint/model_file.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/export.h>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

namespace tltrain::checkpoint {

namespace {
constexpr const char* kFormat = "tltrain-checkpoint";

// The backbone's TorchScript bytes as a uint8 tensor that owns them. Serialised straight into a
// buffer sized from the weights: a 2.5 GB backbone (regnet_y_128gf) went through an ostringstream,
// its str() and a tensor copy, and each checkpoint took 20 s of page faults and memcpy.
torch::Tensor backbone_bytes(const torch::jit::Module& module, const torch::jit::ExtraFilesMap& extra) {
  size_t weights = 0;
  for (const auto& p : module.parameters()) weights += p.nbytes();
  for (const auto& b : module.buffers()) weights += b.nbytes();
  auto bytes = std::make_shared<std::string>();
  bytes->reserve(weights + weights / 64 + (size_t{1} << 20));
  torch::jit::ExportModule(module, [&](const void* data, size_t n) {
    bytes->append(static_cast<const char*>(data), n);
    return n;
  }, extra);
  return torch::from_blob(bytes->data(), {static_cast<int64_t>(bytes->size())}, [bytes](void*) {}, torch::kUInt8);
}

// LibTorch 1.13 cannot pickle LBFGS's `al` (history_size slots, the unused ones undefined). It is
// scratch that each iteration recomputes and step() reallocates when absent: drop it.
void drop_lbfgs_scratch(torch::optim::Optimizer& optimizer) {
  if (!dynamic_cast<torch::optim::LBFGS*>(&optimizer)) return;
  for (auto& [key, state] : optimizer.state()) static_cast<torch::optim::LBFGSParamState&>(*state).al(c10::nullopt);
}

// Reads a TorchScript file held in a uint8 tensor in place (no string or stream copies).
class TensorReader : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit TensorReader(torch::Tensor bytes) : bytes_(std::move(bytes)) {}
  size_t size() const override { return static_cast<size_t>(bytes_.numel()); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= size()) return 0;
    n = std::min<size_t>(n, size() - pos);
    std::memcpy(buf, static_cast<const char*>(bytes_.data_ptr()) + pos, n);
    return n;
  }

 private:
  torch::Tensor bytes_;
};
}  // namespace

config::json to_json(const Progress& p) {
  const StageProgress& s = p.stage_state;
  return {{"stage", p.stage}, {"epoch", p.epoch}, {"global_step", p.global_step}, {"have_best", p.have_best},
          {"best_value", p.best_value}, {"loss_scale", p.loss_scale}, {"loss_scale_good_steps", p.loss_scale_good_steps},
          {"stage_state", {{"have_best", s.have_best}, {"best", s.best}, {"wait", s.wait}, {"stopped", s.stopped}}}};
}

Progress progress_from_json(const config::json& j, const std::string& where) {
  try {
    Progress p;
    p.stage = j.at("stage").get<size_t>();
    p.epoch = j.at("epoch").get<int64_t>();
    p.global_step = j.at("global_step").get<int64_t>();
    p.have_best = j.at("have_best").get<bool>();
    p.best_value = j.at("best_value").get<double>();
    // Checkpoints from before mixed precision have no scaler: it starts afresh.
    p.loss_scale = j.value("loss_scale", 0.0);
    p.loss_scale_good_steps = j.value("loss_scale_good_steps", int64_t{0});
    // A stage's counters start empty ({}): every key has its default.
    const config::json& s = j.at("stage_state");
    p.stage_state = {s.value("have_best", false), s.value("best", 0.0), s.value("wait", int64_t{0}), s.value("stopped", false)};
    return p;
  } catch (const config::json::exception& e) {
    TLTRAIN_FAIL(ErrorKind::Data, where + ": its progress record is damaged (" + e.what() + "); resume from another checkpoint");
  }
}

void save(const std::string& path, model::Classifier& model, torch::optim::Optimizer* optimizer,
                     const config::json& info) {
  torch::serialize::OutputArchive archive;
  config::json full = info;
  full["format"] = kFormat;
  full["format_version"] = 1;
  archive.write("info", c10::IValue(full.dump()));
  // The backbone travels as its own TorchScript file (with its metadata) so a checkpoint is
  // self-contained: eval, export and finetune need nothing else.
  torch::jit::ExtraFilesMap extra{{model::kMetaFileName, model.meta().raw.dump()}};
  archive.write("backbone_pt", backbone_bytes(model.backbone_module(), extra));
  torch::serialize::OutputArchive head;
  for (const auto& p : model.head()->named_parameters(true)) head.write(p.key(), p.value().detach().cpu());
  archive.write("head", head);
  if (optimizer) {
    torch::serialize::OutputArchive opt;
    drop_lbfgs_scratch(*optimizer);
    optimizer->save(opt);
    archive.write("optimizer", opt);
  }
  write_atomically(path, [&](const std::string& tmp) { archive.save_to(tmp); });
}

bool looks_like_checkpoint(const std::string& path) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    // A backbone carries its metadata file, an exported model its model file; a checkpoint neither.
    return !reader.hasRecord(std::string("extra/") + model::kMetaFileName) && !reader.hasRecord(std::string("extra/") + kModelFileName) &&
           reader.hasRecord("data.pkl");
  } catch (const c10::Error&) {
    return false;
  }
}

Checkpoint load(const std::string& path, const torch::Device& device) {
  std::error_code ec;
  TLTRAIN_CHECK(std::filesystem::is_regular_file(path, ec), ErrorKind::Data, "checkpoint '" + path + "' does not exist");
  torch::serialize::InputArchive archive;
  c10::IValue info_value;
  try {
    archive.load_from(path, device);
    archive.read("info", info_value);
  } catch (const c10::Error& e) {
    TLTRAIN_FAIL(ErrorKind::Data, "'" + path + "' is not a tltrain checkpoint (written by `tltrain fit` as last.pt/best.pt)" +
                                      (path.size() > 3 && path.substr(path.size() - 3) == ".pt" ? "; a backbone or exported model is not a checkpoint" : ""));
  }
  Checkpoint ck;
  ck.info = config::json::parse(info_value.toStringRef());
  TLTRAIN_CHECK(ck.info.value("format", "") == kFormat && ck.info.value("format_version", 0) == 1, ErrorKind::Data,
                "'" + path + "' is not a tltrain checkpoint of format version 1");
  ck.config = config::parse_run_config(ck.info.at("config"), path + " (its config)");
  ck.classes = ck.info.at("classes").get<std::vector<std::string>>();
  if (ck.info.contains("progress")) ck.progress = progress_from_json(ck.info.at("progress"), "checkpoint '" + path + "'");
  torch::Tensor bytes;
  archive.read("backbone_pt", bytes);
  torch::jit::ExtraFilesMap extra{{model::kMetaFileName, ""}};
  // On a CUDA device the archive put the bytes there: read them from host memory.
  auto module = torch::jit::load(std::make_shared<TensorReader>(bytes.cpu().contiguous()), device, extra);
  ck.backbone = model::adopt_backbone(module, extra[model::kMetaFileName], path);
  torch::serialize::InputArchive head;
  archive.read("head", head);
  for (const auto& key : head.keys()) {
    torch::Tensor t;
    head.read(key, t);
    ck.head["head." + key] = t;
  }
  auto optimizer = std::make_shared<torch::serialize::InputArchive>();
  if (archive.try_read("optimizer", *optimizer)) ck.optimizer = optimizer;
  return ck;
}

model::Classifier classifier_from(const Checkpoint& ck, const torch::Device& device) {
  // A flatten head's width tells the feature map's positions it was trained at.
  int64_t positions = 1;
  const auto first = ck.head.find("head.dense.0.weight");
  if (ck.config.model.head.pooling == config::Pooling::Flatten && first != ck.head.end() && ck.backbone.meta.feature_channels > 0)
    positions = first->second.size(1) / ck.backbone.meta.feature_channels;
  model::Classifier m(ck.backbone, ck.config.model.head, static_cast<int64_t>(ck.classes.size()), device, positions);
  torch::NoGradGuard no_grad;
  for (const auto& p : m.head()->named_parameters(true)) {
    auto it = ck.head.find("head." + p.key());
    TLTRAIN_CHECK(it != ck.head.end() && it->second.sizes() == p.value().sizes(), ErrorKind::Data,
                  "checkpoint head does not match its config at '" + p.key() + "'");
    p.value().copy_(it->second);
  }
  return m;
}

}  // namespace tltrain::checkpoint
