#include "tltrain/train/run_log.h"

#include <algorithm>

#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <sstream>
#include <vector>

#include "tltrain/core/fs.h"
#include "tltrain/core/log.h"

namespace tltrain::train {

using config::json;

namespace {
std::string fmt_duration(double s) {
  int t = static_cast<int>(s + 0.5);
  std::ostringstream ss;
  ss << t / 60 << ":" << std::setw(2) << std::setfill('0') << t % 60;
  return ss.str();
}

}  // namespace

void write_logs(const std::string& dir, const json& history) {
  std::vector<std::string> cols{"stage", "stage_name", "epoch", "global_epoch", "step", "loss", "accuracy",
                                "val_loss", "val_accuracy", "lr", "lr_backbone", "images_per_s", "seconds"};
  // The objective's validation scores (val_roc_auc, val_map, ...) and loss scaling's figures
  // follow, in the order first met.
  const auto optional = [](const std::string& key) { return key.rfind("val_", 0) == 0 || key == "loss_scale" || key == "skipped_steps"; };
  for (const auto& e : history)
    for (const auto& item : e.items())
      if (optional(item.key()) && std::find(cols.begin(), cols.end(), item.key()) == cols.end()) cols.push_back(item.key());
  std::ostringstream csv, jsonl;
  for (size_t i = 0; i < cols.size(); ++i) csv << (i ? "," : "") << cols[i];
  csv << "\n";
  for (const auto& e : history) {
    for (size_t i = 0; i < cols.size(); ++i) {
      const json& v = e.contains(cols[i]) ? e[cols[i]] : json(nullptr);
      csv << (i ? "," : "") << (v.is_null() ? "" : v.is_string() ? v.get<std::string>() : v.dump());
    }
    csv << "\n";
    jsonl << e.dump() << "\n";
  }
  write_file_atomically(dir + "/log.csv", csv.str());
  write_file_atomically(dir + "/log.jsonl", jsonl.str());
}


Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), tty_(::isatty(2) && log::is_output_rank()), start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, double loss, double accuracy, int64_t images) {
  if (!tty_) return;
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double eta = done > 0 ? el / static_cast<double>(done) * static_cast<double>(total_ - done) : 0;
  int width = 24, filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
  std::fprintf(stderr, "\r%s [%s%s] %lld/%lld loss %.4f acc %.3f %.1f img/s ETA %s   ", label_.c_str(),
               std::string(static_cast<size_t>(filled), '=').c_str(), std::string(static_cast<size_t>(width - filled), ' ').c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), loss, accuracy,
               el > 0 ? static_cast<double>(images) / el : 0.0, fmt_duration(eta).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_) std::fprintf(stderr, "\r%*s\r", 110, "");
}

}  // namespace tltrain::train
