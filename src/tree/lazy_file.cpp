// SPDX-License-Identifier: MIT
// Lazy reads: the tree's JSON is read and indexed; tensors are read one key at a time.
#include "configured_model/lazy_file.hpp"

#include <ATen/ATen.h>
#include <simdjson.h>

#include "../format/shape_rule.hpp"
#include "configured_model/dtype.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/metadata.hpp"
#include "configured_model/npy.hpp"
#include "configured_model/tree.hpp"

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

// The format tag of a tensor item ("torch.Tensor:external", ...), or empty for anything else.
std::string_view tensor_tag(const ojson& j) {
  if (!j.is_object()) return {};
  auto tag = j.find("__muutils_format__");
  if (tag == j.end()) tag = j.find("__format__");  // ZANJ <= 0.3.1
  if (tag == j.end() || !tag->is_string()) return {};
  const std::string_view t = tag->get_ref<const std::string&>();
  const bool tensor = t.rfind("torch.Tensor:", 0) == 0 || t.rfind("numpy.ndarray:", 0) == 0;
  return tensor ? t : std::string_view();
}

// Elements x item size of a listed tensor, refusing shapes whose product overflows.
std::uint64_t data_bytes(const TensorInfo& info, const std::string& file) {
  const auto bytes = detail::shape_bytes(info.shape, c10::elementSize(info.dtype));
  if (!bytes) detail::throw_format_error(file, info.key, "shape product overflows");
  return *bytes;
}

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t slash; (slash = key.find('/', start)) != std::string::npos; start = slash + 1) {
    parts.push_back(key.substr(start, slash - start));
  }
  parts.push_back(key.substr(start));
  return parts;
}

}  // namespace

LazyFile::LazyFile(ArchiveReader archive, ReadOptions options)
    : archive_(std::move(archive)), options_(std::move(options)) {}

LazyFile LazyFile::open(const std::string& path, const ReadOptions& options) {
  return open(ArchiveReader::open(path, options.archive_limits), options);
}

LazyFile LazyFile::open(ArchiveReader archive, const ReadOptions& options) {
  LazyFile f(std::move(archive), options);
  if (!f.open_indexed()) {
    f.tensors_.clear();
    f.items_.clear();
    f.listed_.clear();
    f.index_.clear();
    f.open_documents();
  }
  return f;
}

