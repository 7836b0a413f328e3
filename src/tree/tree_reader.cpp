// SPDX-License-Identifier: MIT
// ZANJ JSON + external entries -> Node (the read direction of the tree concept).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../format/shape_rule.hpp"
#include "../parallel.hpp"
#include "configured_model/dtype.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/json_text.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/metadata.hpp"
#include "configured_model/npy.hpp"
#include "configured_model/tree.hpp"

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

using detail::shape_text;

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string path_string(const std::vector<ojson>& path) {
  std::string s;
  for (const auto& p : path) {
    if (!s.empty()) s += '/';
    s += p.is_string() ? p.get_ref<const std::string&>() : p.dump();
  }
  return s.empty() ? std::string("<root>") : s;
}

std::string json_type(const ojson& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "float";
  return v.type_name();
}

class Reader {
 public:
  Reader(const ArchiveReader& archive, const ojson& externals_info, const ReadOptions& options,
         const TensorDestination& destination)
      : archive_(archive),
        externals_info_(externals_info),
        options_(options),
        destination_(destination) {
    // The JSON entries are read before the tree is walked; progress counts the externals.
    for (const auto& e : archive.entries()) {
      if (e.name != kTreeEntry && e.name != kMetaEntry) progress_.bytes_total += e.size;
    }
  }

  Node walk(const ojson& j, std::vector<ojson>& path) {
    if (j.is_array()) {
      Node::List items;
      items.reserve(j.size());
      for (std::size_t i = 0; i < j.size(); ++i) {
        path.emplace_back(i);
        items.push_back(walk(j[i], path));
        path.pop_back();
      }
      return Node(std::move(items));
    }
    if (!j.is_object()) return Node(j);
    const ojson* tag = tag_of(j);
    if (tag && tag->is_string()) {
      const auto& t = tag->get_ref<const std::string&>();
      if (starts_with(t, "torch.Tensor:") || starts_with(t, "numpy.ndarray:")) {
        return Node(tensor(j, t.substr(t.find(':') + 1), path));
      }
      if (t == "list:external" || t == "tuple:external" || t == "pandas.DataFrame:external" ||
          t == "polars.DataFrame:external") {
        return Node(jsonl(j, path));
      }
    }
    Node::Dict d;
    d.reserve(j.size());
    for (auto it = j.begin(); it != j.end(); ++it) {
      path.emplace_back(it.key());
      d.emplace_back(it.key(), walk(it.value(), path));
      path.pop_back();
    }
    return Node(std::move(d));
  }

 private:
  static const ojson* tag_of(const ojson& j) {
    if (auto it = j.find("__muutils_format__"); it != j.end()) return &*it;
    if (auto it = j.find("__format__"); it != j.end()) return &*it;  // ZANJ <= 0.3.1
    return nullptr;
  }

  [[noreturn]] void fail(const std::vector<ojson>& path, const std::string& what) const {
    detail::throw_format_error(archive_.name(), path_string(path), what);
  }

  void anomaly(const std::vector<ojson>& path, const std::string& what) const {
    switch (options_.error_mode) {
      case ErrorMode::kExcept:
        fail(path, what);
      case ErrorMode::kWarn:
        logger()->warn("{}", detail::message(archive_.name(), path_string(path), what));
        return;
      case ErrorMode::kIgnore:
        return;
    }
  }

  const ojson& field(const ojson& j, const char* key, const std::vector<ojson>& path) const {
    auto it = j.find(key);
    if (it == j.end()) fail(path, std::string("missing key '") + key + "'");
    return *it;
  }

  c10::ScalarType dtype(const ojson& j, const std::vector<ojson>& path) const {
    const ojson& d = field(j, "dtype", path);
    if (!d.is_string()) fail(path, "'dtype' must be a string, found " + json_type(d));
    const auto& name = d.get_ref<const std::string&>();
    auto parsed = parse_dtype_name(name);
    if (!parsed) fail(path, "unsupported dtype '" + name + "'");
    return *parsed;
  }

