// tltrain distill --teacher T --config student.json [--temperature T] [--alpha A] [--set key=value ...]
#include <iostream>

#include "commands.h"
#include "tltrain/app/commands.h"

namespace tltrain::cli {

void setup_distill(CLI::App& app) {
  auto o = std::make_shared<app::DistillRequest>();
  auto* sub = app.add_subcommand("distill", "Train a run config's model as the student of a teacher (knowledge distillation)");
  sub->add_option("--teacher", o->teacher, "Teacher: a checkpoint from tltrain fit or a model from tltrain export")->required()->check(CLI::ExistingFile);
  sub->add_option("-c,--config", o->fit.config, "The student's run config (JSON)")->required()->check(CLI::ExistingFile);
  sub->add_option("--temperature", o->temperature, "Softmax temperature T of both networks (default 10)")->check(CLI::PositiveNumber);
  sub->add_option("--alpha", o->alpha, "Weight A of the teacher term; 1 - A weighs the labels' cross-entropy (default 0.9)")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--set", o->fit.overrides, "Override a config value (repeatable), as for fit");
  sub->add_flag("--tensorboard", o->fit.tensorboard, "Also write per-epoch scalars for TensorBoard to RUN_DIR/tb/");
  sub->callback([o] { app::distill(*o, std::cout); });
}

}  // namespace tltrain::cli
