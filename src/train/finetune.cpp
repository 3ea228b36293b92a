#include "tltrain/train/finetune.h"

#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/core/error.h"

namespace tltrain::train {

config::RunConfig finetune_config(const FinetuneOptions& o) {
  const int chosen = (o.unfreeze > 0) + (o.unfreeze_blocks >= 0) + (o.unfreeze_layers >= 0) + (o.freeze_first >= 0) +
                     !o.unfreeze_from.empty();
  TLTRAIN_CHECK(chosen <= 1, ErrorKind::Usage,
                "give one of --unfreeze, --unfreeze-blocks, --unfreeze-layers, --freeze-first, --unfreeze-from");
  config::json trainable = config::json{{"fraction", 0.2}};
  if (o.unfreeze > 0) trainable = {{"fraction", o.unfreeze}};
  if (o.unfreeze_blocks >= 0) trainable = {{"blocks", o.unfreeze_blocks}};
  if (o.unfreeze_layers >= 0) trainable = {{"layers", o.unfreeze_layers}};
  if (o.freeze_first >= 0) trainable = {{"freeze_first", o.freeze_first}};
  if (!o.unfreeze_from.empty()) trainable = {{"from", o.unfreeze_from}};
  config::json j = checkpoint::load(o.checkpoint).config.resolved;
  config::json opt = {{"name", o.optimizer}, {"lr", o.lr}};
  if (o.optimizer == "sgd" || o.optimizer == "rmsprop") opt["momentum"] = o.momentum;
  j["stages"] = config::json::array({{{"name", "finetune"}, {"epochs", o.epochs}, {"trainable", trainable},
                                      {"batch_norm", o.batch_norm}, {"optimizer", opt}, {"feature_cache", false}}});
  j["output_dir"] = o.output_dir.empty() ? j.at("output_dir").get<std::string>() + "-finetune" : o.output_dir;
  for (const auto& s : o.overrides) config::apply_override(j, s);
  return config::parse_run_config(j, o.checkpoint + " + finetune options");
}

}  // namespace tltrain::train