  std::optional<std::vector<int64_t>> shape(const ojson& j, const std::vector<ojson>& path) const {
    auto it = j.find("shape");
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_array()) fail(path, "'shape' must be a list, found " + json_type(*it));
    std::vector<int64_t> s;
    for (const auto& d : *it) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        fail(path, "'shape' must hold non-negative integers, found " + d.dump());
      }
      s.push_back(d.get<int64_t>());
    }
    return s;
  }

  int64_t checked_numel(const std::vector<int64_t>& s, at::ScalarType type,
                        const std::vector<ojson>& path) const {
    // Zero dimensions do not excuse the others: torch refuses shapes whose non-zero dimensions
    // overflow (16 bytes covers the widest item).
    if (!detail::shape_bytes(s, c10::elementSize(type))) fail(path, "shape product overflows");
    int64_t n = 1;
    for (auto d : s) n *= d;
    return n;
  }

  at::Tensor tensor(const ojson& j, const std::string& mode, std::vector<ojson>& path) {
    if (mode == "external") return external_tensor(j, path);
    const c10::ScalarType type = dtype(j, path);
    const auto declared = shape(j, path);
    const ojson& data = field(j, "data", path);
    if (mode == "zero_dim") {
      if (declared && !declared->empty()) {
        fail(path, "zero_dim tensor with non-empty shape " + j["shape"].dump());
      }
      return scalar_tensor(data, type, path);
    }
    if (mode == "array_list_meta") return list_tensor(data, declared, type, path);
    if (mode == "array_hex_meta" || mode == "array_b64_meta") {
      if (!declared) fail(path, "missing key 'shape'");
      if (!data.is_string()) fail(path, "'data' must be a string, found " + json_type(data));
      const auto& text = data.get_ref<const std::string&>();
      std::string bytes;
      try {
        bytes = mode == "array_hex_meta" ? unhex(text) : detail::base64_decode(text);
      } catch (const FormatError& e) {
        fail(path, e.what());
      }
      const int64_t n = checked_numel(*declared, type, path);
      const auto storage = type == at::kBool ? at::kByte : type;
      std::size_t expected = 0;
      if (__builtin_mul_overflow(static_cast<std::size_t>(n), c10::elementSize(storage),
                                 &expected) ||
          bytes.size() != expected) {
        fail(path, "data holds " + std::to_string(bytes.size()) + " bytes (expected " +
                       std::to_string(expected) + " for shape and dtype)");
      }
      // Allocated only once the data is known to fill it exactly.
      at::Tensor t = at::empty(*declared, at::TensorOptions().dtype(storage));
      if (expected) std::memcpy(t.data_ptr(), bytes.data(), expected);
      return type == at::kBool ? t.ne(0) : t;
    }
    fail(path, "unknown array mode '" + mode + "'");
  }

  static std::string unhex(const std::string& text) {
    if (text.size() % 2) throw FormatError("hex data has an odd number of digits");
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      throw FormatError(std::string("invalid hex digit '") + c + "'");
    };
    std::string out(text.size() / 2, '\0');
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<char>(nibble(text[2 * i]) * 16 + nibble(text[2 * i + 1]));
    }
    return out;
  }

  // One JSON number as an element of a tensor of `type`, refusing silent changes of value.
  struct Leaf {
    double f = 0;
    int64_t i = 0;
  };
  Leaf leaf(const ojson& v, c10::ScalarType type, const std::vector<ojson>& path) const {
    Leaf out;
    const bool floating = at::isFloatingType(type);
    if (v.is_boolean()) {
      out.i = v.get<bool>() ? 1 : 0;
      out.f = static_cast<double>(out.i);
    } else if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        fail(path, "value " + v.dump() + " does not fit int64");
      }
      out.i = v.get<int64_t>();
      out.f = static_cast<double>(out.i);
    } else if (v.is_number_float()) {
      out.f = v.get<double>();
      if (!floating) {
        if (!std::isfinite(out.f) || std::trunc(out.f) != out.f || std::fabs(out.f) >= 9.2e18) {
          fail(path, "value " + format_double(out.f) + " is not a valid " + numpy_dtype_name(type));
        }
        out.i = static_cast<int64_t>(out.f);
      }
    } else {
      fail(path, "tensor data must hold numbers, found " + json_type(v));
    }
    if (!floating && type != at::kBool) {
      int64_t lo = INT64_MIN, hi = INT64_MAX;
      switch (type) {
        case at::kByte:
          lo = 0, hi = 255;
          break;
        case at::kChar:
          lo = -128, hi = 127;
          break;
        case at::kShort:
          lo = INT16_MIN, hi = INT16_MAX;
          break;
        case at::kInt:
          lo = INT32_MIN, hi = INT32_MAX;
          break;
        default:
          break;
      }
      if (out.i < lo || out.i > hi) {
        fail(path, "value " + v.dump() + " out of range for " + numpy_dtype_name(type));
      }
    }
    return out;
  }

  at::Tensor scalar_tensor(const ojson& data, c10::ScalarType type,
                           const std::vector<ojson>& path) const {
    if (at::isComplexType(type)) fail(path, "complex zero_dim tensors are not supported inline");
    const Leaf l = leaf(data, type, path);
    if (at::isFloatingType(type))
      return at::scalar_tensor(l.f, at::TensorOptions().dtype(at::kDouble)).to(type);
    if (type == at::kBool) return at::scalar_tensor(l.i != 0, at::TensorOptions().dtype(at::kBool));
    return at::scalar_tensor(l.i, at::TensorOptions().dtype(at::kLong)).to(type);
  }

  // Checks the nesting against the shape while collecting leaves row-major.
  void collect(const ojson& v, const std::vector<int64_t>& s, std::size_t dim, c10::ScalarType type,
               std::vector<double>& f, std::vector<int64_t>& i,
               const std::vector<ojson>& path) const {
    if (dim == s.size()) {
      const Leaf l = leaf(v, type, path);
      if (at::isFloatingType(type)) {
        f.push_back(l.f);
      } else {
        i.push_back(l.i);
      }
      return;
    }
    if (!v.is_array() || static_cast<int64_t>(v.size()) != s[dim]) {
      fail(path, "data does not match shape " + shape_text(s) + " at dimension " +
                     std::to_string(dim) + " (expected " + std::to_string(s[dim]) +
                     " items, found " + (v.is_array() ? std::to_string(v.size()) : json_type(v)) +
                     ")");
    }
    for (const auto& item : v) collect(item, s, dim + 1, type, f, i, path);
  }

  at::Tensor list_tensor(const ojson& data, const std::optional<std::vector<int64_t>>& declared,
                         c10::ScalarType type, const std::vector<ojson>& path) const {
    if (at::isComplexType(type)) fail(path, "complex tensors are not supported inline");
    std::vector<int64_t> s;
    if (declared) {
      s = *declared;
    } else {
      // Python requires "shape"; we infer it from the nesting (first item of every level).
      for (const ojson* v = &data; v->is_array(); v = &(*v)[0]) {
        s.push_back(static_cast<int64_t>(v->size()));
        if (v->empty()) break;
      }
    }
    checked_numel(s, type, path);
    std::vector<double> f;
    std::vector<int64_t> i;
    collect(data, s, 0, type, f, i, path);
    if (at::isFloatingType(type)) {
      return at::from_blob(f.data(), s, at::TensorOptions().dtype(at::kDouble)).to(type).clone();
    }
    at::Tensor t = at::from_blob(i.data(), s, at::TensorOptions().dtype(at::kLong));
    return type == at::kBool ? t.ne(0) : t.to(type).clone();
  }

  std::string ref_of(const ojson& j, const std::vector<ojson>& path) const {
    auto it = j.find("$ref");
    if (it != j.end()) {
      if (!it->is_string()) fail(path, "'$ref' must be a string, found " + json_type(*it));
      const auto& ref = it->get_ref<const std::string&>();
      if (!externals_info_.is_object() || !externals_info_.contains(ref)) {
        anomaly(path, "'$ref' " + ref + " is not listed in __zanj_meta__.json externals_info");
      }
      return ref;
    }
    // No "$ref": Python locates data by externals_info paths, so do the same.
    if (externals_info_.is_object()) {
      const ojson wanted(path);
      for (auto e = externals_info_.begin(); e != externals_info_.end(); ++e) {
        if (e.value().is_object() && e.value().value("path", ojson()) == wanted) return e.key();
      }
    }
    fail(path, "external item has no '$ref' and no externals_info record");
  }

  std::string entry(const std::string& ref, const std::vector<ojson>& path) {
    if (!archive_.contains(ref)) {
      fail(path, "'$ref' names entry " + ref + ", which the archive does not contain");
    }
    std::string bytes = archive_.read(ref);
    report(ref, bytes.size());
    return bytes;
  }

  at::Tensor external_tensor(const ojson& j, std::vector<ojson>& path) {
    const std::string ref = ref_of(j, path);
    const EntryInfo* info = archive_.find(ref);
    if (!info) fail(path, "'$ref' names entry " + ref + ", which the archive does not contain");
    const std::optional<c10::ScalarType> want =
        j.contains("dtype") ? std::optional<c10::ScalarType>(dtype(j, path)) : std::nullopt;
    if (at::Tensor t = deferred_tensor(*info, want, j, path); t.defined()) return t;
    const std::size_t pending_before = pending_.size();
    at::Tensor t = direct_tensor(*info, want, path);
    if (t.defined()) {
      if (pending_.size() == pending_before) report(ref, info->size);
    } else {
      t = decode_npy(entry(ref, path), archive_.name(), ref);
    }
    if (const auto declared = shape(j, path)) {
      if (t.sizes().vec() != *declared) {
        fail(path, "shape mismatch (JSON says " + shape_text(*declared) + ", " + ref + " holds " +
                       shape_text(t.sizes().vec()) + ")");
      }
    }
    if (want && *want != t.scalar_type()) {
      // bfloat16 stored as exact <f4 is the documented convention, not an anomaly.
      const bool convention = *want == at::kBFloat16 && t.scalar_type() == at::kFloat;
      if (!convention) {
        anomaly(path, "dtype mismatch: JSON says " + j["dtype"].get<std::string>() + ", " + ref +
                          " holds " + numpy_dtype_name(t.scalar_type()) + "; casting");
      }
      t = t.to(*want);
    }
    return t;
  }

  // A tensor of a remote archive, allocated from its JSON item and filled by finish_remote().
  struct Deferred {
    const EntryInfo* entry;
    at::Tensor dst;
    std::vector<ojson> path;
    std::string dtype_text;
  };

  // A remote archive's stored entry whose JSON gives its shape and dtype (and whose entry can
  // hold that many bytes): the tensor is allocated now and filled by finish_remote(), which
  // reads the entries in file order, each big one's local header and first data range with
  // the small entries before it in one request. Undefined otherwise.
  at::Tensor deferred_tensor(const EntryInfo& info, std::optional<c10::ScalarType> want,
                             const ojson& j, const std::vector<ojson>& path) {
    // bfloat16 is stored as <f4 by convention: that one converts, through the direct path.
    if (archive_.can_map() || info.method != 0 || !want || *want == at::kBFloat16) return {};
    const auto declared = shape(j, path);
    if (!declared) return {};
    const auto bytes = detail::shape_bytes(*declared, c10::elementSize(*want));
    if (!bytes || *bytes > info.size) return {};  // the direct path says what is wrong
    at::Tensor dst;
    if (destination_) {
      dst = destination_(path_string(path));
      if (dst.defined() && !(dst.device().is_cpu() && dst.is_contiguous() &&
                             dst.scalar_type() == *want && dst.sizes().vec() == *declared)) {
        dst = at::Tensor();
      }
    }
    if (!dst.defined()) dst = at::empty(*declared, at::TensorOptions().dtype(*want));
    deferred_.push_back({&info, dst, path, j["dtype"].get<std::string>()});
    return dst;
  }

  // The start of a `.npy` entry, through its whole header: 4 KiB first (our headers are 64-128
  // bytes), then on to the header's stated length, but only up to the header limit
  // (parse_npy_header refuses more).
  static std::string read_npy_head(EntryReader& reader, const EntryInfo& info) {
    constexpr std::size_t kFirstRead = 4096;
    std::string head(static_cast<std::size_t>(std::min<std::uint64_t>(kFirstRead, info.size)),
                     '\0');
    reader.read(head.data(), head.size());
    const std::size_t header_length = npy_header_length(head);
    if (header_length > head.size() && header_length <= info.size &&
        header_length <= kMaxNpyHeaderBytes + 12) {
      const std::size_t had = head.size();
      head.resize(header_length);
      reader.read(&head[had], header_length - had);
    }
    return head;
  }

  // One deferred entry: its .npy header checked against the JSON, its data read into the
  // tensor (cast, as the direct path casts, when the file's dtype differs).
  void fill_deferred(const Deferred& d) {
    const EntryInfo& info = *d.entry;
    const std::string& ref = info.name;
    EntryReader reader = archive_.open_entry(ref, options_.check_crc, options_.threads);
    const std::string head = read_npy_head(reader, info);
    const NpyHeader h = parse_npy_header(head, info.size, archive_.name(), ref);
    if (h.shape != d.dst.sizes().vec()) {
      fail(d.path, "shape mismatch (JSON says " + shape_text(d.dst.sizes().vec()) + ", " + ref +
                       " holds " + shape_text(h.shape) + ")");
    }
    const auto raw = npy_raw_dtype(h);
    at::Tensor into = d.dst;
    if (!raw || *raw != d.dst.scalar_type()) {  // decoded whole, then cast into the tensor
      reader = archive_.open_entry(ref, options_.check_crc);
      std::string bytes(static_cast<std::size_t>(info.size), '\0');
      reader.read(bytes.data(), bytes.size());
      reader.finish();
      const at::Tensor t = decode_npy(bytes, archive_.name(), ref);
      if (t.scalar_type() != d.dst.scalar_type()) {
        anomaly(d.path, "dtype mismatch: JSON says " + d.dtype_text + ", " + ref + " holds " +
                            numpy_dtype_name(t.scalar_type()) + "; casting");
      }
      d.dst.copy_(t);
      return;
    }
    auto* out = static_cast<char*>(into.data_ptr());
    const std::size_t in_head = std::min<std::size_t>(head.size() - h.data_offset, h.data_bytes);
    std::memcpy(out, head.data() + h.data_offset, in_head);
    reader.read(out + in_head, h.data_bytes - in_head);
    reader.finish();
  }

 public:
  // Fills the deferred entries of a remote archive: in file order, in groups of small entries
  // closed by a big one, a request for each group's bytes up to the big entry's first data
  // range; kRemoteGroups groups at a time, each big entry's other ranges in parallel.
  void finish_remote() {
    if (deferred_.empty()) return;
    constexpr std::uint64_t kSmall = 256 << 10, kFirstRange = (8 << 20) + (8 << 10);
    constexpr std::size_t kRemoteGroups = 4;
    std::stable_sort(deferred_.begin(), deferred_.end(), [](const Deferred& a, const Deferred& b) {
      return a.entry->local_offset < b.entry->local_offset;
    });
    // A group goes on while the entries are small, near each other (what lies between is a
    // header, no other entry) and their bytes few.
    constexpr std::uint64_t kNear = 64 << 10, kGroupBytes = 8 << 20;
    std::vector<std::pair<std::size_t, std::size_t>> groups;  // [first, last) of deferred_
    std::uint64_t group_bytes = 0;
    for (std::size_t i = 0; i < deferred_.size(); ++i) {
      const EntryInfo& e = *deferred_[i].entry;
      bool starts = groups.empty();
      if (!starts) {
        const EntryInfo& prev = *deferred_[i - 1].entry;
        const std::uint64_t prev_end = prev.local_offset + 30 + 1024 + prev.name.size() +
                                       prev.compressed_size;  // at most: header, extras, data
        starts = prev.compressed_size > kSmall || e.local_offset > prev_end + kNear ||
                 group_bytes + std::min(e.compressed_size, kFirstRange) > kGroupBytes + kFirstRange;
      }
      if (starts) {
        groups.emplace_back(i, i);
        group_bytes = 0;
      }
      groups.back().second = i + 1;
      group_bytes += std::min(e.compressed_size, kFirstRange);
    }
    detail::run_in_order(
        groups.size(), std::min(kRemoteGroups, groups.size()),
        [&](std::size_t g) {
          const auto [first, last] = groups[g];
          const EntryInfo& end = *deferred_[last - 1].entry;
          archive_.prefetch_run(deferred_[first].entry->name, end.name,
                                std::min(end.size, kFirstRange));
          for (std::size_t i = first; i < last; ++i) fill_deferred(deferred_[i]);
        },
        [&](std::size_t g) {
          for (std::size_t i = groups[g].first; i < groups[g].second; ++i) {
            report(deferred_[i].entry->name, deferred_[i].entry->size);
          }
        });
    deferred_.clear();
  }

 private:
  // A `.npy` entry whose data needs no conversion, without intermediate buffers: mapped
  // (options.mmap, stored entries) or read straight into its tensor; a deflated entry's data is
  // inflated into it later, in parallel with the others (finish_pending). Undefined when the
  // entry needs decoding instead.
  at::Tensor direct_tensor(const EntryInfo& info, std::optional<c10::ScalarType> want,
                           const std::vector<ojson>& path) {
    const std::string& file = archive_.name();
    EntryReader reader = archive_.open_entry(info.name, options_.check_crc, options_.threads);
    const std::string head = read_npy_head(reader, info);
    const NpyHeader h = parse_npy_header(head, info.size, file, info.name);
    const auto raw = npy_raw_dtype(h);
    if (!raw || (want && *want != *raw)) return {};
    const auto options = at::TensorOptions().dtype(*raw);
    if (options_.mmap && info.method == 0 && archive_.can_map()) {
      const std::uint64_t at = archive_.data_offset(info.name) + h.data_offset;
      if (at % c10::elementSize(*raw) == 0) {
        ArchiveMapping map = archive_.mapping();
        // The tensor's deleter holds the mapping alive.
        return at::from_blob(
            map.get() + at, h.shape, [map](void*) mutable { map.reset(); }, options);
      }
    }
    at::Tensor dst;
    if (destination_) {
      dst = destination_(path_string(path));
      if (dst.defined() && !(dst.device().is_cpu() && dst.is_contiguous() &&
                             dst.scalar_type() == *raw && dst.sizes().vec() == h.shape)) {
        dst = at::Tensor();  // does not fit: let the caller compare and refuse or convert
      }
    }
    if (!dst.defined()) dst = at::empty(h.shape, options);
    if (h.data_bytes == 0) {
      reader.finish();
      return dst;
    }
    // The first read may already hold the start of the data.
    auto* out = static_cast<char*>(dst.data_ptr());
    const std::size_t in_head = std::min<std::size_t>(head.size() - h.data_offset, h.data_bytes);
    std::memcpy(out, head.data() + h.data_offset, in_head);
    if (info.method == 0 && archive_.can_map()) {
      reader.read(out + in_head, h.data_bytes - in_head);
      reader.finish();
    } else {  // deflated, or remote: read later, several entries at a time
      pending_.push_back({&info, head.size(), out + in_head, h.data_bytes - in_head});
    }
    return dst;
  }

 public:
  // Inflates the deferred deflated entries into their tensors, on options.threads threads,
  // the largest first (so that the threads finish together); progress is reported from this
  // thread as they finish.
  void finish_pending() {
    std::stable_sort(pending_.begin(), pending_.end(), [](const Pending& a, const Pending& b) {
      return a.entry->compressed_size > b.entry->compressed_size;
    });
    // A remote archive's entries are read kRemoteEntries at a time whatever the cores, each in
    // parallel ranges (the wait is the network's, not the CPU's).
    constexpr std::size_t kRemoteEntries = 4;
    const std::size_t workers = archive_.can_map()
                                    ? detail::worker_count(options_.threads, pending_.size())
                                    : std::min(kRemoteEntries, pending_.size());
    detail::run_in_order(
        pending_.size(), workers,
        [this](std::size_t i) {
          const Pending& p = pending_[i];
          EntryReader reader = archive_.open_entry(p.entry->name, options_.check_crc);
          reader.skip(p.skip);
          reader.read(p.dst, p.bytes);
          reader.finish();
        },
        [this](std::size_t i) { report(pending_[i].entry->name, pending_[i].entry->size); });
    pending_.clear();
  }

 private:
  void report(const std::string& ref, std::uint64_t bytes) {
    if (!options_.progress) return;
    progress_.bytes_done += bytes;
    progress_.entry = ref;
    options_.progress(progress_);
  }

  Node jsonl(const ojson& j, std::vector<ojson>& path) {
    const std::string ref = ref_of(j, path);
    const std::string text = entry(ref, path);
    Node::List items;
    std::size_t start = 0;
    while (start < text.size()) {
      auto end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + start, end - start);
      start = end + 1;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      const std::string where = ref + " line " + std::to_string(items.size() + 1);
      ojson value = parse_json(line, archive_.name(), where, options_.json_limits);
      path.emplace_back(items.size());
      items.push_back(walk(value, path));
      path.pop_back();
    }
    return Node(std::move(items));
  }

  const ArchiveReader& archive_;
  const ojson& externals_info_;
  const ReadOptions& options_;
  const TensorDestination& destination_;
  Progress progress_;
  // A deflated entry whose tensor is allocated; its data (after `skip` bytes) still to inflate.
  struct Pending {
    const EntryInfo* entry;
    std::size_t skip;
    void* dst;
    std::size_t bytes;
  };
  std::vector<Pending> pending_;
  std::vector<Deferred> deferred_;
};

}  // namespace

Node deserialize_tree(const nlohmann::ordered_json& json, const ArchiveReader& archive,
                      const nlohmann::ordered_json& externals_info, const ReadOptions& options,
                      const TensorDestination& destination,
                      const std::vector<std::string>& at_path) {
  Reader r(archive, externals_info, options, destination);
  std::vector<ojson> path(at_path.begin(), at_path.end());
  Node root = r.walk(json, path);
  r.finish_remote();
  r.finish_pending();
  return root;
}

}  // namespace zanj
