#pragma once
// Knowledge distillation: a fixed teacher network's logits on the student's training images
// become part of the targets ([label, teacher logits...] rows) that the Distill objective reads.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tltrain/data/loader.h"

namespace tltrain::train {

/// A tltrain checkpoint or exported model used in inference mode only, never updated: its own
/// backbone, input size and normalization, fed from the same decoded images as the student.
class Teacher {
 public:
  /// Loads PATH onto DEVICE; a Data error naming it when it is neither a checkpoint nor an
  /// exported model, or when its classes are not CLASSES (in that order). MICRO: forward chunk rows.
  Teacher(const std::string& path, const torch::Device& device, const std::vector<std::string>& classes, int64_t micro);
  ~Teacher();
  /// What its images must look like (the loader's second view).
  const data::Preprocess& preprocess() const { return pre_; }
  /// fp32 logits N×C of IMAGES (already in preprocess()'s form), without autograd.
  torch::Tensor logits(const torch::Tensor& images);
  const std::string& path() const { return path_; }

 private:
  struct Net;
  std::string path_;
  data::Preprocess pre_;
  std::unique_ptr<Net> net_;
  int64_t micro_ = 0;
};

/// Images the teachers of this process have run on: what the tests count to see teacher logits
/// cached instead of recomputed.
int64_t teacher_images_run();

/// The Distill objective's training targets: LABELS (N) as column 0, TEACHER_LOGITS (N×C) after it.
torch::Tensor with_teacher(const torch::Tensor& labels, const torch::Tensor& teacher_logits);

/// A loader stage's distillation targets: the teacher runs on each batch's second view, or, when
/// the stage's views never change (FIXED_VIEWS: no random augmentation), once per image and its
/// logits are kept by sample index for the later epochs.
class TeacherTargets {
 public:
  TeacherTargets(Teacher& teacher, bool fixed_views) : teacher_(teacher), fixed_(fixed_views) {}
  /// with_teacher(B's labels, the teacher's logits of B's images), on DEVICE.
  torch::Tensor targets(const data::Batch& b, const torch::Device& device);

 private:
  Teacher& teacher_;
  bool fixed_;
  std::map<int64_t, torch::Tensor> kept_;  ///< sample index → logits (fixed views)
};

}  // namespace tltrain::train
