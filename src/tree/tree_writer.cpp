// SPDX-License-Identifier: MIT
// Node -> ZANJ JSON + external entries (the save direction of the tree concept).
#include <ATen/ATen.h>

#include <string_view>
#include <unordered_set>

#include "../format/json_object.hpp"
#include "configured_model/dtype.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/json_text.hpp"
#include "configured_model/npy.hpp"
#include "configured_model/tree.hpp"

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

const char* mode_tag(ArrayMode mode) {
  switch (mode) {
    case ArrayMode::kHexMeta:
      return "torch.Tensor:array_hex_meta";
    case ArrayMode::kB64Meta:
      return "torch.Tensor:array_b64_meta";
    case ArrayMode::kListMeta:
      break;
  }
  return "torch.Tensor:array_list_meta";
}

ojson shape_json(const at::Tensor& t) {
  ojson s = ojson::array();
  for (auto d : t.sizes()) s.push_back(d);
  return s;
}

std::string path_string(const ojson& path) {
  std::string s;
  for (const auto& p : path) {
    if (!s.empty()) s += '/';
    s += p.is_string() ? p.get<std::string>() : p.dump();
  }
  return s;
}

// Nested JSON lists of a contiguous buffer, row-major.
template <class T>
ojson nested_list(const T* data, c10::IntArrayRef shape, std::size_t dim, std::size_t& offset) {
  ojson out = ojson::array();
  const auto n = shape[dim];
  if (dim + 1 == shape.size()) {
    for (int64_t i = 0; i < n; ++i) out.push_back(data[offset++]);
  } else {
    for (int64_t i = 0; i < n; ++i) out.push_back(nested_list(data, shape, dim + 1, offset));
  }
  return out;
}

ojson list_data(const at::Tensor& t) {
  std::size_t offset = 0;
  if (t.is_floating_point()) {
    auto d = t.to(at::kDouble).contiguous();
    return nested_list(d.data_ptr<double>(), d.sizes(), 0, offset);
  }
  if (t.scalar_type() == at::kBool) {
    auto d = t.contiguous();
    return nested_list(d.data_ptr<bool>(), d.sizes(), 0, offset);
  }
  auto d = t.to(at::kLong).contiguous();
  return nested_list(d.data_ptr<int64_t>(), d.sizes(), 0, offset);
}

ojson scalar_value(const at::Tensor& t) {
  if (t.is_floating_point()) return t.item<double>();
  if (t.scalar_type() == at::kBool) return t.item<bool>();
  return t.item<int64_t>();
}

std::string raw_bytes(const at::Tensor& t) {
  auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()),
                     static_cast<std::size_t>(c.numel()) * c.element_size());
}

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

class Writer {
 public:
  explicit Writer(const SaveOptions& options) : options_(options) {}

  ojson walk(const Node& node, const ojson& path, bool keep_inline) {
    keep_inline = keep_inline || node.keep_inline();
    if (node.is_scalar()) return node.scalar();
    if (node.is_tensor()) return tensor(node.tensor(), path, keep_inline);
    if (node.is_list()) {
      const auto& items = node.as_list();
      if (!keep_inline &&
          static_cast<std::int64_t>(items.size()) >= options_.external_list_threshold) {
        return jsonl(items, path);
      }
      ojson out = ojson::array();
      for (std::size_t i = 0; i < items.size(); ++i) {
        out.push_back(walk(items[i], child(path, ojson(i)), keep_inline));
      }
      return out;
    }
    ojson out = ojson::object();
    std::unordered_set<std::string_view> keys;  // the readers refuse a repeated key: so do we
    for (const auto& [key, value] : node.as_dict()) {
      if (!keys.insert(key).second) {
        throw UsageError(detail::message(path_string(path), key,
                                         "the dict holds this key twice (keys must be distinct)"));
      }
      detail::append_member(out, key, walk(value, child(path, ojson(key)), keep_inline));
    }
    return out;
  }

  std::vector<ExternalEntry> take_externals() { return std::move(externals_); }

 private:
  static ojson child(const ojson& path, ojson component) {
    ojson p = path;
    p.push_back(std::move(component));
    return p;
  }

  // Python cannot read these inline (section 9, 12 of the format notes), so they go external
  // whatever their size.
  static bool must_be_external(const at::Tensor& t) {
    const auto st = t.scalar_type();
    if (st == at::kBFloat16 || st == at::kComplexFloat || st == at::kComplexDouble) return true;
    return t.dim() >= 2 && t.numel() == 0;
  }

