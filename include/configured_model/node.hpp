// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// A tree of JSON values and tensors: what a `.zanj` file holds.
///
/// A Node is one of: a JSON scalar (null, bool, number, string), a tensor, a list of Nodes, or a
/// dict of Nodes with string keys kept in insertion order. Building a Node from a JSON object or
/// array converts it into dicts and lists, so there is one representation for every tree.
///
/// \code
///   zanj::Node tree = zanj::Node::dict();
///   tree["weights"] = torch::randn({512, 512});
///   tree["meta"] = nlohmann::json{{"epoch", 3}, {"lr", 1e-3}};
///   zanj::save(tree, "tensors.zanj");
///   torch::Tensor w = zanj::read("tensors.zanj").at("weights").tensor();
/// \endcode
class Node {
 public:
  using List = std::vector<Node>;
  using Dict = std::vector<std::pair<std::string, Node>>;

  /// A JSON null.
  Node() = default;
  /// A JSON value; objects and arrays become dicts and lists.
  Node(const nlohmann::json& value);          // NOLINT(google-explicit-constructor)
  Node(const nlohmann::ordered_json& value);  // NOLINT(google-explicit-constructor)
  /// A tensor (kept by reference, as torch does; save() reads it when writing).
  Node(at::Tensor tensor);  // NOLINT(google-explicit-constructor)
  Node(List list);          // NOLINT(google-explicit-constructor)
  Node(Dict dict);          // NOLINT(google-explicit-constructor)

  /// An empty dict.
  static Node dict() { return Node(Dict{}); }
  /// An empty list.
  static Node list() { return Node(List{}); }

  bool is_null() const;
  bool is_scalar() const { return std::holds_alternative<nlohmann::ordered_json>(value_); }
  bool is_tensor() const { return std::holds_alternative<at::Tensor>(value_); }
  bool is_list() const { return std::holds_alternative<List>(value_); }
  bool is_dict() const { return std::holds_alternative<Dict>(value_); }

  /// The tensor. @throws FormatError if this is not a tensor.
  const at::Tensor& tensor() const;
  /// The JSON scalar. @throws FormatError if this is not a scalar.
  const nlohmann::ordered_json& scalar() const;
  const List& as_list() const;
  List& as_list();
  const Dict& as_dict() const;
  Dict& as_dict();

  /// Number of items of a list or dict; 0 otherwise.
  std::size_t size() const;

  /// Dict access, inserting a null Node when `key` is absent. A null Node becomes a dict first.
  /// @throws FormatError if this is neither a dict nor null.
  Node& operator[](const std::string& key);
  /// Dict look-up. @throws FormatError naming the key if it is absent or this is not a dict.
  const Node& at(const std::string& key) const;
  Node& at(const std::string& key);
  /// List item. @throws FormatError if out of range or this is not a list.
  const Node& at(std::size_t index) const;
  /// Dict look-up without throwing: nullptr if absent or not a dict.
  const Node* find(const std::string& key) const;
  Node* find(const std::string& key);
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  /// Appends to a list. A null Node becomes a list first.
  void push_back(Node item);
  /// Removes `key` from a dict; returns whether it was there.
  bool erase(const std::string& key);

  /// The tree as JSON. @throws FormatError naming the path if it holds a tensor.
  nlohmann::ordered_json to_json() const;
  /// Whether any tensor is in this subtree.
  bool contains_tensor() const;

  /// Marks this subtree to be written inline, never as external `.jsonl`/`.npy` entries
  /// (ConfiguredModel uses it for its config, which Python reads as raw JSON).
  void set_keep_inline(bool keep) { keep_inline_ = keep; }
  bool keep_inline() const { return keep_inline_; }

  /// What a dict's keys were where it came from. JSON keys are text; a Python dict can be keyed
  /// by integers (an optimizer's `state`: `{0: {...}, 1: {...}}`). A dict read from a
  /// `torch.save` file with only integer keys is marked kInt, holds them as decimal text, and
  /// keeps the mark through `.zanj` (recorded in `__zanj_meta__.json`, which Python ZANJ ignores:
  /// it reads the keys as text, as it writes them) and back to `.pt`, where they are ints again.
  enum class KeyType { kString, kInt };
  KeyType key_type() const { return key_type_; }
  /// Marks a dict's keys. kInt needs every key to be a canonical decimal int64 ("0", "-3").
  /// @throws UsageError naming the offending key, or if this is not a dict.
  void set_key_type(KeyType type);

  /// Equal trees: the same kinds in the same places, dict keys in the same order and of the same
  /// key type, equal JSON scalars, and tensors of the same dtype, shape and bytes (bit-exact, so
  /// NaN payloads and -0.0 count). The keep_inline() marks are not compared.
  friend bool operator==(const Node& a, const Node& b);
  friend bool operator!=(const Node& a, const Node& b) { return !(a == b); }

 private:
  std::variant<nlohmann::ordered_json, at::Tensor, List, Dict> value_;
  bool keep_inline_ = false;
  KeyType key_type_ = KeyType::kString;
};

/// Whether `key` is an integer written as Python writes it: optional '-', no leading zeros,
/// within int64. What Node::KeyType::kInt keys must be.
bool is_int_key(std::string_view key);

/// Where two trees first differ, as a `/`-separated path with what differs ("/optimizer/lr:
/// 0.1 vs 0.2"), or nullopt when `a == b`. For tests and tools that report the difference.
std::optional<std::string> first_difference(const Node& a, const Node& b);

}  // namespace zanj

CONFIGURED_MODEL_API_END
