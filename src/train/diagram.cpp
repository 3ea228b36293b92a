#include "tltrain/train/diagram.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>

#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"

namespace fs = std::filesystem;

namespace tltrain::train {

namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '&') o += "&amp;";
    else if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string shape(const std::vector<int64_t>& s) {
  std::string o;
  for (int64_t d : s) o += (o.empty() ? "" : "×") + std::to_string(d);
  return o.empty() ? "?" : o;
}

std::string count(int64_t n) {
  char buf[32];
  if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.1fK", static_cast<double>(n) / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

/// PROGRAM's path in a folder of $PATH, or "".
std::string find_on_path(const std::string& program) {
  const char* env = std::getenv("PATH");
  std::stringstream dirs(env ? env : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string f = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(f.c_str(), X_OK) == 0) return f;
  }
  return "";
}

enum class State { Frozen, Trains, Part };

/// What stage P does to block B: by its layers when the metadata has them (a layer cut can fall
/// inside a block), else by the block cut.
State block_state(const model::BackboneMeta& meta, size_t b, const StagePlan& p) {
  bool any = false, all = true;
  for (size_t l = 0; l < meta.layers.size(); ++l) {
    if (meta.layers[l].block != static_cast<int>(b)) continue;
    const bool trains = l >= p.cut.layer;
    any = any || trains;
    all = all && trains;
  }
  if (!any) return b >= p.cut.block && meta.layers.empty() ? State::Trains : State::Frozen;
  return all ? State::Trains : State::Part;
}

const char* cell(State s) {
  switch (s) {
    case State::Frozen: return "<TD BGCOLOR=\"#cfe3f7\">frozen</TD>";
    case State::Trains: return "<TD BGCOLOR=\"#f9c98b\">trains</TD>";
    case State::Part: return "<TD BGCOLOR=\"#fbe3c0\">part</TD>";
  }
  return "";
}

std::string stage_cells(const std::vector<StagePlan>& plan, const std::function<std::string(const StagePlan&)>& one) {
  std::string o;
  for (const auto& p : plan) o += one(p);
  return o;
}

}  // namespace

std::string diagram_dot(const DiagramSpec& spec) {
  TLTRAIN_ASSERT(spec.meta, "diagram without a backbone");
  const model::BackboneMeta& meta = *spec.meta;
  const size_t stages = spec.plan.size();
  const std::string span = std::to_string(std::max<size_t>(stages, 1));
  std::ostringstream d;
  d << "digraph model {\n  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=12, labelloc=t, label=\"" << esc(spec.title) << "\"];\n"
    << "  node [shape=plaintext, fontname=\"Helvetica\", fontsize=10];\n  edge [arrowsize=0.6];\n";
  const std::string stage_row =
      stages == 0 ? "" : "<TR>" + stage_cells(spec.plan, [](const StagePlan& p) { return "<TD><I>" + esc(p.name) + "</I></TD>"; }) + "</TR>";
  d << "  input [label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\"><TR><TD COLSPAN=\"" << span << "\"><B>input</B> 3×"
    << meta.input_size[0] << "×" << meta.input_size[1] << "</TD></TR>" << stage_row << "</TABLE>>];\n";
  std::string prev = "input";
  for (size_t b = 0; b < meta.blocks.size(); ++b) {
    const auto& blk = meta.blocks[b];
    const std::string id = "b" + std::to_string(b);
    d << "  " << id << " [label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\"><TR><TD COLSPAN=\"" << span << "\"><B>"
      << esc(blk.name) << "</B>  " << shape(blk.output_shape) << "  · " << count(blk.params) << " params</TD></TR>";
    if (stages > 0)
      d << "<TR>" << stage_cells(spec.plan, [&](const StagePlan& p) { return std::string(cell(block_state(meta, b, p))); }) << "</TR>";
    d << "</TABLE>>];\n  " << prev << " -> " << id << ";\n";
    prev = id;
  }
  if (spec.has_head) {
    const std::string trains = stages == 0 ? "" : "<TR>" + stage_cells(spec.plan, [](const StagePlan&) { return std::string(cell(State::Trains)); }) + "</TR>";
    auto node = [&](const std::string& id, const std::string& text) {
      d << "  " << id << " [label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" BGCOLOR=\"#f4f4f4\"><TR><TD COLSPAN=\"" << span
        << "\">" << text << "</TD></TR>" << trains << "</TABLE>>];\n  " << prev << " -> " << id << ";\n";
      prev = id;
    };
    d << "  pool [label=<<B>" << config::name_of(spec.head.pooling) << " pooling</B>  " << spec.head_in << ">, shape=box, style=rounded];\n  "
      << prev << " -> pool;\n";
    prev = "pool";
    int64_t in = spec.head_in;
    for (size_t i = 0; i < spec.head.hidden.size(); ++i) {
      const int64_t w = spec.head.hidden[i];
      node("dense" + std::to_string(i), "<B>Dense</B> " + std::to_string(w) + " " + config::name_of(spec.head.activation) + "  · " +
                                            count(in * w + w) + " params");
      in = w;
    }
    const int64_t outputs = spec.head.output == config::HeadOutput::Sigmoid ? 1 : spec.classes;
    node("out", "<B>Dense</B> " + std::to_string(outputs) + " → " + config::name_of(spec.head.output) + "  · " + count(in * outputs + outputs) +
                    " params");
  }
  if (stages > 0) {
    d << "  legend [label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\"><TR><TD COLSPAN=\"2\"><B>stages</B></TD></TR>";
    for (size_t i = 0; i < stages; ++i)
      d << "<TR><TD ALIGN=\"LEFT\">" << i + 1 << ". " << esc(spec.plan[i].name) << "</TD><TD ALIGN=\"LEFT\">" << spec.plan[i].epochs
        << " epochs, trains " << esc(spec.plan[i].trainable) << "</TD></TR>";
    d << "</TABLE>>];\n";
  }
  d << "}\n";
  return d.str();
}

std::string write_diagram(const std::string& dot, const std::string& path) {
  const fs::path p(path);
  const std::string exe = find_on_path("dot");
  if (p.extension() != ".svg" || exe.empty()) {
    const std::string out = fs::path(p).replace_extension(".dot").string();
    write_file_atomically(out, dot);
    return out;
  }
  const std::string dot_file = path + ".dot.tmp", svg_tmp = path + ".tmp";
  write_file_atomically(dot_file, dot);
  std::vector<std::string> args{exe, "-Tsvg", "-o", svg_tmp, dot_file};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int status = -1;
  if (posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), environ) == 0) waitpid(pid, &status, 0);
  fs::remove(dot_file);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::exists(svg_tmp))) {
    fs::remove(svg_tmp);
    TLTRAIN_FAIL(ErrorKind::Runtime, "Graphviz's dot (" + exe + ") could not render '" + path + "'; write a .dot file instead");
  }
  fs::rename(svg_tmp, path);
  return path;
}

DiagramSpec run_diagram(const config::RunConfig& cfg, const model::BackboneMeta& meta, int64_t head_in, int64_t classes) {
  DiagramSpec s;
  s.title = cfg.name + ": " + meta.arch + (cfg.model.features_from.empty() ? "" : " up to " + cfg.model.features_from);
  s.meta = &meta;
  s.has_head = true;
  s.head = cfg.model.head;
  s.head_in = head_in;
  s.classes = classes;
  s.plan = plan_stages(cfg, meta, classes, head_in);
  return s;
}

}  // namespace tltrain::train
