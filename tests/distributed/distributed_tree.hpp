// SPDX-License-Identifier: MIT
// The tree the distributed tests save: every rank builds the same one (an embedding sharded by
// rows over the ranks, everything else replicated, an RNG state per rank), and the tests rebuild
// the whole of it to compare with what is read back.
#pragma once

#include <torch/torch.h>

#include <string>

#include "configured_model/distributed.hpp"

namespace zanj_test {

inline constexpr const char* kShardedPath = "state_dict/emb.weight";
inline constexpr std::int64_t kEmbRows = 37;

/// The whole tree; `variant` changes every value (a second save over the first).
inline zanj::Node whole_tree(int variant) {
  torch::manual_seed(1234 + variant);
  zanj::Node root = zanj::Node::dict();
  root["config"] = nlohmann::json{{"hidden", 64}, {"name", "dist"}, {"variant", variant}};
  zanj::Node sd = zanj::Node::dict();
  sd["emb.weight"] = torch::randn({kEmbRows, 8});
  sd["fc.weight"] = torch::randn({64, 32});
  sd["fc.bias"] = torch::randn({64});
  sd["scale"] = torch::tensor(0.5 + variant, torch::kDouble).reshape({});
  sd["mask"] = torch::rand({10}) > 0.5;
  sd["half"] = torch::randn({5, 3}).to(torch::kHalf);
  sd["bf16"] = torch::randn({300}).to(torch::kBFloat16);
  sd["empty"] = torch::zeros({0, 4});
  sd["steps"] = torch::arange(7, torch::kLong) * (variant + 1);
  root["state_dict"] = std::move(sd);
  zanj::Node buffers = zanj::Node::list();
  buffers.push_back(torch::randn({3, 300}));
  buffers.push_back(torch::randint(0, 100, {40}, torch::kInt));
  root["buffers"] = std::move(buffers);
  zanj::Node ts = zanj::Node::dict();
  ts["step"] = nlohmann::json(7 + variant);
  ts["lr"] = nlohmann::json(1e-3);
  zanj::Node rng = zanj::Node::dict();
  rng["cpu"] = torch::full({16}, 1, torch::kByte);  // each rank saves its own (rank_tree)
  ts["rng"] = std::move(rng);
  root["training_state"] = std::move(ts);
  return root;
}

/// The RNG state rank `rank` saves.
inline torch::Tensor rank_rng(int rank, int variant) {
  return torch::full({16}, rank + 1 + 10 * variant, torch::kByte);
}

/// What rank `rank` of `world` passes to save_distributed: its rows of the embedding, declared
/// in `options`, and its own RNG state.
inline zanj::Node rank_tree(int rank, int world, int variant,
                            zanj::DistributedSaveOptions& options) {
  zanj::Node root = whole_tree(variant);
  auto& emb = root.at("state_dict").at("emb.weight");
  const auto [offset, length] = zanj::even_split(kEmbRows, rank, world);
  const torch::Tensor full = emb.tensor();
  emb = zanj::Node(full.narrow(0, offset, length).clone());
  options.shards[kShardedPath] = zanj::Shard{full.sizes().vec(), 0, offset};
  root.at("training_state").at("rng")["cpu"] = rank_rng(rank, variant);
  return root;
}

}  // namespace zanj_test