// The fast path: both JSON entries are parsed by simdjson (about 2 GB/s here, against tens of
// MB/s for building nlohmann documents of objects with thousands of keys) and only indexed.
// Anything it does not handle the way read_document() + the document walk would (a missing or
// unusual meta entry, Python's NaN tokens, inline tensors, duplicate keys, ...) sends the open
// down the full path, which reports errors in its own words.
bool LazyFile::open_indexed() {
  const std::string& file = archive_.name();
  const JsonLimits& limits = options_.json_limits;
  const EntryInfo* meta_entry = archive_.find(kMetaEntry);
  const EntryInfo* tree_entry = archive_.find(kTreeEntry);
  if (!meta_entry || !tree_entry || meta_entry->size > limits.max_bytes ||
      tree_entry->size > limits.max_bytes) {
    return false;
  }
  simdjson::dom::parser parser;
  const std::string meta_text = archive_.read(kMetaEntry);
  simdjson::dom::element meta;
  if (parser.parse(meta_text).get(meta) != simdjson::SUCCESS || !meta.is_object()) return false;
  // The metadata without externals_info (whose keys are all that is needed) as a document.
  ojson small = ojson::object();
  const simdjson::dom::object meta_object = meta.get_object().value_unsafe();
  for (auto field : meta_object) {
    if (field.key == "externals_info") {
      if (field.value.is_null()) continue;
      simdjson::dom::object listed;
      if (field.value.get_object().get(listed) != simdjson::SUCCESS) return false;
      listed_.reserve(archive_.entries().size());
      for (auto e : listed) {
        std::string name(e.key);
        if (!archive_.contains(name)) return false;  // the full path names the error
        listed_.emplace(std::move(name), true);
      }
      small["externals_info"] = ojson::object();
      continue;
    }
    small[std::string(field.key)] = ojson::parse(simdjson::minify(field.value));
  }
  check_metadata(small, file, options_);

  const std::string tree_text = archive_.read(kTreeEntry);
  simdjson::dom::parser tree_parser(tree_text.size() + simdjson::SIMDJSON_PADDING);
  if (tree_parser.allocate(tree_text.size(), limits.max_depth) != simdjson::SUCCESS) return false;
  simdjson::dom::element tree;
  if (tree_parser.parse(tree_text).get(tree) != simdjson::SUCCESS) return false;
  bool ok = true;
  index_.reserve(archive_.entries().size());
  std::function<void(simdjson::dom::element, const std::string&)> walk =
      [&](simdjson::dom::element j, const std::string& key) {
        if (!ok) return;
        if (j.is_array()) {
          std::size_t i = 0;
          const std::string prefix = key.empty() ? key : key + "/";
          const simdjson::dom::array items = j.get_array().value_unsafe();
          for (auto v : items) walk(v, prefix + std::to_string(i++));
          return;
        }
        if (!j.is_object()) return;
        const simdjson::dom::object o = j.get_object().value_unsafe();
        std::string_view tag;
        if (o["__muutils_format__"].get(tag) != simdjson::SUCCESS &&
            o["__format__"].get(tag) != simdjson::SUCCESS) {
          tag = {};
        }
        const bool tensor =
            tag.rfind("torch.Tensor:", 0) == 0 || tag.rfind("numpy.ndarray:", 0) == 0;
        if (!tensor) {
          const std::string prefix = key.empty() ? key : key + "/";
          for (auto field : o) walk(field.value, prefix + std::string(field.key));
          return;
        }
        std::string_view ref, dtype_name;
        simdjson::dom::array shape;
        if (tag.substr(tag.find(':')) != ":external" || o["$ref"].get(ref) != simdjson::SUCCESS ||
            o["dtype"].get(dtype_name) != simdjson::SUCCESS ||
            o["shape"].get(shape) != simdjson::SUCCESS) {
          ok = false;  // inline, or not described well enough: decoded by the full path
          return;
        }
        const std::optional<c10::ScalarType> dtype = parse_dtype_name(std::string(dtype_name));
        if (!dtype) {
          ok = false;
          return;
        }
        TensorInfo info;
        info.key = key;
        for (auto d : shape) {
          std::int64_t n = 0;
          if (d.get(n) != simdjson::SUCCESS || n < 0) {
            ok = false;
            return;
          }
          info.shape.push_back(n);
        }
        info.dtype = *dtype;
        info.entry = std::string(ref);
        if (!archive_.contains(info.entry)) {
          detail::throw_format_error(
              file, key,
              "'$ref' names entry " + info.entry + ", which the archive does not contain");
        }
        info.bytes = data_bytes(info, file);
        if (!index_.emplace(info.key, tensors_.size()).second) {
          ok = false;  // duplicate keys: the full path decides which one counts
          return;
        }
        tensors_.push_back(std::move(info));
        items_.push_back({std::string(tag), std::string(dtype_name)});
      };
  walk(tree, "");
  return ok;
}

