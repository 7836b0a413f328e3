// SPDX-License-Identifier: MIT
#include "key_types.hpp"

#include <cstdint>
#include <map>
#include <memory>

#include "configured_model/errors.hpp"
#include "configured_model/metadata.hpp"

namespace zanj::detail {
namespace {

using ojson = nlohmann::ordered_json;

void collect(const Node& n, ojson& path, ojson& out) {
  if (n.is_dict()) {
    if (n.key_type() == Node::KeyType::kInt) out.push_back(path);
    for (const auto& [key, value] : n.as_dict()) {
      if (!value.is_dict() && !value.is_list()) continue;
      path.push_back(key);
      collect(value, path, out);
      path.erase(path.size() - 1);
    }
  } else if (n.is_list()) {
    const auto& items = n.as_list();
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_dict() && !items[i].is_list()) continue;
      path.push_back(i);
      collect(items[i], path, out);
      path.erase(path.size() - 1);
    }
  }
}

// The paths as a trie, so that marking walks the tree once whatever their number.
struct Trie {
  bool mark = false;
  std::map<std::string, std::unique_ptr<Trie>> keys;
  std::map<std::uint64_t, std::unique_ptr<Trie>> indices;
};

std::size_t apply(Node& n, const Trie& t, const std::string& where, const std::string& file) {
  std::size_t marked = 0;
  if (t.mark) {
    if (!n.is_dict()) {
      throw_format_error(file, kMetaEntry,
                         "int_key_dicts names '" + where + "', which is not a dict in the tree");
    }
    try {
      n.set_key_type(Node::KeyType::kInt);
    } catch (const UsageError& e) {
      throw_format_error(file, kMetaEntry,
                         "int_key_dicts names '" + where + "': " + std::string(e.what()));
    }
    ++marked;
  }
  if (!t.keys.empty() && n.is_dict()) {
    for (auto& [key, value] : n.as_dict()) {
      auto it = t.keys.find(key);
      if (it != t.keys.end()) marked += apply(value, *it->second, where + "/" + key, file);
    }
  }
  if (!t.indices.empty() && n.is_list()) {
    auto& items = n.as_list();
    for (const auto& [i, sub] : t.indices) {
      if (i < items.size()) marked += apply(items[i], *sub, where + "/" + std::to_string(i), file);
    }
  }
  return marked;
}

}  // namespace

nlohmann::ordered_json int_key_dict_paths(const Node& root) {
  ojson out = ojson::array();
  ojson path = ojson::array();
  collect(root, path, out);
  return out;
}

void mark_int_key_dicts(Node& root, const nlohmann::ordered_json& paths, const std::string& file) {
  if (!paths.is_array()) {
    throw_format_error(file, kMetaEntry, "int_key_dicts: expected a list of paths");
  }
  Trie trie;
  for (const auto& path : paths) {
    if (!path.is_array()) {
      throw_format_error(file, kMetaEntry,
                         "int_key_dicts: expected a path (a list), found " + path.dump());
    }
    Trie* t = &trie;
    for (const auto& step : path) {
      std::unique_ptr<Trie>* next = nullptr;
      if (step.is_string()) {
        next = &t->keys[step.get<std::string>()];
      } else if (step.is_number_unsigned()) {
        next = &t->indices[step.get<std::uint64_t>()];
      } else {
        throw_format_error(
            file, kMetaEntry,
            "int_key_dicts: a path step must be a key or an index, found " + step.dump());
      }
      if (!*next) *next = std::make_unique<Trie>();
      t = next->get();
    }
    if (t->mark) {
      throw_format_error(file, kMetaEntry, "int_key_dicts lists " + path.dump() + " twice");
    }
    t->mark = true;
  }
  const std::size_t marked = apply(root, trie, "", file);
  if (marked != paths.size()) {
    throw_format_error(file, kMetaEntry,
                       "int_key_dicts lists " + std::to_string(paths.size()) +
                           " dicts, the tree has " + std::to_string(marked) + " of them");
  }
}

}  // namespace zanj::detail
