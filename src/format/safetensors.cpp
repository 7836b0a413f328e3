// SPDX-License-Identifier: MIT
// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and [begin, end) in the data that follows. Read with the zip reader's discipline
// (everything checked before allocation), written crash-safely. Hugging Face shard indexes too.
#include "configured_model/safetensors.hpp"

#include <ATen/ATen.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "../storage/storage.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/json_text.hpp"
#include "json_object.hpp"
#include "shape_rule.hpp"

namespace fs = std::filesystem;

namespace zanj {
namespace {

struct Dtype {
  const char* name;
  c10::ScalarType type;
};
constexpr Dtype kDtypes[] = {
    {"BOOL", c10::kBool},  {"U8", c10::kByte},          {"I8", c10::kChar},
    {"I16", c10::kShort},  {"I32", c10::kInt},          {"I64", c10::kLong},
    {"F16", c10::kHalf},   {"BF16", c10::kBFloat16},    {"F32", c10::kFloat},
    {"F64", c10::kDouble}, {"C64", c10::kComplexFloat},
};

const char* dtype_name(c10::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return nullptr;
}

// One file's bytes (local, remote or in memory: the storage seam), mapped on demand when local.
struct Source {
  std::string name;
  std::unique_ptr<detail::RandomAccessFile> file;
  std::shared_ptr<std::string> memory;  // from_bytes: kept alive by mappings
  std::uint64_t size = 0;
  std::uint64_t data_start = 0;  // 8 + header length
  mutable std::once_flag mapped_once;
  mutable std::shared_ptr<char> map;

  void pread_exact(void* dst, std::uint64_t n, std::uint64_t at, const std::string& key) const {
    if (n == 0) return;  // an empty tensor: its data pointer may be null
    if (at > size || n > size - at) {
      detail::throw_format_error(name, key, "file ends before the tensor's bytes");
    }
    try {
      file->read_at(at, dst, static_cast<std::size_t>(n));
    } catch (const FormatError&) {
      detail::throw_format_error(name, key, "file ends before the tensor's bytes");
    }
  }

  // Null for a remote object (callers read instead) or when mapping fails.
  std::shared_ptr<char> mapping() const {
    std::call_once(mapped_once, [&] {
      if (memory) {
        auto keep = memory;
        map = std::shared_ptr<char>(keep, keep->data());
        return;
      }
      if (size == 0 || file->fd() < 0) return;
      const auto len = static_cast<std::size_t>(size);
      void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, file->fd(), 0);
      if (p == MAP_FAILED) return;  // callers fall back to pread
      map = std::shared_ptr<char>(static_cast<char*>(p), [len](char* q) { ::munmap(q, len); });
    });
    return map;
  }
};

[[noreturn]] void fail(const std::string& file, const std::string& key, const std::string& what) {
  detail::throw_format_error(file, key, what);
}

// Parses and checks one file's header; appends its tensors (file = src.name).
void parse_header(Source& src, const SafetensorsLimits& limits, std::vector<SafetensorsTensor>& out,
                  std::map<std::string, std::string>& meta) {
  const std::string& file = src.name;
  if (src.size < 8)
    fail(file, "", "too short for a safetensors header (" + std::to_string(src.size) + " bytes)");
  unsigned char len_bytes[8];
  src.pread_exact(len_bytes, 8, 0, "");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > limits.max_header_bytes) {
    fail(file, "",
         "header of " + std::to_string(n) + " bytes exceeds the limit of " +
             std::to_string(limits.max_header_bytes));
  }
  if (n < 2 || n > src.size - 8) {
    fail(file, "",
         "header length " + std::to_string(n) + " does not fit a file of " +
             std::to_string(src.size) + " bytes");
  }
  std::string text(static_cast<std::size_t>(n), '\0');
  src.pread_exact(text.data(), n, 8, "");
  src.data_start = 8 + n;
  const std::uint64_t data_bytes = src.size - src.data_start;
  JsonLimits jl;
  jl.max_depth = 8;
  const auto header = parse_json(text, file, "header", jl);
  if (!header.is_object()) fail(file, "header", "is not a JSON object");

