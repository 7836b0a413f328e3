// SPDX-License-Identifier: MIT
// Lazy reads: the tree's JSON is read and indexed; tensors are read one key at a time.
#include "configured_model/lazy_file.hpp"

#include <ATen/ATen.h>

#include "configured_model/dtype.hpp"
#include "configured_model/errors.hpp"
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
  f.document_ = read_document(f.archive_, options);
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
            std::uint64_t count = 1;
            for (auto d : info.shape) {
              if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(d), &count)) {
                detail::throw_format_error(file, key, "shape product overflows");
              }
            }
            if (__builtin_mul_overflow(count, c10::elementSize(info.dtype), &info.bytes)) {
              detail::throw_format_error(file, key, "shape product overflows");
            }
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
  return f;
}

const TensorInfo* LazyFile::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

at::Tensor LazyFile::tensor(const std::string& key) const {
  const TensorInfo* info = find(key);
  if (!info) detail::throw_format_error(archive_.name(), key, "no tensor stored at this key");
  const auto& ptr = pointers_[static_cast<std::size_t>(info - tensors_.data())];
  try {
    return deserialize_tree(document_.tree.at(ptr), archive_, document_.externals_info, options_,
                            {}, split_key(key))
        .tensor();
  } catch (...) {
    detail::rethrow_as_format_error(archive_.name());
  }
}

Node LazyFile::read() const { return zanj::read(archive_, document_, options_); }

}  // namespace zanj
