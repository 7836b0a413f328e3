// SPDX-License-Identifier: MIT
// CheckpointManager's distributed saves: every rank saves its part, rank 0 keeps the books.
#include "collectives.hpp"
#include "configured_model/checkpoint_manager.hpp"
#include "configured_model/distributed.hpp"
#include "configured_model/errors.hpp"

namespace zanj {

std::string CheckpointManager::save_distributed(std::int64_t step, const Node& tree,
                                                c10d::ProcessGroup& group,
                                                const nlohmann::json& metrics) {
  return save_distributed(step, tree, group, metrics, DistributedSaveOptions{});
}

std::string CheckpointManager::save_distributed(std::int64_t step, const Node& tree,
                                                c10d::ProcessGroup& group,
                                                const nlohmann::json& metrics,
                                                const DistributedSaveOptions& options) {
  check_metrics(metrics);  // the same arguments on every rank: all throw, or none
  wait();                  // a background save of this manager lands first
  const std::string path = directory_for(step);
  zanj::save_distributed(path, tree, group, options);
  // The checkpoint exists; the index and pruning are rank 0's, decided as every rank would.
  std::string failure;
  if (group.getRank() == 0) {
    try {
      bookkeep(step, path, metrics);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  failure = detail::broadcast_bytes(group, 0, failure, "checkpoint bookkeeping");
  if (!failure.empty()) {
    throw IoError(path + ": saved, but rank 0 could not update the index or prune: " + failure);
  }
  return path;
}

}  // namespace zanj
