// SPDX-License-Identifier: MIT
// A libtorch sampler's archive <-> a tree of tensors (what checkpoints keep of the data position).
#include "configured_model/data_position.hpp"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <sstream>

#include "configured_model/errors.hpp"

namespace zanj::detail {

Node sampler_node(const std::string& name, const std::vector<std::string>& keys,
                  const std::function<void(torch::serialize::OutputArchive&)>& save) {
  torch::serialize::OutputArchive out;
  save(out);
  std::stringstream bytes;
  out.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  Node n = Node::dict();
  n["sampler"] = nlohmann::json(name);
  for (const auto& key : keys) {
    at::Tensor t;
    if (!in.try_read(key, t, /*is_buffer=*/true)) {
      throw ConfigError(name + ": its save() wrote no '" + key +
                        "' (SamplerKeys lists keys the sampler does not write)");
    }
    n[key] = t.detach().clone();
  }
  return n;
}

void load_sampler_node(const Node& node, const std::string& name,
                       const std::vector<std::string>& keys, const std::string& file,
                       const std::function<void(torch::serialize::InputArchive&)>& load) {
  const std::string where = "training_state/data";
  if (!node.is_dict()) throw_format_error(file, where, "expected a dict");
  const Node* saved = node.find("sampler");
  const std::string saved_name = saved && saved->is_scalar() && saved->scalar().is_string()
                                     ? saved->scalar().get<std::string>()
                                     : std::string();
  if (saved_name != name) {
    throw StateMismatchError(message(
        file, where,
        "saved by a " + (saved_name.empty() ? "?" : saved_name) + ", restored into a " + name));
  }
  torch::serialize::OutputArchive out;
  for (const auto& key : keys) {
    const Node* v = node.find(key);
    if (!v || !v->is_tensor() || v->tensor().scalar_type() != at::kLong) {
      throw_format_error(file, where + "/" + key, "expected an int64 tensor");
    }
    if (v->tensor().numel() > 0 && v->tensor().min().item<std::int64_t>() < 0) {
      throw_format_error(file, where + "/" + key, "negative index");
    }
    out.write(key, v->tensor().contiguous().clone(), /*is_buffer=*/true);
  }
  // A permutation must hold each index of the dataset once, and its position lie within it.
  if (const Node* indices = node.find("indices")) {
    const at::Tensor& p = indices->tensor();
    const std::int64_t n = p.numel();
    if (p.dim() != 1 || (n > 0 && !at::equal(std::get<0>(p.sort()), at::arange(n, p.options())))) {
      throw_format_error(file, where + "/indices", "not a permutation of 0.." + std::to_string(n));
    }
    if (const Node* index = node.find("index")) {
      const at::Tensor& i = index->tensor();
      if (i.numel() != 1 || i.item<std::int64_t>() > n) {
        throw_format_error(file, where + "/index",
                           "expected one position within 0.." + std::to_string(n));
      }
    }
  }
  std::stringstream bytes;
  out.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  try {
    load(in);
  } catch (const c10::Error& e) {
    throw_format_error(file, where,
                       std::string("the sampler refused it: ") + e.what_without_backtrace());
  }
}

}  // namespace zanj::detail
