// SPDX-License-Identifier: MIT
// zanj: inspect, check, compare and convert .zanj files (ours or Python ZANJ's).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <configured_model/configured_model.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#ifdef CONFIGURED_MODEL_DISTRIBUTED
#include <configured_model/distributed.hpp>
#endif

namespace {

using ojson = nlohmann::ordered_json;

bool g_json = false;

// ---- output helpers ----

void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows) {
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (std::size_t c = 0; c < r.size(); ++c) {
      s += r[c];
      if (c + 1 < r.size()) s += std::string(width[c] - r[c].size() + 2, ' ');
    }
    std::cout << s << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

std::string shape_text(const ojson& shape) {
  if (!shape.is_array()) return "";
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + shape[i].dump();
  return s + "]";
}

std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  std::ostringstream os;
  if (u == 0)
    os << b << " B";
  else
    os << std::fixed << std::setprecision(1) << v << " " << units[u];
  return os.str();
}

// Progress on stderr, only when it is a terminal and the file is large.
zanj::ProgressCallback progress_for(const std::string& label) {
  if (!::isatty(2)) return {};
  return [label](const zanj::Progress& p) {
    if (p.bytes_total < (16u << 20)) return;
    const int pct = static_cast<int>(100.0 * static_cast<double>(p.bytes_done) /
                                     static_cast<double>(p.bytes_total));
    std::cerr << "\r" << label << ": " << std::setw(3) << pct << "% " << human_bytes(p.bytes_done)
              << " / " << human_bytes(p.bytes_total) << "\033[K"
              << (p.bytes_done >= p.bytes_total ? "\n" : "") << std::flush;
  };
}

// A directory holding a distributed checkpoint (its index).
// An object store has no directories: an s3:// prefix is one when it holds an index.
bool is_distributed(const std::string& path) {
  const bool remote = path.rfind("s3://", 0) == 0;
#ifdef CONFIGURED_MODEL_DISTRIBUTED
  return (remote || std::filesystem::is_directory(path)) && zanj::is_distributed_checkpoint(path);
#else
  if (!remote && std::filesystem::is_directory(path)) {
    throw zanj::UsageError(path +
                           ": a directory; this zanj was built without distributed "
                           "checkpoints (CONFIGURED_MODEL_DISTRIBUTED)");
  }
  return false;
#endif
}

// Any format the library reads (.zanj, Python and libtorch .pt, safetensors, a distributed
// checkpoint's directory) as a tree.
// The whole tree of FILE. `mapped`: tensors alias a mapping of the file where they can (for
// verbs that look at shapes, not data: no tensor bytes are read).
// `strict`: anomalies a reader would warn about (a dtype cast, an unlisted $ref, a missing
// __zanj_meta__.json, an entry nothing references) are refused, as `verify` refuses them: a
// conversion is lossless or does not happen.
zanj::Node read_tree(const std::string& file, bool mapped = false, bool strict = false) {
#ifdef CONFIGURED_MODEL_DISTRIBUTED
  if (is_distributed(file)) return zanj::read_distributed(file, 0, 1);
#endif
  zanj::ReadOptions options;
  options.mmap = mapped;
  if (strict) options.error_mode = zanj::ErrorMode::kExcept;
  options.progress = progress_for("reading " + file);
  return zanj::read_weights(file, options);
}

// The tensor at KEY read alone, through LazyFile: only the JSON index and that tensor's entry
// are read, so `show` and `extract` of one tensor are instant on huge files. Empty when KEY is
// not a tensor the index lists (a subtree, a tensor inside an external list): then the caller
// reads the whole tree.
std::optional<torch::Tensor> lazy_tensor(const std::string& file, const std::string& key) {
  if (is_distributed(file)) return std::nullopt;
  const auto format = zanj::detect_format(file);
  if (format == zanj::WeightsFormat::kSafetensors) {
    const auto st = zanj::SafetensorsFile::open(file);
    if (!st.find(key)) return std::nullopt;
    return st.read_tensor(key);
  }
  if (format != zanj::WeightsFormat::kZanj) return std::nullopt;
  const auto lazy = zanj::LazyFile::open(file);
  if (!lazy.find(key)) return std::nullopt;
  return lazy.tensor(key);
}

// Finds KEY in the tree. Keys may themselves contain '/', so at each dict the longest key
// that matches a prefix of the rest wins.
const zanj::Node& resolve(const zanj::Node& root, const std::string& key) {
  const zanj::Node* node = &root;
  std::string rest = key;
  while (!rest.empty()) {
    if (node->is_dict()) {
      const zanj::Node* next = nullptr;
      std::size_t used = 0;
      for (const auto& [k, v] : node->as_dict()) {
        if (rest.compare(0, k.size(), k) == 0 &&
            (rest.size() == k.size() || rest[k.size()] == '/') && k.size() > used) {
          next = &v;
          used = k.size();
        }
      }
      if (!next) throw zanj::FormatError("key '" + key + "' not found (at '" + rest + "')");
      node = next;
      rest = rest.substr(std::min(rest.size(), used + 1));
    } else if (node->is_list()) {
      const auto slash = rest.find('/');
      const std::string idx = rest.substr(0, slash);
      if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) {
        throw zanj::FormatError("key '" + key + "': '" + idx + "' is not a list index");
      }
      node = &node->at(static_cast<std::size_t>(std::stoull(idx)));
      rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
    } else {
      throw zanj::FormatError("key '" + key + "' not found: '" + rest + "' goes below a leaf");
    }
  }
  return *node;
}