  std::vector<SafetensorsTensor> here;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(file, key, "is not an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) fail(file, "__metadata__/" + mk, "is not a string");
        meta[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) fail(file, key, "is not an object");
    const auto dt = value.find("dtype");
    const auto sh = value.find("shape");
    const auto off = value.find("data_offsets");
    if (dt == value.end() || !dt->is_string()) fail(file, key, "has no dtype string");
    if (sh == value.end() || !sh->is_array()) fail(file, key, "has no shape array");
    if (off == value.end() || !off->is_array() || off->size() != 2 ||
        !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
      fail(file, key, "has no data_offsets [begin, end]");
    }
    SafetensorsTensor t;
    t.key = key;
    t.file = file;
    const std::string dname = dt->get<std::string>();
    bool known = false;
    for (const auto& d : kDtypes)
      if (dname == d.name) t.dtype = d.type, known = true;
    if (!known) {
      fail(file, key,
           "dtype '" + dname + "' is not one libtorch " +
               "has (expected one of BOOL, U8, I8, I16, I32, I64, F16, BF16, F32, F64, C64)");
    }
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) fail(file, key, "shape " + sh->dump() + " holds a non-count");
      const auto v = d.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        fail(file, key, "shape " + sh->dump() + " is too large");
      }
      t.shape.push_back(static_cast<std::int64_t>(v));
    }
    const auto shape_size = detail::shape_bytes(t.shape, c10::elementSize(t.dtype));
    const auto begin = (*off)[0].get<std::uint64_t>();
    const auto end = (*off)[1].get<std::uint64_t>();
    if (begin > end || end > data_bytes) {
      fail(file, key,
           "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
               "] outside the " + std::to_string(data_bytes) + " data bytes");
    }
    if (!shape_size) {
      fail(file, key,
           "shape " + sh->dump() +
               " is too large (its non-zero dimensions x the item size overflow 64 bits)");
    }
    const std::uint64_t expected = *shape_size;
    if (expected != end - begin) {
      fail(file, key,
           "dtype " + dname + " x shape " + sh->dump() + " is " + std::to_string(expected) +
               " bytes, but data_offsets span " + std::to_string(end - begin));
    }
    t.offset = src.data_start + begin;
    t.bytes = end - begin;
    here.push_back(std::move(t));
  }
  // The tensors must tile the data exactly: no overlaps, no holes, nothing after them.
  std::sort(here.begin(), here.end(), [](const auto& a, const auto& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.bytes < b.bytes;
  });
  std::uint64_t at = src.data_start;
  for (const auto& t : here) {
    if (t.offset != at) {
      fail(
          file, t.key,
          std::string(t.offset < at ? "overlaps the tensor before it" : "leaves a hole before it") +
              " (expected data at " + std::to_string(at - src.data_start) + ", found " +
              std::to_string(t.offset - src.data_start) + ")");
    }
    at += t.bytes;
  }
  if (at != src.size) {
    fail(file, "", std::to_string(src.size - at) + " bytes after the last tensor (expected none)");
  }
  for (auto& t : here) out.push_back(std::move(t));
}

std::unique_ptr<Source> open_source(const std::string& path) {
  auto src = std::make_unique<Source>();
  src->name = path;
  src->file = detail::storage_for(path).open(path);
  src->size = src->file->size();
  return src;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

struct SafetensorsFile::Impl {
  std::string name;
  std::vector<std::unique_ptr<Source>> sources;
  std::unordered_map<std::string, const Source*> source_of;  // file name -> source
  std::vector<SafetensorsTensor> tensors;
  std::unordered_map<std::string, std::size_t> index;
  std::map<std::string, std::string> metadata;

  void build_index() {
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (!index.emplace(tensors[i].key, i).second) {
        fail(tensors[i].file, tensors[i].key, "appears twice");
      }
    }
    for (const auto& s : sources) source_of[s->name] = s.get();
  }

  const SafetensorsTensor& at(const std::string& key) const {
    const auto it = index.find(key);
    if (it == index.end()) fail(name, key, "no such tensor");
    return tensors[it->second];
  }
};

