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
#include "tltrain/data/preprocess.h"

namespace fs = std::filesystem;

namespace tltrain::data {

size_t SkipReport::count() const {
  size_t n = 0;
  for (const auto& [reason, paths] : by_reason) n += paths.size();
  return n;
}

std::vector<int64_t> Dataset::class_counts() const {
  std::vector<int64_t> counts(classes.size(), 0);
  for (const auto& s : samples) {
    if (!s.labels.empty())
      for (int64_t c : s.labels) counts[static_cast<size_t>(c)]++;
    else if (s.label >= 0)
      counts[static_cast<size_t>(s.label)]++;
  }
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
    for (auto& f : walker.images_under(class_dirs[label])) d.samples.push_back({std::move(f), static_cast<int64_t>(label), {}});
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

/// One CSV row: the image and its class names.
struct CsvRow {
  std::string path;
  std::vector<std::string> labels;
};

bool is_path_header(std::string cell) {
  std::transform(cell.begin(), cell.end(), cell.begin(), [](unsigned char c) { return std::tolower(c); });
  return cell == "path" || cell == "file" || cell == "filename" || cell == "image" || cell == "img";
}

/// A row of a "path,label" list: "cat;dog" gives several labels.
CsvRow label_row(const std::vector<std::string>& cols, const std::string& where) {
  CsvRow r{cols[0], {}};
  std::stringstream ss(cols[1]);
  for (std::string part; std::getline(ss, part, ';');) {
    size_t a = part.find_first_not_of(" \t"), b = part.find_last_not_of(" \t");
    TLTRAIN_CHECK(a != std::string::npos, ErrorKind::Data, where + ": empty label in '" + cols[1] + "'; separate labels with ';', e.g. \"cat;dog\"");
    r.labels.push_back(part.substr(a, b - a + 1));
  }
  std::sort(r.labels.begin(), r.labels.end());
  r.labels.erase(std::unique(r.labels.begin(), r.labels.end()), r.labels.end());
  return r;
}

/// A row of a one-column-per-class list: 1 marks each class the image has.
CsvRow column_row(const std::vector<std::string>& cols, const std::vector<std::string>& header, const std::string& where) {
  TLTRAIN_CHECK(cols.size() == header.size(), ErrorKind::Data,
                where + ": " + std::to_string(cols.size()) + " columns, the header has " + std::to_string(header.size()));
  CsvRow r{cols[0], {}};
  for (size_t k = 1; k < cols.size(); ++k) {
    TLTRAIN_CHECK(cols[k] == "0" || cols[k] == "1", ErrorKind::Data,
                  where + ": column '" + header[k] + "' is '" + cols[k] + "'; each class column holds 0 or 1");
    if (cols[k] == "1") r.labels.push_back(header[k]);
  }
  std::sort(r.labels.begin(), r.labels.end());
  return r;
}

/// The rows of a CSV list, paths made absolute; *COLUMNS when it has one 0/1 column per class.
std::vector<CsvRow> read_csv_rows(const std::string& csv, bool* columns, std::vector<std::string>* header_classes) {
  std::ifstream in(csv);
  TLTRAIN_CHECK(in.good(), ErrorKind::Data, "cannot read CSV list '" + csv + "'");
  const fs::path base = fs::path(csv).parent_path();
  std::vector<CsvRow> rows;
  std::vector<std::string> header;
  std::string line;
  size_t lineno = 0;
  bool first = true;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    const auto cols = split_csv_line(line);
    const std::string where = csv + ":" + std::to_string(lineno);
    if (first && cols.size() >= 3 && is_path_header(cols[0])) {  // path,cat,dog,...: a 0/1 column per class
      header = cols;
      header_classes->assign(cols.begin() + 1, cols.end());
      first = false;
      continue;
    }
    TLTRAIN_CHECK(cols.size() >= 2 && !cols[0].empty() && (!header.empty() || !cols[1].empty()), ErrorKind::Data,
                  where + ": expected 'path,label' (or a header 'path,CLASS1,CLASS2,...' and 0/1 columns), got '" + line + "'");
    const bool header_row = first && cols[0] == "path" && cols[1] == "label";
    first = false;
    if (header_row) continue;
    CsvRow r = header.empty() ? label_row(cols, where) : column_row(cols, header, where);
    fs::path p(r.path);
    if (p.is_relative()) p = base / p;
    r.path = p.lexically_normal().string();
    rows.push_back(std::move(r));
  }
  *columns = !header.empty();
  return rows;
}

Dataset scan_csv(const std::string& csv) {
  Dataset d;
  d.source = csv;
  bool columns = false;
  std::vector<std::string> header_classes;
  const auto rows = read_csv_rows(csv, &columns, &header_classes);
  std::set<std::string> names(header_classes.begin(), header_classes.end());
  for (const auto& r : rows) {
    names.insert(r.labels.begin(), r.labels.end());
    d.multi_label = d.multi_label || r.labels.size() > 1;
  }
  d.multi_label = d.multi_label || columns;
  d.classes.assign(names.begin(), names.end());
  for (const auto& r : rows) {
    if (!is_image_extension(r.path)) {
      d.skipped.by_reason["not an image type (" + lower_ext(r.path) + ")"].push_back(r.path);
      continue;
    }
    if (!fs::exists(r.path)) {
      d.skipped.by_reason["listed in the CSV but missing"].push_back(r.path);
      continue;
    }
    Sample s{r.path, -1, {}};
    for (const auto& l : r.labels)
      s.labels.push_back(std::lower_bound(d.classes.begin(), d.classes.end(), l) - d.classes.begin());
    if (!s.labels.empty()) s.label = s.labels.front();
    if (!d.multi_label) s.labels.clear();  // one label per image: the plain single-label set
    d.samples.push_back(std::move(s));
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
  // Multi-label sets are stratified by each image's first class; images without one form a group.
  std::vector<std::vector<Sample>> per_class(num_classes + 1);
  for (const auto& s : samples) per_class[static_cast<size_t>(s.label + 1)].push_back(s);
  std::vector<Sample> keep, held;
  for (size_t g = 0; g <= num_classes; ++g) {
    const size_t c = (g + num_classes) % (num_classes + 1);  // class c's seed as before; the label-less group last
    auto& v = per_class[g];
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

std::vector<int64_t> stratified_folds(const std::vector<Sample>& samples, size_t num_classes, int64_t k, uint64_t seed,
                                      int64_t repeat) {
  TLTRAIN_CHECK(k >= 2 && k <= static_cast<int64_t>(samples.size()), ErrorKind::Usage,
                "--folds " + std::to_string(k) + ": needs 2 <= folds <= the number of images (" + std::to_string(samples.size()) + ")");
  std::vector<std::vector<size_t>> per_class(num_classes + 1);  // the label-less group (multi-label) last
  for (size_t i = 0; i < samples.size(); ++i)
    per_class[samples[i].label < 0 ? num_classes : static_cast<size_t>(samples[i].label)].push_back(i);
  std::vector<int64_t> fold(samples.size(), 0);
  int64_t next = 0;
  for (size_t c = 0; c < per_class.size(); ++c) {
    auto& v = per_class[c];
    std::sort(v.begin(), v.end(), [&](size_t a, size_t b) { return samples[a].path < samples[b].path; });
    SampleRng rng(mix_seed(seed, static_cast<uint64_t>(repeat) + 1, 0xF01D0000ULL + c));
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
    for (size_t i : v) fold[i] = next++ % k;
  }
  return fold;
}

Dataset merge_for_cv(const Datasets& d) {
  Dataset all = d.train;
  if (d.has_val) {
    all.samples.insert(all.samples.end(), d.val.samples.begin(), d.val.samples.end());
    all.source = d.val_is_split ? d.train.source : d.train.source + " + " + d.val.source;
    for (const auto& [reason, paths] : d.val.skipped.by_reason)
      all.skipped.by_reason[reason].insert(all.skipped.by_reason[reason].end(), paths.begin(), paths.end());
  }
  std::sort(all.samples.begin(), all.samples.end(),
            [](const Sample& a, const Sample& b) { return a.label != b.label ? a.label < b.label : a.path < b.path; });
  return all;
}

Datasets fold_datasets(const Dataset& all, const std::vector<int64_t>& folds, int64_t f) {
  TLTRAIN_ASSERT(folds.size() == all.samples.size(), "fold_datasets: one fold per sample");
  Datasets d;
  d.train = all;
  d.val = all;
  d.train.samples.clear();
  d.val.samples.clear();
  d.val.skipped = {};
  for (size_t i = 0; i < folds.size(); ++i) (folds[i] == f ? d.val : d.train).samples.push_back(all.samples[i]);
  d.val.source = all.source + " (cv fold " + std::to_string(f + 1) + ")";
  d.has_val = true;
  d.val_is_split = true;
  return d;
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
    out.val.multi_label = out.train.multi_label;
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
    for (const auto& s : d.val.samples) {
      config::json f = {{"path", s.path}, {"label", s.label >= 0 ? config::json(d.val.classes[static_cast<size_t>(s.label)]) : config::json(nullptr)}};
      if (d.train.multi_label) {
        f["labels"] = config::json::array();
        for (int64_t c : s.labels) f["labels"].push_back(d.val.classes[static_cast<size_t>(c)]);
      }
      files.push_back(f);
    }
  j["val_files"] = files;  // only for a validation_split: a separate val root is its own record
  return j;
}

}  // namespace tltrain::data