  ojson tensor(const at::Tensor& input, const ojson& path, bool keep_inline) {
    const auto numel = input.numel();
    if (must_be_external(input) ||
        (!keep_inline && input.dim() > 0 && numel >= options_.external_array_threshold)) {
      return npy(input.detach(), path);
    }
    const at::Tensor t = input.detach().to(at::kCPU);  // small: inline JSON
    ojson out = ojson::object();
    if (t.dim() == 0) {
      out["__muutils_format__"] = "torch.Tensor:zero_dim";
      out["data"] = scalar_value(t);
      out["shape"] = ojson::array();
      out["dtype"] = torch_dtype_name(t.scalar_type());
      out["n_elements"] = 1;
      return out;
    }
    out["__muutils_format__"] = mode_tag(options_.array_mode);
    switch (options_.array_mode) {
      case ArrayMode::kListMeta:
        out["data"] = list_data(t);
        break;
      case ArrayMode::kHexMeta:
        out["data"] = hex(raw_bytes(t));
        break;
      case ArrayMode::kB64Meta:
        out["data"] = detail::base64_encode(raw_bytes(t));
        break;
    }
    out["shape"] = shape_json(t);
    out["dtype"] = numpy_dtype_name(t.scalar_type());
    out["n_elements"] = numel;
    return out;
  }

  ojson npy(const at::Tensor& t, const ojson& path) {
    ExternalEntry e;
    e.item_type = "npy";
    e.name = unique_name(path, ".npy");
    // The data is converted (bfloat16, strides, device) only when written, one tensor at a time.
    e.bytes = npy_header(npy_descr(t.scalar_type()), t.sizes().vec());
    e.data = t;
    e.info = {{"item_type", "npy"}, {"path", path}, {"type(data)", "<class 'torch.Tensor'>"}};
    if (t.dim() > 0) e.info["len(data)"] = t.size(0);
    e.info["shape"] = shape_json(t);
    e.info["dtype"] = torch_dtype_name(t.scalar_type());
    ojson out = {{"__muutils_format__", "torch.Tensor:external"},
                 {"$ref", e.name},
                 {"shape", shape_json(t)},
                 {"dtype", torch_dtype_name(t.scalar_type())},
                 {"n_elements", t.numel()}};
    externals_.push_back(std::move(e));
    return out;
  }

  ojson jsonl(const Node::List& items, const ojson& path) {
    // Reserve the slot first so the list precedes its nested externals, as in Python.
    const std::size_t slot = externals_.size();
    externals_.emplace_back();
    const std::string name = unique_name(path, ".jsonl");
    std::string text;
    ojson first;
    for (std::size_t i = 0; i < items.size(); ++i) {
      ojson item = walk(items[i], child(path, ojson(i)), false);
      text += dump_json(item, JsonStyle::kLine);
      text += '\n';
      if (i == 0) first = std::move(item);
    }
    ExternalEntry& e = externals_[slot];
    e.item_type = "jsonl";
    e.name = name;
    e.bytes = std::move(text);
    e.info = {{"item_type", "jsonl"},
              {"path", path},
              {"type(data)", "<class 'list'>"},
              {"len(data)", items.size()}};
    if (!items.empty()) e.info["data[0]"] = std::move(first);
    return {{"__muutils_format__", "list:external"}, {"$ref", name}};
  }

  // "/".join(path) + ext, as Python names it. Python refuses duplicates; since readers locate
  // data through "$ref" and externals_info, a suffix keeps both entries readable instead.
  std::string unique_name(const ojson& path, const char* ext) {
    const std::string base = path.empty() ? std::string("_root") : path_string(path);
    std::string name = base + ext;
    for (int i = 1; !names_.insert(name).second; ++i) {
      name = base + "~" + std::to_string(i) + ext;
    }
    return name;
  }

  const SaveOptions& options_;
  std::vector<ExternalEntry> externals_;
  std::unordered_set<std::string> names_{"__zanj__.json", "__zanj_meta__.json"};
};

}  // namespace

std::uint64_t ExternalEntry::size() const {
  if (!data.defined()) return bytes.size();
  const std::uint64_t item = data.scalar_type() == at::kBFloat16 ? 4 : data.element_size();
  return bytes.size() + static_cast<std::uint64_t>(data.numel()) * item;
}

SerializedTree serialize_tree(const Node& root, const SaveOptions& options) {
  Writer w(options);
  SerializedTree out;
  out.json = w.walk(root, ojson::array(), false);
  out.externals = w.take_externals();
  return out;
}

namespace detail {

std::string base64_encode(std::string_view bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) throw FormatError("base64 text length is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + static_cast<std::size_t>(k)];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else if (pad > 0 || (v[k] = value(c)) < 0) {
        throw FormatError("invalid base64 character at offset " +
                          std::to_string(i + static_cast<std::size_t>(k)));
      }
    }
    const unsigned n = (static_cast<unsigned>(v[0]) << 18) | (static_cast<unsigned>(v[1]) << 12) |
                       (static_cast<unsigned>(v[2]) << 6) | static_cast<unsigned>(v[3]);
    out.push_back(static_cast<char>((n >> 16) & 255));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 255));
    if (pad < 1) out.push_back(static_cast<char>(n & 255));
  }
  return out;
}

}  // namespace detail
}  // namespace zanj
