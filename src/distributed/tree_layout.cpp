// SPDX-License-Identifier: MIT
#include "tree_layout.hpp"

#include "configured_model/errors.hpp"

namespace zanj::detail {
namespace {

std::string join(const std::string& base, const std::string& key) {
  return base.empty() ? key : base + "/" + key;
}

nlohmann::ordered_json split(const Node& node, const std::string& path,
                             std::vector<FlatTensor>& tensors) {
  if (node.is_tensor()) {
    tensors.push_back({path, node.tensor()});
    return nlohmann::ordered_json{{kTensorPlaceholder, tensors.size() - 1}};
  }
  if (node.is_dict()) {
    auto out = nlohmann::ordered_json::object();
    for (const auto& [key, child] : node.as_dict())
      out[key] = split(child, join(path, key), tensors);
    return out;
  }
  if (node.is_list()) {
    auto out = nlohmann::ordered_json::array();
    const auto& list = node.as_list();
    for (std::size_t i = 0; i < list.size(); ++i) {
      out.push_back(split(list[i], join(path, std::to_string(i)), tensors));
    }
    return out;
  }
  return node.scalar();
}

Node join_node(const nlohmann::ordered_json& j, const std::vector<at::Tensor>& tensors,
               const std::string& file, const std::string& path) {
  if (j.is_object()) {
    if (j.size() == 1 && j.contains(kTensorPlaceholder)) {
      const auto& id = j[kTensorPlaceholder];
      if (!id.is_number_unsigned() || id.get<std::uint64_t>() >= tensors.size()) {
        detail::throw_format_error(file, path,
                                   "tensor placeholder " + id.dump() + " names no tensor (" +
                                       std::to_string(tensors.size()) + " in the index)");
      }
      return Node(tensors[id.get<std::size_t>()]);
    }
    Node::Dict out;
    out.reserve(j.size());
    for (auto it = j.begin(); it != j.end(); ++it) {
      out.emplace_back(it.key(), join_node(it.value(), tensors, file, join(path, it.key())));
    }
    return Node(std::move(out));
  }
  if (j.is_array()) {
    Node::List out;
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
      out.push_back(join_node(j[i], tensors, file, join(path, std::to_string(i))));
    }
    return Node(std::move(out));
  }
  return Node(j);
}

}  // namespace

nlohmann::ordered_json split_tree(const Node& root, std::vector<FlatTensor>& tensors) {
  return split(root, "", tensors);
}

Node join_tree(const nlohmann::ordered_json& structure, const std::vector<at::Tensor>& tensors,
               const std::string& file) {
  return join_node(structure, tensors, file, "tree");
}

bool path_under(const std::string& path, const std::string& prefix) {
  if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  return path.size() == prefix.size() || prefix.empty() || path[prefix.size()] == '/';
}

}  // namespace zanj::detail