// JSON for a subtree, tensors summarized.
ojson describe(const zanj::Node& n) {
  if (n.is_tensor()) {
    ojson s = ojson::array();
    for (auto d : n.tensor().sizes()) s.push_back(d);
    return {
        {"tensor", {{"shape", s}, {"dtype", zanj::torch_dtype_name(n.tensor().scalar_type())}}}};
  }
  if (n.is_list()) {
    ojson out = ojson::array();
    for (const auto& v : n.as_list()) out.push_back(describe(v));
    return out;
  }
  if (n.is_dict()) {
    ojson out = ojson::object();
    for (const auto& [k, v] : n.as_dict()) out[k] = describe(v);
    return out;
  }
  return n.scalar();
}

ojson tensor_stats(const torch::Tensor& input, int64_t first_n) {
  torch::Tensor t = input.detach().to(torch::kCPU);
  if (t.is_complex()) t = torch::view_as_real(t);
  t = t.to(torch::kDouble).flatten();
  ojson s;
  s["shape"] = input.sizes().vec();
  s["dtype"] = zanj::torch_dtype_name(input.scalar_type());
  s["n_elements"] = input.numel();
  s["nan_count"] = t.isnan().sum().item<int64_t>();
  s["inf_count"] = t.isinf().sum().item<int64_t>();
  const auto finite = t.index({t.isfinite()});
  if (finite.numel() > 0) {
    s["min"] = finite.min().item<double>();
    s["max"] = finite.max().item<double>();
    s["mean"] = finite.mean().item<double>();
    s["std"] = finite.numel() > 1 ? finite.std().item<double>() : 0.0;
  } else {
    s["min"] = s["max"] = s["mean"] = s["std"] = nullptr;
  }
  ojson first = ojson::array();
  for (int64_t i = 0; i < std::min<int64_t>(first_n, t.numel()); ++i)
    first.push_back(t[i].item<double>());
  s["first_values"] = first;
  return s;
}

// ---- ls ----

struct Row {
  std::string key, type, shape, dtype, storage;
  std::uint64_t bytes = 0;
};

std::size_t item_size(const std::string& dtype) {
  const auto t = zanj::parse_dtype_name(dtype);
  return t ? c10::elementSize(*t) : 0;
}

void walk_json(const ojson& j, const std::string& key, const zanj::ArchiveReader& archive,
               const ojson& externals_info, std::vector<Row>& rows) {
  const auto child = [&](const std::string& k) { return key.empty() ? k : key + "/" + k; };
  if (j.is_object()) {
    const auto tag = j.value("__muutils_format__", j.value("__format__", std::string()));
    if (tag.rfind("torch.Tensor:", 0) == 0 || tag.rfind("numpy.ndarray:", 0) == 0) {
      Row r{key, "tensor", shape_text(j.value("shape", ojson())), j.value("dtype", std::string()),
            "",  0};
      const bool external = tag.size() > 9 && tag.compare(tag.size() - 9, 9, ":external") == 0;
      if (external) {
        const auto ref = j.value("$ref", std::string());
        r.storage = "external " + ref;
        const auto* e = archive.find(ref);
        if (!e)
          throw zanj::FormatError(archive.name() + ": " + key + ": $ref " + ref +
                                  ": missing entry");
        r.bytes = e->size;
      } else {
        r.storage = "inline " + tag.substr(tag.find(':') + 1);
        int64_t n = 1;
        for (const auto& d : j.value("shape", ojson::array())) n *= d.get<int64_t>();
        r.bytes = static_cast<std::uint64_t>(n) * item_size(r.dtype);
      }
      rows.push_back(r);
      return;
    }
    if (tag == "list:external" || tag == "tuple:external") {
      const auto ref = j.value("$ref", std::string());
      Row r{key, "list", "", "", "external " + ref, 0};
      const auto* e = archive.find(ref);
      if (!e)
        throw zanj::FormatError(archive.name() + ": " + key + ": $ref " + ref + ": missing entry");
      r.bytes = e->size;
      auto info = externals_info.is_object() ? externals_info.value(ref, ojson()) : ojson();
      if (info.is_object() && info.contains("len(data)"))
        r.shape = "[" + info["len(data)"].dump() + "]";
      rows.push_back(r);
      return;
    }
    rows.push_back({key.empty() ? "<root>" : key, tag.empty() ? "dict" : "dict " + tag,
                    "[" + std::to_string(j.size()) + "]", "", "inline", 0});
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "__muutils_format__" || it.key() == "__format__") continue;
      walk_json(it.value(), child(it.key()), archive, externals_info, rows);
    }
    return;
  }
  if (j.is_array()) {
    bool plain = true;
    for (const auto& v : j) plain = plain && !v.is_structured();
    rows.push_back({key, "list", "[" + std::to_string(j.size()) + "]", "", "inline", 0});
    if (!plain) {
      for (std::size_t i = 0; i < j.size(); ++i)
        walk_json(j[i], child(std::to_string(i)), archive, externals_info, rows);
    }
    return;
  }
  const char* type = j.is_number_integer() ? "int"
                     : j.is_number_float() ? "float"
                     : j.is_string()       ? "str"
                                           : j.type_name();
  rows.push_back({key, type, "", "", "inline", 0});
}

