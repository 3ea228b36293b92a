#include "tltrain/data/dataset.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "tltrain/core/error.h"

namespace fs = std::filesystem;

namespace tltrain::data {

size_t SkipReport::count() const {
  size_t n = 0;
  for (const auto& [reason, paths] : by_reason) n += paths.size();
  return n;
}

std::vector<int64_t> Dataset::class_counts() const {
  std::vector<int64_t> counts(classes.size(), 0);
  for (const auto& s : samples) counts[static_cast<size_t>(s.label)]++;
  return counts;
}

bool is_image_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> ok{".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"};
  return ok.count(ext) > 0;
}

namespace {

std::string lower_ext(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext.empty() ? "(no extension)" : ext;
}

/// Walks class folders without ever throwing on the filesystem: symlinked files and folders are
/// followed once (a folder is entered once per scan, by device + inode, so a link loop ends);
/// loops, dangling links, unreadable folders and special files are skipped with a named reason.
class FolderWalker {
 public:
  explicit FolderWalker(SkipReport& skipped) : skipped_(skipped) {}

  /// The image files under DIR, sorted.
  std::vector<std::string> images_under(const fs::path& dir) {
    std::vector<std::string> files;
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0) walk(dir, st, files);
    std::sort(files.begin(), files.end());
    return files;
  }

 private:
  void skip(const std::string& reason, const fs::path& p) { skipped_.by_reason[reason].push_back(p.string()); }

  void walk(const fs::path& dir, const struct stat& st, std::vector<std::string>& files) {
    if (!entered_.insert({st.st_dev, st.st_ino}).second) {
      skip("folder already scanned (a symlink loop or a second link to it)", dir);
      return;
    }
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    if (ec) {
      skip("cannot read folder: " + ec.message(), dir);
      return;
    }
    std::vector<fs::path> entries;
    for (; it != end; it.increment(ec)) {
      if (ec) {
        skip("cannot list folder: " + ec.message(), dir);
        break;
      }
      entries.push_back(it->path());
    }
    std::sort(entries.begin(), entries.end());  // a deterministic walk: entered_ depends on the order
    for (const auto& p : entries) visit(p, files);
  }

  void visit(const fs::path& p, std::vector<std::string>& files) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {  // stat follows links: ELOOP, a dangling link, EACCES
      const int err = errno;
      skip(err == ELOOP ? "symlink loop" : err == ENOENT ? "dangling symlink" : std::string("cannot open: ") + std::strerror(err), p);
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      walk(p, st, files);
    } else if (!S_ISREG(st.st_mode)) {
      skip("not a regular file (a device, pipe or socket)", p);  // opening a pipe would block
    } else if (!is_image_extension(p.string())) {
      skip("not an image type (" + lower_ext(p) + ")", p);
    } else {
      files.push_back(p.string());
    }
  }

  SkipReport& skipped_;
  std::set<std::pair<dev_t, ino_t>> entered_;
};

}  // namespace

std::vector<std::string> list_images(const std::string& dir, SkipReport& skipped) {
  return FolderWalker(skipped).images_under(dir);
}