void LazyFile::open_documents() {
  LazyFile& f = *this;
  const ReadOptions& options = options_;
  f.document_ = read_document(f.archive_, options);
  f.have_document_ = true;
  const std::string& file = f.archive_.name();
  try {
    // Walk the JSON; external tensors are described by their JSON. Inline ones (small) and
    // external ones whose JSON lacks a valid shape or dtype (not ours, not Python's) are decoded
    // once, which reads their entry.
    std::function<void(const ojson&, const std::string&, const ojson::json_pointer&)> walk =
        [&](const ojson& j, const std::string& key, const ojson::json_pointer& ptr) {
          const std::string_view tag = tensor_tag(j);
          if (!tag.empty()) {
            TensorInfo info;
            info.key = key;
            auto ref = j.find("$ref");
            const bool external = tag.substr(tag.find(':')) == ":external";
            const auto dtype_it = j.find("dtype");
            const auto shape_it = j.find("shape");
            std::optional<c10::ScalarType> dtype;
            if (dtype_it != j.end() && dtype_it->is_string()) {
              dtype = parse_dtype_name(dtype_it->get_ref<const std::string&>());
            }
            bool shape_ok = shape_it != j.end() && shape_it->is_array();
            if (shape_ok) {
              for (const auto& d : *shape_it) {
                if (!d.is_number_integer() || d.get<std::int64_t>() < 0) shape_ok = false;
              }
            }
            if (external && ref != j.end() && ref->is_string() && dtype && shape_ok) {
              info.entry = ref->get<std::string>();
              info.shape = shape_it->get<std::vector<std::int64_t>>();
              info.dtype = *dtype;
              if (!f.archive_.contains(info.entry)) {
                detail::throw_format_error(
                    file, key,
                    "'$ref' names entry " + info.entry + ", which the archive does not contain");
              }
            } else {
              const Node n = deserialize_tree(j, f.archive_, f.document_.externals_info, f.options_,
                                              {}, split_key(key));
              info.shape = n.tensor().sizes().vec();
              info.dtype = n.tensor().scalar_type();
              if (external && ref != j.end() && ref->is_string())
                info.entry = ref->get<std::string>();
            }
            info.bytes = data_bytes(info, file);
            f.index_.emplace(info.key, f.tensors_.size());
            f.tensors_.push_back(std::move(info));
            f.pointers_.push_back(ptr);
            return;
          }
          const std::string prefix = key.empty() ? key : key + "/";
          if (j.is_object()) {
            for (auto it = j.begin(); it != j.end(); ++it) {
              walk(it.value(), prefix + it.key(), ptr / it.key());
            }
          } else if (j.is_array()) {
            for (std::size_t i = 0; i < j.size(); ++i) {
              walk(j[i], prefix + std::to_string(i), ptr / i);
            }
          }
        };
    walk(f.document_.tree, "", ojson::json_pointer());
  } catch (...) {
    detail::rethrow_as_format_error(file);
  }
}

const TensorInfo* LazyFile::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

at::Tensor LazyFile::tensor(const std::string& key) const {
  const TensorInfo* info = find(key);
  if (!info) detail::throw_format_error(archive_.name(), key, "no tensor stored at this key");
  const auto position = static_cast<std::size_t>(info - tensors_.data());
  try {
    // One request for a remote entry, rather than its header and then its data.
    if (!info->entry.empty() && archive_.find(info->entry)) archive_.prefetch(info->entry);
    if (!items_.empty()) {
      // Indexed: the item is rebuilt from the index and read as the tree reader would.
      ojson item = ojson::object();
      item["__muutils_format__"] = items_[position].tag;
      item["$ref"] = info->entry;
      item["shape"] = info->shape;
      item["dtype"] = items_[position].dtype;
      ojson listed = ojson::object();
      if (listed_.count(info->entry)) listed[info->entry] = ojson::object();
      return deserialize_tree(item, archive_, listed, options_, {}, split_key(key)).tensor();
    }
    return deserialize_tree(document_.tree.at(pointers_[position]), archive_,
                            document_.externals_info, options_, {}, split_key(key))
        .tensor();
  } catch (...) {
    detail::rethrow_as_format_error(archive_.name());
  }
}

const Document& LazyFile::document() const {
  if (!have_document_) {
    document_ = read_document(archive_, options_);
    have_document_ = true;
  }
  return document_;
}

Node LazyFile::read() const { return zanj::read(archive_, document(), options_); }

}  // namespace zanj