SafetensorsFile::SafetensorsFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::string& path, const SafetensorsLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->name = path;
  if (!ends_with(path, ".index.json")) {
    impl->sources.push_back(open_source(path));
    parse_header(*impl->sources.back(), limits, impl->tensors, impl->metadata);
    impl->build_index();
    return SafetensorsFile(std::move(impl));
  }
  // A Hugging Face index: {"metadata": {...}, "weight_map": {"key": "shard.safetensors"}}.
  auto index_src = open_source(path);
  if (index_src->size > limits.max_header_bytes) {
    fail(path, "", "index of " + std::to_string(index_src->size) + " bytes exceeds the limit");
  }
  std::string text(static_cast<std::size_t>(index_src->size), '\0');
  index_src->pread_exact(text.data(), text.size(), 0, "");
  const auto j = parse_json(text, path, "", {});
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    fail(path, "weight_map", "missing (expected a Hugging Face safetensors index)");
  }
  if (j.contains("metadata") && j["metadata"].is_object()) {
    for (const auto& [k, v] : j["metadata"].items()) {
      impl->metadata[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
  }
  const fs::path dir = fs::path(path).parent_path();
  std::vector<std::string> shard_order;
  std::map<std::string, std::vector<std::string>> keys_of_shard;
  for (const auto& [key, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) fail(path, "weight_map/" + key, "is not a file name");
    const std::string s = shard.get<std::string>();
    if (s.empty() || s.find('/') != std::string::npos || s == "." || s == "..") {
      fail(path, "weight_map/" + key, "shard '" + s + "' is not a file name in the index's folder");
    }
    if (!keys_of_shard.count(s)) {
      if (shard_order.size() >= limits.max_shards)
        fail(path, "weight_map", "names too many shards");
      shard_order.push_back(s);
    }
    keys_of_shard[s].push_back(key);
  }
  std::map<std::string, std::string> shard_meta;
  for (const auto& s : shard_order) {
    const std::string shard_path = (dir / s).string();
    impl->sources.push_back(open_source(shard_path));
    std::vector<SafetensorsTensor> found;
    parse_header(*impl->sources.back(), limits, found, shard_meta);
    // The shard must hold exactly the keys the index gives it.
    std::map<std::string, bool> listed;
    for (const auto& k : keys_of_shard[s]) listed[k] = false;
    for (auto& t : found) {
      const auto it = listed.find(t.key);
      if (it == listed.end()) {
        fail(shard_path, t.key, "is in the shard but " + path + " does not list it there");
      }
      it->second = true;
    }
    for (const auto& [k, seen] : listed) {
      if (!seen) fail(path, k, "listed in shard " + s + ", which does not hold it");
    }
    for (auto& t : found) impl->tensors.push_back(std::move(t));
  }
  for (const auto& [k, v] : shard_meta) impl->metadata.emplace(k, v);
  impl->build_index();
  return SafetensorsFile(std::move(impl));
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, std::string display_name,
                                            const SafetensorsLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->name = display_name;
  auto src = std::make_unique<Source>();
  src->name = std::move(display_name);
  src->memory = std::make_shared<std::string>(std::move(bytes));
  src->file = detail::memory_file(src->memory);
  src->size = src->memory->size();
  impl->sources.push_back(std::move(src));
  parse_header(*impl->sources.back(), limits, impl->tensors, impl->metadata);
  impl->build_index();
  return SafetensorsFile(std::move(impl));
}

const std::vector<SafetensorsTensor>& SafetensorsFile::tensors() const { return impl_->tensors; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return impl_->metadata;
}
const std::string& SafetensorsFile::name() const { return impl_->name; }

const SafetensorsTensor* SafetensorsFile::find(const std::string& key) const {
  const auto it = impl_->index.find(key);
  return it == impl_->index.end() ? nullptr : &impl_->tensors[it->second];
}

at::Tensor SafetensorsFile::read_tensor(const std::string& key) const {
  const auto& t = impl_->at(key);
  at::Tensor out = at::empty(t.shape, at::TensorOptions().dtype(t.dtype));
  impl_->source_of.at(t.file)->pread_exact(out.data_ptr(), t.bytes, t.offset, key);
  if (t.dtype == c10::kBool) {
    const auto* b = static_cast<const unsigned char*>(out.data_ptr());
    for (std::uint64_t i = 0; i < t.bytes; ++i) {
      if (b[i] > 1)
        fail(t.file, key, "bool tensor holds byte " + std::to_string(b[i]) + " (expected 0 or 1)");
    }
  }
  return out;
}

at::Tensor SafetensorsFile::tensor(const std::string& key) const {
  const auto& t = impl_->at(key);
  const auto item = c10::elementSize(t.dtype);
  if (t.dtype == c10::kBool || t.bytes == 0 || t.offset % item != 0) return read_tensor(key);
  auto map = impl_->source_of.at(t.file)->mapping();
  if (!map) return read_tensor(key);
  return at::from_blob(
      map.get() + t.offset, t.shape, [map](void*) mutable { map.reset(); },
      at::TensorOptions().dtype(t.dtype));
}

Node SafetensorsFile::read_all(bool mmap) const {
  Node::Dict out;
  out.reserve(impl_->tensors.size());
  for (const auto& t : impl_->tensors) {
    out.emplace_back(t.key, mmap ? tensor(t.key) : read_tensor(t.key));
  }
  return Node(std::move(out));
}

namespace {

struct Prepared {
  std::string header;  // 8-byte length + padded JSON
  std::vector<at::Tensor> data;
};

Prepared prepare(const StateDict& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    h["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) h["__metadata__"][k] = v;
  }
  Prepared p;
  std::uint64_t at = 0;
  std::unordered_set<std::string_view> keys;
  for (const auto& [key, input] : tensors) {
    if (key == "__metadata__" || !keys.insert(key).second) {
      throw FormatError("safetensors: key '" + key + "' is reserved or repeated");
    }
    const char* name = dtype_name(input.scalar_type());
    if (!name) {
      throw FormatError(std::string("safetensors: ") + key + ": dtype " +
                        c10::toString(input.scalar_type()) + " has no safetensors name");
    }
    at::Tensor t = input.detach().to(at::kCPU).contiguous();
    const std::uint64_t n = static_cast<std::uint64_t>(t.numel()) * t.element_size();
    detail::append_member(
        h, key, {{"dtype", name}, {"shape", t.sizes().vec()}, {"data_offsets", {at, at + n}}});
    at += n;
    p.data.push_back(std::move(t));
  }
  std::string json = h.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // data starts 8-aligned, as the reference pads
  const std::uint64_t len = json.size();
  p.header.resize(8);
  for (int i = 0; i < 8; ++i) p.header[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  p.header += json;
  return p;
}

std::string_view bytes_of(const at::Tensor& t) {
  return {static_cast<const char*>(t.data_ptr()),
          static_cast<std::size_t>(t.numel()) * t.element_size()};
}

}  // namespace

void save_safetensors(const StateDict& tensors, const std::string& path,
                      const std::map<std::string, std::string>& metadata) {
  const Prepared p = prepare(tensors, metadata);
  const auto out = detail::storage_for(path).create(path);
  out->append(p.header.data(), p.header.size());
  for (const auto& t : p.data) {
    const std::string_view b = bytes_of(t);
    out->append(b.data(), b.size());
  }
  out->commit();
}

std::string safetensors_bytes(const StateDict& tensors,
                              const std::map<std::string, std::string>& metadata) {
  const Prepared p = prepare(tensors, metadata);
  std::string out = p.header;
  for (const auto& t : p.data) out.append(bytes_of(t));
  return out;
}

}  // namespace zanj
