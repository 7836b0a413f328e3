// SPDX-License-Identifier: MIT
// Weights in any format we read (zanj, Python .pt, libtorch .pt, safetensors) as one tree, saved
// in any of them, and loaded into a module through a key map.
// GCC 12 at -O1 with the sanitizers reports std::function inside <regex> (KeyMap's renames) as
// maybe uninitialized, a known false positive of its flow analysis; ASan and UBSan check it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif  // (before any header: the warning is reported where <functional> is)
#include "configured_model/weights.hpp"

#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <unordered_map>

#include "../storage/storage.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"
#include "configured_model/safetensors.hpp"
#include "configured_model/state_dict.hpp"
#include "configured_model/torch_file.hpp"

namespace zanj {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower_extension(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

void flatten(const Node& n, const std::string& path, bool skip_values, StateDict& out) {
  if (n.is_tensor()) {
    out.emplace_back(path, n.tensor());
  } else if (n.is_dict()) {
    for (const auto& [k, v] : n.as_dict())
      flatten(v, path.empty() ? k : path + "." + k, skip_values, out);
  } else if (n.is_list()) {
    for (std::size_t i = 0; i < n.size(); ++i) {
      flatten(n.as_list()[i], path.empty() ? std::to_string(i) : path + "." + std::to_string(i),
              skip_values, out);
    }
  } else if (!skip_values) {
    throw FormatError(detail::message(
        "", path.empty() ? "(root)" : path,
        "holds " + n.to_json().dump() + ", which a tensors-only format cannot store"));
  }
}

bool all_tensors(const Node& n) {
  if (!n.is_dict() || n.size() == 0) return false;
  for (const auto& [k, v] : n.as_dict()) {
    if (!v.is_tensor()) return false;
  }
  return true;
}

}  // namespace

const Node& find_state_dict(const Node& root, const std::string& subtree, const std::string& file) {
  if (!subtree.empty()) {
    const Node* at = &root;
    std::size_t start = 0;
    while (start <= subtree.size()) {
      const auto slash = subtree.find('/', start);
      const std::string part =
          subtree.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      const Node* next = at->is_dict() ? at->find(part) : nullptr;
      if (!next) detail::throw_format_error(file, subtree, "no such subtree (at '" + part + "')");
      at = next;
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    return *at;
  }
  if (all_tensors(root)) return root;
  for (const char* key : {"state_dict", "model_state_dict", "model"}) {
    const Node* n = root.is_dict() ? root.find(key) : nullptr;
    if (n && all_tensors(*n)) return *n;
  }
  std::string keys;
  if (root.is_dict()) {
    for (const auto& [k, v] : root.as_dict()) keys += (keys.empty() ? "" : ", ") + k;
  }
  detail::throw_format_error(file, "",
                             "no state dict found (the root holds [" + keys +
                                 "]; name it with LoadWeightsOptions::subtree)");
}

std::string format_name(WeightsFormat format) {
  switch (format) {
    case WeightsFormat::kZanj:
      return "zanj";
    case WeightsFormat::kTorch:
      return "pt";
    case WeightsFormat::kLibtorch:
      return "libtorch-pt";
    case WeightsFormat::kSafetensors:
      return "safetensors";
  }
  return "?";
}

WeightsFormat parse_format_name(const std::string& name) {
  for (auto f : {WeightsFormat::kZanj, WeightsFormat::kTorch, WeightsFormat::kLibtorch,
                 WeightsFormat::kSafetensors}) {
    if (format_name(f) == name) return f;
  }
  throw UsageError("unknown format '" + name + "' (expected zanj, pt, libtorch-pt or safetensors)");
}

WeightsFormat format_for_extension(const std::string& path) {
  if (ends_with(path, ".safetensors.index.json")) return WeightsFormat::kSafetensors;
  const std::string ext = lower_extension(path);
  if (ext == ".zanj") return WeightsFormat::kZanj;
  if (ext == ".pt" || ext == ".pth" || ext == ".bin") return WeightsFormat::kTorch;
  if (ext == ".safetensors") return WeightsFormat::kSafetensors;
  throw UsageError(path + ": cannot tell the format from the extension '" + ext +
                   "' (use .zanj, .pt, .pth, .bin or .safetensors, or name the format)");
}

WeightsFormat detect_format(const std::string& path) {
  if (ends_with(path, ".index.json")) return WeightsFormat::kSafetensors;
  unsigned char head[9] = {};
  const std::string prefix = detail::read_prefix(path, sizeof head);
  std::memcpy(head, prefix.data(), prefix.size());
  const std::size_t got = prefix.size();
  if (got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) {
    const auto archive = ArchiveReader::open(path);
    if (archive.contains("__zanj__.json")) return WeightsFormat::kZanj;
    for (const auto& e : archive.entries()) {
      const auto slash = e.name.find('/');
      if (slash == std::string::npos) continue;
      const std::string rest = e.name.substr(slash + 1);
      if (rest == "constants.pkl" || rest.rfind("code/", 0) == 0) return WeightsFormat::kLibtorch;
    }
    for (const auto& e : archive.entries()) {
      if (ends_with(e.name, "/data.pkl")) return WeightsFormat::kTorch;
    }
    detail::throw_format_error(path, "", "a zip, but neither a .zanj nor a torch.save archive");
  }
  if (got >= 2 && head[0] == 0x80 && head[1] == 0x02)
    return WeightsFormat::kTorch;  // legacy: read_torch says so
  if (got == 9 && head[8] == '{') return WeightsFormat::kSafetensors;
  detail::throw_format_error(path, "", "not a .zanj, torch.save, libtorch or safetensors file");
}

Node read_weights(const std::string& path, const ReadOptions& options) {
  switch (detect_format(path)) {
    case WeightsFormat::kZanj:
      return read(path, options);
    case WeightsFormat::kTorch:
      return read_torch(path, options);
    case WeightsFormat::kSafetensors:
      return SafetensorsFile::open(path).read_all(options.mmap);
    case WeightsFormat::kLibtorch: {
      Node::Dict out;
      for (auto& [k, t] : read_libtorch(path)) out.emplace_back(k, t);
      return Node(std::move(out));
    }
  }
  detail::throw_format_error(path, "", "unknown format");
}

StateDict flatten_tensors(const Node& root, bool skip_values) {
  StateDict out;
  flatten(root, "", skip_values, out);
  return out;
}

void save_weights(const Node& root, const std::string& path, WeightsFormat format,
                  const SaveOptions& options) {
  switch (format) {
    case WeightsFormat::kZanj:
      save(root, path, options);
      return;
    case WeightsFormat::kTorch:
      save_torch(root, path);
      return;
    case WeightsFormat::kLibtorch:
      save_libtorch(flatten_tensors(root), path);
      return;
    case WeightsFormat::kSafetensors: {
      if (ends_with(path, ".index.json")) {
        throw UsageError(
            path + ": writing sharded safetensors is not supported; write one .safetensors file");
      }
      save_safetensors(flatten_tensors(root), path);
      return;
    }
  }
}

KeyMap& KeyMap::strip_prefix(std::string prefix) {
  rules_.push_back(
      [prefix = std::move(prefix)](const std::string& k) -> std::optional<std::string> {
        return k.compare(0, prefix.size(), prefix) == 0 ? k.substr(prefix.size()) : k;
      });
  return *this;
}

KeyMap& KeyMap::add_prefix(std::string prefix) {
  rules_.push_back([prefix = std::move(prefix)](
                       const std::string& k) -> std::optional<std::string> { return prefix + k; });
  return *this;
}

KeyMap& KeyMap::rename(const std::string& pattern, std::string replacement) {
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw UsageError("KeyMap::rename: invalid pattern '" + pattern + "': " + e.what());
  }
  rules_.push_back([re = std::move(re), replacement = std::move(replacement)](
                       const std::string& k) -> std::optional<std::string> {
    return std::regex_replace(k, re, replacement);
  });
  return *this;
}

KeyMap& KeyMap::map(std::function<std::optional<std::string>(const std::string&)> f) {
  rules_.push_back(std::move(f));
  return *this;
}

std::optional<std::string> KeyMap::apply(const std::string& key) const {
  std::optional<std::string> k = key;
  for (const auto& rule : rules_) {
    k = rule(*k);
    if (!k) return std::nullopt;
  }
  return k;
}

void load_weights(torch::nn::Module& module, const std::string& path,
                  const LoadWeightsOptions& options) {
  // The tensors are copied into the module once: foreign files are mapped (their CRCs still
  // checked) rather than read into memory that would be copied again.
  Node root;
  switch (detect_format(path)) {
    case WeightsFormat::kTorch:
      root = detail::read_torch(path, options.read, /*map_to_copy=*/true);
      break;
    case WeightsFormat::kSafetensors:
      root = SafetensorsFile::open(path).read_all(/*mmap=*/true);
      break;
    default:
      root = read_weights(path, options.read);
      break;
  }
  const Node& stored = find_state_dict(root, options.subtree, path);
  if (!stored.is_dict())
    detail::throw_format_error(path, options.subtree, "is not a dict of tensors");
  Node::Dict renamed;
  std::unordered_map<std::string, std::string> source_of;
  for (const auto& [key, value] : stored.as_dict()) {
    const auto name = options.keys.apply(key);
    if (!name) continue;
    const auto [it, fresh] = source_of.emplace(*name, key);
    if (!fresh) {
      detail::throw_format_error(
          path, key,
          "renamed to '" + *name + "', as '" + it->second + "' was: two tensors for one name");
    }
    renamed.emplace_back(*name, value);
  }
  if (options.read.dtype) detail::convert_floating(module, *options.read.dtype);
  // Adopting the stored storage is what mmap asks for (and what a .zanj tree read for this
  // module alone allows); mapped foreign tensors are otherwise copied.
  const bool foreign = detect_format(path) != WeightsFormat::kZanj;
  detail::load_state_dict(module, Node(std::move(renamed)), path, options.read,
                          /*adopt=*/options.read.mmap || !foreign);
  if (options.read.device) module.to(*options.read.device);
}

}  // namespace zanj