namespace {

Dataset scan_folder(const std::string& root) {
  Dataset d;
  d.source = root;
  std::error_code ec;
  std::vector<fs::path> class_dirs;
  fs::directory_iterator it(root, ec), end;
  TLTRAIN_CHECK(!ec, ErrorKind::Data, "cannot read data folder '" + root + "': " + ec.message() + " — check its permissions");
  for (; it != end; it.increment(ec)) {
    TLTRAIN_CHECK(!ec, ErrorKind::Data, "cannot list data folder '" + root + "': " + ec.message());
    const std::string name = it->path().filename().string();
    struct stat st {};
    if (!name.empty() && name[0] != '.' && ::stat(it->path().c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      class_dirs.push_back(it->path());
  }
  std::sort(class_dirs.begin(), class_dirs.end());
  TLTRAIN_CHECK(!class_dirs.empty(), ErrorKind::Data,
                "'" + root + "' has no class subfolders — expected ROOT/<class>/<image>, e.g. " + root + "/cats/001.jpg");
  FolderWalker walker(d.skipped);
  for (size_t label = 0; label < class_dirs.size(); ++label) {
    d.classes.push_back(class_dirs[label].filename().string());
    for (auto& f : walker.images_under(class_dirs[label])) d.samples.push_back({std::move(f), static_cast<int64_t>(label)});
  }
  return d;
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) { out.push_back(cur); cur.clear(); }
    else if (c != '\r') cur += c;
  }
  out.push_back(cur);
  for (auto& s : out) {
    size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
    s = a == std::string::npos ? "" : s.substr(a, b - a + 1);
  }
  return out;
}

Dataset scan_csv(const std::string& csv) {
  Dataset d;
  d.source = csv;
  std::ifstream in(csv);
  TLTRAIN_CHECK(in.good(), ErrorKind::Data, "cannot read CSV list '" + csv + "'");
  fs::path base = fs::path(csv).parent_path();
  std::vector<std::pair<std::string, std::string>> rows;
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    auto cols = split_csv_line(line);
    TLTRAIN_CHECK(cols.size() >= 2 && !cols[0].empty() && !cols[1].empty(), ErrorKind::Data,
                  csv + ":" + std::to_string(lineno) + ": expected 'path,label', got '" + line + "'");
    if (lineno == 1 && cols[0] == "path" && cols[1] == "label") continue;  // header row
    fs::path p(cols[0]);
    if (p.is_relative()) p = base / p;
    rows.emplace_back(p.lexically_normal().string(), cols[1]);
  }
  std::set<std::string> names;
  for (const auto& r : rows) names.insert(r.second);
  d.classes.assign(names.begin(), names.end());
  for (const auto& [path, label] : rows) {
    if (!is_image_extension(path)) {
      d.skipped.by_reason["not an image type (" + lower_ext(path) + ")"].push_back(path);
      continue;
    }
    if (!fs::exists(path)) {
      d.skipped.by_reason["listed in the CSV but missing"].push_back(path);
      continue;
    }
    auto it = std::lower_bound(d.classes.begin(), d.classes.end(), label);
    d.samples.push_back({path, static_cast<int64_t>(it - d.classes.begin())});
  }
  std::sort(d.samples.begin(), d.samples.end(), [](const Sample& a, const Sample& b) {
    return a.label != b.label ? a.label < b.label : a.path < b.path;
  });
  TLTRAIN_CHECK(!d.classes.empty(), ErrorKind::Data, "CSV list '" + csv + "' has no rows");
  return d;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

Dataset scan_source(const std::string& source) {
  std::error_code ec;
  TLTRAIN_CHECK(fs::exists(source, ec), ErrorKind::Data, "data source '" + source + "' does not exist");
  Dataset d = fs::is_directory(source, ec) ? scan_folder(source) : scan_csv(source);
  TLTRAIN_CHECK(!d.samples.empty(), ErrorKind::Data,
                "'" + source + "' has no images (accepted: jpg, jpeg, png, bmp, webp, tif, tiff; " +
                    std::to_string(d.skipped.count()) + " other files skipped)");
  return d;
}

std::pair<std::vector<Sample>, std::vector<Sample>> stratified_split(const std::vector<Sample>& samples, size_t num_classes,
                                                                     double fraction, uint64_t seed) {
  std::vector<std::vector<Sample>> per_class(num_classes);
  for (const auto& s : samples) per_class[static_cast<size_t>(s.label)].push_back(s);
  std::vector<Sample> keep, held;
  for (size_t c = 0; c < num_classes; ++c) {
    auto& v = per_class[c];
    std::sort(v.begin(), v.end(), [](const Sample& a, const Sample& b) { return a.path < b.path; });
    // Seeded per class so adding images to one class does not reshuffle the others.
    std::mt19937_64 rng(seed * 1000003ULL + c);
    std::shuffle(v.begin(), v.end(), rng);
    size_t n_held = static_cast<size_t>(std::llround(static_cast<double>(v.size()) * fraction));
    if (n_held == 0 && v.size() >= 2 && fraction > 0) n_held = 1;
    if (n_held >= v.size() && v.size() >= 1) n_held = v.size() - 1;  // keep one for training
    held.insert(held.end(), v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n_held));
    keep.insert(keep.end(), v.begin() + static_cast<std::ptrdiff_t>(n_held), v.end());
  }
  auto order = [](const Sample& a, const Sample& b) { return a.label != b.label ? a.label < b.label : a.path < b.path; };
  std::sort(keep.begin(), keep.end(), order);
  std::sort(held.begin(), held.end(), order);
  return {keep, held};
}

Datasets load_datasets(const config::DataConfig& cfg, uint64_t seed) {
  Datasets out;
  out.train = scan_source(cfg.train);
  if (!cfg.val.empty()) {
    out.val = scan_source(cfg.val);
    out.has_val = true;
    if (out.val.classes != out.train.classes) {
      std::vector<std::string> only_train, only_val;
      std::set_difference(out.train.classes.begin(), out.train.classes.end(), out.val.classes.begin(), out.val.classes.end(),
                          std::back_inserter(only_train));
      std::set_difference(out.val.classes.begin(), out.val.classes.end(), out.train.classes.begin(), out.train.classes.end(),
                          std::back_inserter(only_val));
      TLTRAIN_FAIL(ErrorKind::Data, "the validation classes differ from the training classes: only in train (" + cfg.train +
                                        "): [" + join(only_train) + "]; only in val (" + cfg.val + "): [" + join(only_val) +
                                        "] — both need the same class subfolders");
    }
  } else if (cfg.validation_split > 0) {
    auto [keep, held] = stratified_split(out.train.samples, out.train.classes.size(), cfg.validation_split, seed);
    out.val.source = cfg.train + " (validation_split " + std::to_string(cfg.validation_split) + ")";
    out.val.classes = out.train.classes;
    out.val.samples = std::move(held);
    out.train.samples = std::move(keep);
    out.has_val = true;
    out.val_is_split = true;
  }
  return out;
}

}  // namespace tltrain::data

namespace tltrain::data {

config::json split_to_json(const Datasets& d) {
  config::json j;
  j["classes"] = d.train.classes;
  j["train_source"] = d.train.source;
  j["train_count"] = d.train.samples.size();
  j["val_source"] = d.has_val ? config::json(d.val.source) : config::json(nullptr);
  j["val_is_split"] = d.val_is_split;
  config::json files = config::json::array();
  if (d.val_is_split)
    for (const auto& s : d.val.samples) files.push_back({{"path", s.path}, {"label", d.val.classes[static_cast<size_t>(s.label)]}});
  j["val_files"] = files;  // only for a validation_split: a separate val root is its own record
  return j;
}

}  // namespace tltrain::data