// Rows for a tree read whole (the formats without a JSON index).
void walk_node(const zanj::Node& n, const std::string& key, std::vector<Row>& rows) {
  const auto child = [&](const std::string& k) { return key.empty() ? k : key + "/" + k; };
  if (n.is_tensor()) {
    const auto& t = n.tensor();
    rows.push_back({key, "tensor", c10::str(t.sizes()), zanj::torch_dtype_name(t.scalar_type()), "",
                    static_cast<std::uint64_t>(t.numel()) * t.element_size()});
  } else if (n.is_dict()) {
    rows.push_back(
        {key.empty() ? "<root>" : key, "dict", "[" + std::to_string(n.size()) + "]", "", "", 0});
    for (const auto& [k, v] : n.as_dict()) walk_node(v, child(k), rows);
  } else if (n.is_list()) {
    rows.push_back({key, "list", "[" + std::to_string(n.size()) + "]", "", "", 0});
    bool plain = true;  // a list of plain values is one row, as in walk_json
    for (const auto& item : n.as_list()) plain = plain && item.is_scalar();
    if (plain) return;
    for (std::size_t i = 0; i < n.size(); ++i) walk_node(n.at(i), child(std::to_string(i)), rows);
  } else {
    const auto& j = n.scalar();
    rows.push_back({key,
                    j.is_number_integer() ? "int"
                    : j.is_number_float() ? "float"
                    : j.is_string()       ? "str"
                                          : j.type_name(),
                    "", "", "", 0});
  }
}

std::vector<Row> foreign_rows(const std::string& file, zanj::WeightsFormat format) {
  std::vector<Row> rows;
  if (format == zanj::WeightsFormat::kSafetensors) {  // the header alone
    const auto st = zanj::SafetensorsFile::open(file);
    for (const auto& t : st.tensors()) {
      rows.push_back({t.key, "tensor", c10::str(c10::IntArrayRef(t.shape)),
                      zanj::torch_dtype_name(t.dtype),
                      "safetensors " + std::filesystem::path(t.file).filename().string(), t.bytes});
    }
    return rows;
  }
  walk_node(read_tree(file, /*mapped=*/true), "", rows);
  const std::string storage = zanj::format_name(format);
  for (auto& r : rows) r.storage = storage;
  return rows;
}

