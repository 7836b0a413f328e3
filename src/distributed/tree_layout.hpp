// SPDX-License-Identifier: MIT
// A tree split into its structure (JSON, tensors replaced by numbered placeholders) and its
// tensors in tree order, and put back together: how a distributed checkpoint's index holds the
// tree while the rank files hold the tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "configured_model/node.hpp"

namespace zanj::detail {

/// The key of a tensor's placeholder in the structure: {"__distributed_tensor__": i}.
inline constexpr const char* kTensorPlaceholder = "__distributed_tensor__";

struct FlatTensor {
  std::string path;  ///< keys and list indices joined with '/'
  at::Tensor tensor;
};

/// The structure of `root`, appending its tensors to `tensors` in tree order.
nlohmann::ordered_json split_tree(const Node& root, std::vector<FlatTensor>& tensors);

/// The tree back, with `tensors[i]` where placeholder i stands.
/// @throws FormatError (naming `file`) for a placeholder without a tensor.
Node join_tree(const nlohmann::ordered_json& structure, const std::vector<at::Tensor>& tensors,
               const std::string& file);

/// True when `path` is `prefix` or lies below it ("a/b" is below "a", "ab" is not).
bool path_under(const std::string& path, const std::string& prefix);

}  // namespace zanj::detail
