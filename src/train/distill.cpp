#include "tltrain/train/distill.h"

#include <atomic>
#include <filesystem>
#include <optional>

#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/checkpoint/model_file.h"
#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/model/inference.h"

namespace tltrain::train {

namespace {
std::atomic<int64_t> g_teacher_images{0};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return "[" + s + "]";
}
}  // namespace

int64_t teacher_images_run() { return g_teacher_images.load(); }

/// Either network behind one forward: a checkpoint's classifier (its backbone as the
/// inference-optimised copy) or an exported model file, run as predict runs it (ModelFile::logits
/// pads the batches an int8 engine cannot take alone).
struct Teacher::Net {
  std::optional<model::Classifier> classifier;
  torch::jit::Module backbone;  ///< the classifier's, optimised
  std::optional<checkpoint::ModelFile> file;
};

Teacher::Teacher(const std::string& path, const torch::Device& device, const std::vector<std::string>& classes, int64_t micro)
    : path_(path), net_(std::make_unique<Net>()), micro_(micro) {
  TLTRAIN_CHECK(std::filesystem::is_regular_file(path), ErrorKind::Data,
                "distill.teacher '" + path + "' does not exist: give a checkpoint from tltrain fit (RUN_DIR/checkpoints/best.pt) "
                "or a model from tltrain export");
  std::vector<std::string> teacher_classes;
  if (checkpoint::looks_like_checkpoint(path)) {
    checkpoint::Checkpoint ck = checkpoint::load(path, device);
    net_->classifier.emplace(checkpoint::classifier_from(ck, device));
    net_->classifier->set_training(false, config::BatchNormPolicy::Frozen);
    pre_ = data::resolve_preprocess(ck.config.data, net_->classifier->meta().image_spec());
    teacher_classes = ck.classes;
    std::string why;
    net_->backbone = model::optimized_for_inference(net_->classifier->backbone_module(),
                                                    {std::max<int64_t>(1, micro > 0 ? micro : 8), 3, pre_.height, pre_.width}, &why);
    if (!why.empty()) log::debug("teacher runs its backbone as saved: " + why);
  } else {
    // Told by content before loading, so the answer is the same on every device.
    TLTRAIN_CHECK(checkpoint::is_zip_archive(path), ErrorKind::Data,
                  "distill.teacher '" + path + "' is not TorchScript (an ONNX file?); give the teacher's TorchScript model file or its " +
                      "checkpoint (the teacher runs in LibTorch)");
    const auto& mf = net_->file.emplace(checkpoint::load_model_file(path, device));
    pre_ = mf.info.preprocess;
    teacher_classes = mf.info.classes;
    TLTRAIN_CHECK(mf.info.output != "multilabel", ErrorKind::Data,
                  "distill.teacher '" + path + "' has a multi-label head; distillation matches one softmax over the classes");
  }
  TLTRAIN_CHECK(teacher_classes == classes, ErrorKind::Data,
                "distill.teacher '" + path + "' was trained on the classes " + join(teacher_classes) + " but the student's data has " +
                    join(classes) + ": distillation needs the same classes in the same order");
  log::info("teacher " + path + ": " + std::to_string(pre_.height) + "x" + std::to_string(pre_.width) + " input, " +
            std::to_string(classes.size()) + " classes");
}

Teacher::~Teacher() = default;

torch::Tensor Teacher::logits(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  g_teacher_images += images.size(0);
  return model::in_chunks(images, micro_, [&](const torch::Tensor& x) {
    if (net_->file) return net_->file->logits(x).to(torch::kFloat);
    auto& head = net_->classifier->head();
    return head->forward(head->pool(net_->backbone.forward({x}).toTensor())).to(torch::kFloat);
  });
}

torch::Tensor with_teacher(const torch::Tensor& labels, const torch::Tensor& teacher_logits) {
  return torch::cat({labels.to(teacher_logits.dtype()).unsqueeze(1), teacher_logits}, 1);
}

torch::Tensor TeacherTargets::targets(const data::Batch& b, const torch::Device& device) {
  const auto labels = b.labels.to(device, true);
  if (!fixed_) return with_teacher(labels, teacher_.logits(b.second_images.to(device, true)));
  std::vector<int64_t> missing;
  for (size_t i = 0; i < b.indices.size(); ++i)
    if (!kept_.count(b.indices[i])) missing.push_back(static_cast<int64_t>(i));
  if (!missing.empty()) {
    const auto rows = torch::tensor(missing, torch::kLong).to(b.second_images.device());
    const auto fresh = teacher_.logits(b.second_images.index_select(0, rows).to(device, true));
    for (size_t k = 0; k < missing.size(); ++k) kept_[b.indices[static_cast<size_t>(missing[k])]] = fresh[static_cast<int64_t>(k)];
  }
  std::vector<torch::Tensor> rows;
  for (int64_t i : b.indices) rows.push_back(kept_.at(i));
  return with_teacher(labels, torch::stack(rows));
}

}  // namespace tltrain::train