int cmd_ls(const std::string& file) {
  std::vector<Row> rows;
  const bool distributed = is_distributed(file);
#ifdef CONFIGURED_MODEL_DISTRIBUTED
  if (distributed) {  // the index alone
    const auto info = zanj::inspect_distributed(file);
    for (const auto& t : info.tensors) {
      rows.push_back({t.path, "tensor", c10::str(c10::IntArrayRef(t.shape)),
                      zanj::torch_dtype_name(t.dtype),
                      t.placement + ", " + std::to_string(t.pieces) + " piece(s) of " +
                          std::to_string(info.world_size) + " rank file(s)",
                      t.bytes});
    }
  }
#endif
  const auto format = distributed ? zanj::WeightsFormat::kZanj : zanj::detect_format(file);
  if (distributed) {
  } else if (format != zanj::WeightsFormat::kZanj) {
    rows = foreign_rows(file, format);
  } else {
    const auto archive = zanj::ArchiveReader::open(file);
    if (!archive.contains(zanj::kTreeEntry))
      throw zanj::FormatError(file + ": __zanj__.json: missing");
    const auto tree = zanj::parse_json(archive.read(zanj::kTreeEntry), file, zanj::kTreeEntry);
    ojson externals_info;
    if (archive.contains(zanj::kMetaEntry)) {
      externals_info = zanj::parse_json(archive.read(zanj::kMetaEntry), file, zanj::kMetaEntry)
                           .value("externals_info", ojson());
    }
    walk_json(tree, "", archive, externals_info, rows);
  }
  if (g_json) {
    ojson out = ojson::array();
    for (const auto& r : rows) {
      out.push_back({{"key", r.key},
                     {"type", r.type},
                     {"shape", r.shape},
                     {"dtype", r.dtype},
                     {"bytes", r.bytes},
                     {"storage", r.storage}});
    }
    std::cout << out.dump(1, '\t') << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> table;
  for (const auto& r : rows) {
    table.push_back(
        {r.key, r.type, r.shape, r.dtype, r.bytes ? human_bytes(r.bytes) : "", r.storage});
  }
  print_table({"KEY", "TYPE", "SHAPE", "DTYPE", "BYTES", "STORAGE"}, table);
  return 0;
}

// ---- show ----

int cmd_show(const std::string& file, const std::string& key, int64_t first_n) {
  std::optional<torch::Tensor> alone = key.empty() ? std::nullopt : lazy_tensor(file, key);
  zanj::Node root;
  if (!alone) root = read_tree(file);
  const zanj::Node& node = alone ? root : resolve(root, key);
  if (alone || node.is_tensor()) {
    const auto s = tensor_stats(alone ? *alone : node.tensor(), first_n);
    if (g_json) {
      std::cout << zanj::dump_json(s) << "\n";
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (auto it = s.begin(); it != s.end(); ++it) {
      rows.push_back({it.key(), it.value().is_number_float()
                                    ? zanj::format_double(it.value().get<double>())
                                    : zanj::dump_json(it.value(), zanj::JsonStyle::kLine)});
    }
    std::cout << key << "\n";
    print_table({"STAT", "VALUE"}, rows);
    return 0;
  }
  std::cout << zanj::dump_json(describe(node)) << "\n";
  return 0;
}

// ---- meta ----

ojson records_summary(const ojson& records) {
  if (!records.is_object()) return records.is_null() ? ojson() : ojson(records.type_name());
  ojson out = ojson::object();
  for (auto it = records.begin(); it != records.end(); ++it) {
    const auto& v = it.value();
    if (v.is_array() && !v.empty() &&
        std::all_of(v.begin(), v.end(), [](const ojson& x) { return x.is_number(); })) {
      double lo = INFINITY, hi = -INFINITY;
      for (const auto& x : v)
        lo = std::min(lo, x.get<double>()), hi = std::max(hi, x.get<double>());
      out[it.key()] = {
          {"count", v.size()}, {"first", v.front()}, {"last", v.back()}, {"min", lo}, {"max", hi}};
    } else if (v.is_array()) {
      out[it.key()] = {{"count", v.size()}};
    } else {
      out[it.key()] = v.is_structured() ? ojson(v.type_name()) : v;
    }
  }
  return out;
}

int cmd_meta(const std::string& file) {
  // Formats without ZANJ metadata (torch.save, safetensors) give null: their fields print null.
  const ojson read_meta = zanj::read_metadata(file);
  const ojson meta = read_meta.is_object() ? read_meta : ojson::object();
  const auto root = read_tree(file);
  ojson out;
  const zanj::Node* tag = root.is_dict() ? root.find("__muutils_format__") : nullptr;
  out["class"] = tag && tag->is_scalar() ? tag->scalar() : ojson();
  const zanj::Node* config = root.is_dict() ? root.find("zanj_model_config") : nullptr;
  out["config"] = config ? describe(*config) : ojson();
  out["versions"] = {
      {"configured_model", meta.value("configured_model", ojson())},
      {"libtorch", meta.value("/sysinfo/libtorch/version"_json_pointer, ojson())},
      {"python_torch", meta.value("/sysinfo/pytorch/torch.__version__"_json_pointer, ojson())}};
  out["zanj_cfg"] = meta.value("zanj_cfg", ojson());
  if (out["zanj_cfg"].is_object()) {
    out["zanj_cfg"].erase("serialization_handlers");
    out["zanj_cfg"].erase("load_handlers");
  }
  out["sysinfo"] = meta.value("sysinfo", ojson());
  out["timestamp"] = meta.value("timestamp", ojson());
  const zanj::Node* records = root.is_dict() ? root.find("training_records") : nullptr;
  out["training_records"] = records ? records_summary(describe(*records)) : ojson();
  if (const zanj::Node* ts = root.is_dict() ? root.find(zanj::kTrainingStateKey) : nullptr) {
    ojson t;
    if (const auto* c = ts->find("counters")) t["counters"] = c->to_json();
    if (const auto* o = ts->find("optimizer"); o && o->find("type"))
      t["optimizer"] = o->at("type").scalar();
    if (const auto* s = ts->find("scheduler")) t["scheduler"] = describe(*s);
    out["training_state"] = t;
  }
  std::cout << zanj::dump_json(out) << "\n";
  return 0;
}

// ---- verify ----

// A foreign file is sound when it reads whole: every CRC (torch.save), the header rules and
// every tensor's bytes (safetensors), libtorch's own checks.
zanj::VerifyReport verify_foreign(const std::string& file, zanj::WeightsFormat format) {
  zanj::VerifyReport report;
  try {
    if (format == zanj::WeightsFormat::kTorch) {
      zanj::ArchiveLimits limits;
      limits.check_consistency = true;
      const auto archive = zanj::ArchiveReader::open(file, limits);
      report.entries = archive.entries().size();
      for (const auto& e : archive.entries()) report.bytes += e.size;
    } else if (format == zanj::WeightsFormat::kSafetensors) {
      const auto st = zanj::SafetensorsFile::open(file);
      report.entries = st.tensors().size();
      report.notes.push_back(
          "safetensors: structure only (header, dtypes, shapes, offsets and bounds); the format "
          "has no checksum, so damaged tensor bytes cannot be detected");
    }
    zanj::ReadOptions options;
    const auto root = format == zanj::WeightsFormat::kSafetensors
                          ? zanj::SafetensorsFile::open(file).read_all(/*mmap=*/false)
                          : zanj::read_weights(file, options);
    for (const auto& [k, t] : zanj::flatten_tensors(root, true)) {
      ++report.tensors;
      if (format != zanj::WeightsFormat::kTorch) {
        report.bytes += static_cast<std::uint64_t>(t.numel()) * t.element_size();
      }
    }
    if (format == zanj::WeightsFormat::kLibtorch) report.entries = report.tensors;
    report.ok = true;
  } catch (const zanj::Error& e) {
    report.ok = false;
    report.problems.push_back(e.what());
  }
  return report;
}

// A distributed checkpoint: the index, every rank file (size, CRC-32, entries) and every piece.
zanj::VerifyReport verify_directory(const std::string& dir) {
  zanj::VerifyReport report;
#ifdef CONFIGURED_MODEL_DISTRIBUTED
  try {
    zanj::verify_distributed(dir);
    const auto info = zanj::inspect_distributed(dir);
    report.entries = info.files.size() + 1;
    for (auto b : info.file_bytes) report.bytes += b;
    report.tensors = info.tensors.size();
  } catch (const zanj::FormatError& e) {
    report.ok = false;
    report.problems.push_back(e.what());
  }
#else
  (void)dir;
#endif
  return report;
}

int cmd_verify(const std::string& file) {
  const bool distributed = is_distributed(file);
  const auto format = distributed ? zanj::WeightsFormat::kZanj : zanj::detect_format(file);
  const auto report = distributed                            ? verify_directory(file)
                      : format == zanj::WeightsFormat::kZanj ? zanj::verify(file)
                                                             : verify_foreign(file, format);
  if (g_json) {
    std::cout << zanj::dump_json({{"ok", report.ok},
                                  {"entries", report.entries},
                                  {"bytes", report.bytes},
                                  {"tensors", report.tensors},
                                  {"problems", report.problems},
                                  {"notes", report.notes}})
              << "\n";
  } else if (report.ok) {
    std::cout << file << ": OK (" << report.entries << " entries, " << human_bytes(report.bytes)
              << " checked, " << report.tensors << " tensors)\n";
    for (const auto& n : report.notes) std::cout << "  note: " << n << "\n";
  } else {
    std::cout << file << ": " << report.problems.size() << " problem(s)\n";
    for (const auto& p : report.problems) std::cout << "  " << p << "\n";
  }
  return report.ok ? 0 : 1;
}

// ---- diff ----

struct Diff {
  std::string key, kind, detail;
  bool identical = false;  // a tensor row that is bit-identical (listed, not a difference)
};

void diff_nodes(const zanj::Node& a, const zanj::Node& b, const std::string& key,
                std::vector<Diff>& out) {
  const auto child = [&](const std::string& k) { return key.empty() ? k : key + "/" + k; };
  if (a.is_tensor() && b.is_tensor()) {
    const auto& x = a.tensor();
    const auto& y = b.tensor();
    if (x.scalar_type() != y.scalar_type() || x.sizes() != y.sizes()) {
      out.push_back({key, "tensor",
                     zanj::torch_dtype_name(x.scalar_type()) + c10::str(x.sizes()) + " vs " +
                         zanj::torch_dtype_name(y.scalar_type()) + c10::str(y.sizes())});
      return;
    }
    const auto cx = x.contiguous(), cy = y.contiguous();
    const auto n = static_cast<std::size_t>(cx.numel()) * cx.element_size();
    if (n == 0 || std::memcmp(cx.data_ptr(), cy.data_ptr(), n) == 0) {
      out.push_back({key, "tensor", "identical", true});
      return;
    }
    auto dx = cx.is_complex() ? torch::view_as_real(cx) : cx;
    auto dy = cy.is_complex() ? torch::view_as_real(cy) : cy;
    const double max_abs = (dx.to(torch::kDouble) - dy.to(torch::kDouble))
                               .abs()
                               .nan_to_num(INFINITY)
                               .max()
                               .item<double>();
    out.push_back({key, "tensor", "max abs diff " + zanj::format_double(max_abs)});
    return;
  }
  if (a.is_dict() && b.is_dict()) {
    if (a.key_type() != b.key_type()) {  // {0: ...} and {"0": ...} are different Python dicts
      const auto name = [](zanj::Node::KeyType t) {
        return t == zanj::Node::KeyType::kInt ? "int" : "str";
      };
      out.push_back({key.empty() ? "<root>" : key, "keys",
                     std::string(name(a.key_type())) + " keys vs " + name(b.key_type()) + " keys"});
    }
    // Keys indexed once per side: Node::find scans, which is quadratic over large dicts.
    const auto index = [](const zanj::Node& n) {
      std::unordered_map<std::string_view, const zanj::Node*> keys;
      for (const auto& [k, v] : n.as_dict()) keys.emplace(k, &v);
      return keys;
    };
    const auto in_a = index(a), in_b = index(b);
    for (const auto& [k, v] : a.as_dict()) {
      if (key.empty() && k == "meta") continue;  // informational model metadata
      const auto w = in_b.find(k);
      if (w != in_b.end())
        diff_nodes(v, *w->second, child(k), out);
      else
        out.push_back({child(k), "missing", "only in A"});
    }
    for (const auto& [k, v] : b.as_dict()) {
      if (key.empty() && k == "meta") continue;
      if (in_a.count(k) == 0) out.push_back({child(k), "extra", "only in B"});
    }
    return;
  }
  if (a.is_list() && b.is_list() && a.size() == b.size()) {
    for (std::size_t i = 0; i < a.size(); ++i)
      diff_nodes(a.at(i), b.at(i), child(std::to_string(i)), out);
    return;
  }
  if (a.is_list() && b.is_list()) {
    out.push_back(
        {key, "value",
         "list of " + std::to_string(a.size()) + " vs list of " + std::to_string(b.size())});
    return;
  }
  const auto da = zanj::dump_json(describe(a), zanj::JsonStyle::kLine);
  const auto db = zanj::dump_json(describe(b), zanj::JsonStyle::kLine);
  if (da != db) {
    const bool config = key.rfind("zanj_model_config", 0) == 0;
    auto shorten = [](const std::string& s) { return s.size() > 60 ? s.substr(0, 57) + "..." : s; };
    out.push_back({key, config ? "config" : "value", shorten(da) + " vs " + shorten(db)});
  }
}

int cmd_diff(const std::string& a, const std::string& b, bool exact) {
  std::vector<Diff> diffs;
  diff_nodes(read_tree(a), read_tree(b), "", diffs);
  std::size_t differences = 0;
  for (const auto& d : diffs) differences += d.identical ? 0 : 1;
  if (g_json) {
    ojson out = ojson::array();
    for (const auto& d : diffs)
      out.push_back(
          {{"key", d.key}, {"kind", d.kind}, {"detail", d.detail}, {"identical", d.identical}});
    std::cout << zanj::dump_json({{"differences", differences}, {"rows", out}}) << "\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : diffs) rows.push_back({d.key, d.kind, d.detail});
    print_table({"KEY", "KIND", "DIFFERENCE"}, rows);
    std::cout << differences << " difference(s)\n";
  }
  return exact && differences > 0 ? 1 : 0;
}

// ---- extract / convert ----

int cmd_extract(const std::string& file, const std::string& key, const std::string& out) {
  std::optional<torch::Tensor> alone = lazy_tensor(file, key);
  if (!alone) {
    const auto root = read_tree(file);
    const auto& node = resolve(root, key);
    if (!node.is_tensor()) throw zanj::FormatError(file + ": " + key + ": not a tensor");
    alone = node.tensor();
  }
  const torch::Tensor tensor = *alone;
  const std::string bytes = zanj::encode_npy(tensor);
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw zanj::IoError(out + ": cannot write");
  std::cerr << "wrote " << out << " (" << human_bytes(bytes.size()) << ")"
            << (tensor.scalar_type() == torch::kBFloat16 ? ", bfloat16 stored as exact float32"
                                                         : "")
            << "\n";
  return 0;
}

// Renames "FROM=TO" (a regular expression and its replacement) applied to every tensor's key.
zanj::KeyMap key_map(const std::vector<std::string>& renames) {
  zanj::KeyMap keys;
  for (const auto& r : renames) {
    const auto eq = r.find('=');
    if (eq == std::string::npos) throw zanj::UsageError("--rename '" + r + "': expected FROM=TO");
    keys.rename(r.substr(0, eq), r.substr(eq + 1));
  }
  return keys;
}

// What keeping only `kept` (a subtree's tensors) leaves out of `n`: the topmost subtrees that
// hold none of them, and every value beside them.
using TensorSet = std::unordered_set<const void*>;

bool holds_kept(const zanj::Node& n, const TensorSet& kept) {
  if (n.is_tensor()) return kept.count(n.tensor().unsafeGetTensorImpl()) > 0;
  if (n.is_list()) {
    for (const auto& v : n.as_list())
      if (holds_kept(v, kept)) return true;
  } else if (n.is_dict()) {
    for (const auto& kv : n.as_dict())
      if (holds_kept(kv.second, kept)) return true;
  }
  return false;
}

void dropped_parts(const zanj::Node& n, const std::string& path, const TensorSet& kept,
                   std::vector<std::string>& out) {
  if (holds_kept(n, kept)) {
    const auto child = [&](const std::string& k) { return path.empty() ? k : path + "/" + k; };
    if (n.is_list()) {
      for (std::size_t i = 0; i < n.size(); ++i)
        dropped_parts(n.at(i), child(std::to_string(i)), kept, out);
    } else if (n.is_dict()) {
      for (const auto& [k, v] : n.as_dict()) dropped_parts(v, child(k), kept, out);
    }
    return;
  }
  out.push_back(path.empty() ? "<root>" : path);
}

int cmd_convert(const std::string& in, const std::string& out, const std::string& to,
                const std::vector<std::string>& renames, bool weights_only) {
  const zanj::WeightsFormat format =
      to.empty() ? zanj::format_for_extension(out) : zanj::parse_format_name(to);
  zanj::Node root = read_tree(in, false, /*strict=*/true);
  const bool tensors_only =
      format == zanj::WeightsFormat::kSafetensors || format == zanj::WeightsFormat::kLibtorch;
  // Formats of named tensors take the state dict of a model or checkpoint file; what else the
  // file holds (config, optimizer, counters) is listed, and dropped only with --weights-only.
  if (tensors_only && !zanj::flatten_tensors(root, true).empty()) {
    std::optional<zanj::Node> kept;
    try {
      kept = zanj::find_state_dict(root, "", in);
    } catch (const zanj::FormatError&) {
      // no state dict: the whole tree is flattened (and must hold only tensors)
    }
    if (kept) {
      TensorSet tensors;
      for (const auto& [k, t] : zanj::flatten_tensors(*kept, true))
        tensors.insert(t.unsafeGetTensorImpl());
      std::vector<std::string> dropped;
      dropped_parts(root, "", tensors, dropped);
      if (!dropped.empty()) {
        std::string list;
        for (std::size_t i = 0; i < dropped.size() && i < 12; ++i) list += "\n  " + dropped[i];
        if (dropped.size() > 12)
          list += "\n  ... and " + std::to_string(dropped.size() - 12) + " more";
        const std::string what = zanj::format_name(format) + " holds named tensors only; " +
                                 "writing the state dict drops " + std::to_string(dropped.size()) +
                                 " part(s) of " + in + ":" + list;
        if (!weights_only) {
          throw zanj::UsageError(what + "\nPass --weights-only to write the weights alone.");
        }
        std::cerr << "zanj: " << what << "\n";
      }
      root = std::move(*kept);
    }
  }
  if (!renames.empty()) {
    const auto keys = key_map(renames);
    zanj::Node::Dict renamed;
    std::unordered_set<std::string> names;
    for (auto& [k, t] : zanj::flatten_tensors(root, tensors_only ? false : true)) {
      const auto name = keys.apply(k);
      if (!name) continue;
      if (!names.insert(*name).second) {
        throw zanj::FormatError(in + ": " + k + ": renamed to '" + *name +
                                "', which another key already has");
      }
      renamed.emplace_back(*name, zanj::Node(t));
    }
    root = zanj::Node(std::move(renamed));
  }
  zanj::SaveOptions options;
  options.progress = progress_for("writing " + out);
  zanj::save_weights(root, out, format, options);
  std::cerr << "converted " << in << " to " << out << " (" << zanj::format_name(format) << ")\n";
  return 0;
}

#ifdef CONFIGURED_MODEL_DISTRIBUTED
// A CheckpointManager's directory: its newest committed distributed checkpoint (ckpt-<step>/).
std::optional<std::string> latest_distributed(const std::string& dir) {
  const auto all = zanj::list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (zanj::is_distributed_checkpoint(it->path)) return it->path;
  }
  return std::nullopt;
}
#endif

int cmd_consolidate(const std::string& in, const std::string& out) {
#ifdef CONFIGURED_MODEL_DISTRIBUTED
  std::string dir = in;
  if (!is_distributed(in)) {
    const bool remote = in.rfind("s3://", 0) == 0;
    const auto latest =
        remote || std::filesystem::is_directory(in) ? latest_distributed(in) : std::nullopt;
    if (!latest) {
      throw zanj::UsageError(in + ": neither a distributed checkpoint (no " +
                             std::string(zanj::kDistributedIndex) +
                             ") nor a checkpoint manager's directory holding one");
    }
    dir = *latest;
  }
  zanj::consolidate(dir, out);
  std::cerr << "consolidated " << dir << " into " << out << "\n";
  return 0;
#else
  (void)out;
  throw zanj::UsageError(in +
                         ": this zanj was built without distributed checkpoints "
                         "(CONFIGURED_MODEL_DISTRIBUTED)");
#endif
}

int cmd_import_pt(const std::string& in, const std::string& out) {
  const auto tensors = zanj::read_libtorch(in);
  zanj::Node root = zanj::Node::dict();
  zanj::Node sd = zanj::Node::dict();
  for (const auto& [name, t] : tensors) sd.as_dict().emplace_back(name, zanj::Node(t));
  root["state_dict"] = std::move(sd);
  zanj::SaveOptions options;
  options.progress = progress_for("writing " + out);
  zanj::save(root, out, options);
  std::cerr << "imported " << tensors.size() << " tensors from " << in << " into " << out
            << " (key state_dict)\n";
  return 0;
}

int cmd_export_pt(const std::string& in, const std::string& out) {
  const auto root = read_tree(in);
  const zanj::Node* sd = root.is_dict() ? root.find("state_dict") : nullptr;
  const zanj::StateDict tensors = zanj::flatten_tensors(sd ? *sd : root, true);
  zanj::save_libtorch(tensors, out);
  std::cerr << "exported " << tensors.size() << " tensors from " << in << " to " << out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Past `ulimit -f` a write fails with EFBIG ("File too large", an IoError naming the file)
  // instead of the default SIGXFSZ killing the process without a word.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"zanj: inspect, verify, compare and convert .zanj checkpoints (configured_model " +
               std::string(zanj::kLibraryVersion) + ")"};
  app.require_subcommand(1);
  app.add_flag("--json", g_json, "machine-readable JSON output");
  std::string file, file_b, key, out;
  bool exact = false;
  int64_t first_n = 10;

  auto* ls = app.add_subcommand("ls", "list the tree: type, shape, dtype, bytes, inline/external");
  ls->add_option("FILE", file)->required();
  auto* show =
      app.add_subcommand("show", "a JSON subtree, or a tensor's statistics and first values");
  show->add_option("FILE", file)->required();
  show->add_option("KEY", key, "path like state_dict/net.0.weight")->required();
  show->add_option("-n,--first", first_n, "how many first values to print")->capture_default_str();
  auto* meta =
      app.add_subcommand("meta", "config, versions, sysinfo and a training-records summary");
  meta->add_option("FILE", file)->required();
  auto* verify =
      app.add_subcommand("verify", "check CRCs, .npy headers against the JSON, structure");
  verify->add_option("FILE", file)->required();
  auto* diff = app.add_subcommand(
      "diff", "config differences, missing/extra keys, per-tensor max abs difference");
  diff->add_option("A", file)->required();
  diff->add_option("B", file_b)->required();
  diff->add_flag("--exact", exact,
                 "exit 0 only if every tensor and value is bit-identical "
                 "(metadata: timestamps, sysinfo, the model's meta block, ignored)");
  auto* extract = app.add_subcommand("extract", "write one tensor as a standalone .npy");
  extract->add_option("FILE", file)->required();
  extract->add_option("KEY", key)->required();
  extract->add_option("-o,--output", out, "output .npy path")->required();
  auto* import_pt =
      app.add_subcommand("import-pt", "convert a libtorch torch::save archive to .zanj");
  import_pt->add_option("IN", file)->required();
  import_pt->add_option("OUT", out)->required();
  auto* export_pt = app.add_subcommand("export-pt",
                                       "convert a .zanj state dict to a libtorch archive "
                                       "(torch::load(module, OUT) loads it)");
  export_pt->add_option("IN", file)->required();
  export_pt->add_option("OUT", out)->required();
  std::string to;
  std::vector<std::string> renames;
  bool weights_only = false;
  auto* convert = app.add_subcommand(
      "convert", "convert between .zanj, Python .pt, libtorch .pt and .safetensors");
  convert
      ->add_option("IN", file,
                   ".zanj, .pt (Python's or libtorch's), .safetensors or a "
                   "*.safetensors.index.json")
      ->required();
  convert->add_option("OUT", out, "output; its extension gives the format unless --to does")
      ->required();
  convert->add_flag("--weights-only", weights_only,
                    "to safetensors or libtorch-pt: write the state dict even though the rest "
                    "(config, optimizer, counters) is dropped");
  convert->add_option("--to", to, "zanj, pt (Python torch.save), libtorch-pt or safetensors")
      ->check(CLI::IsMember({"zanj", "pt", "libtorch-pt", "safetensors"}));
  convert->add_option("--rename", renames,
                      "FROM=TO: rename tensor keys by regular expression (repeatable)");
  auto* consolidate = app.add_subcommand(
      "consolidate", "one ordinary .zanj of a distributed checkpoint (a directory)");
  consolidate->add_option("PATH", file, "the checkpoint's directory")->required();
  consolidate->add_option("OUT", out, "output .zanj")->required();
  for (auto* sub : app.get_subcommands({}))
    sub->add_flag("--json", g_json, "machine-readable JSON output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a success; every usage error exits 2
  }
  try {
    if (*ls) return cmd_ls(file);
    if (*show) return cmd_show(file, key, first_n);
    if (*meta) return cmd_meta(file);
    if (*verify) return cmd_verify(file);
    if (*diff) return cmd_diff(file, file_b, exact);
    if (*extract) return cmd_extract(file, key, out);
    if (*import_pt) return cmd_import_pt(file, out);
    if (*export_pt) return cmd_export_pt(file, out);
    if (*convert) return cmd_convert(file, out, to, renames, weights_only);
    if (*consolidate) return cmd_consolidate(file, out);
  } catch (const zanj::Error& e) {
    std::cerr << "zanj: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "zanj: " << e.what() << "\n";
    return 2;
  }
  return 2;
}
