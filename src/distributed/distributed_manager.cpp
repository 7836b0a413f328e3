// SPDX-License-Identifier: MIT
// CheckpointManager's distributed saves: every rank saves its part, rank 0 keeps the books.
#include <functional>

#include "collectives.hpp"
#include "configured_model/checkpoint_manager.hpp"
#include "configured_model/distributed.hpp"
#include "configured_model/errors.hpp"

namespace zanj {
namespace {

// After a distributed save committed: the index and pruning are rank 0's (decided as every rank
// would); the others learn whether it worked.
void keep_books(c10d::ProcessGroup& group, const std::string& path,
                const std::function<void()>& bookkeep) {
  std::string failure;
  if (group.getRank() == 0) {
    try {
      bookkeep();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  failure = detail::broadcast_bytes(group, 0, failure, "checkpoint bookkeeping");
  if (!failure.empty()) {
    throw IoError(path + ": saved, but rank 0 could not update the index or prune: " + failure);
  }
}

}  // namespace

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
  DistributedSaveOptions booked = options;
  booked.save = with_books(options.save, step, metrics);
  zanj::save_distributed(path, tree, group, booked);
  keep_books(group, path, [&] { bookkeep(step, path, metrics); });
  return path;
}

SaveHandle CheckpointManager::save_distributed_async(std::int64_t step, const Node& tree,
                                                     c10d::ProcessGroup& group,
                                                     const nlohmann::json& metrics) {
  check_metrics(metrics);
  if (!saver_) saver_ = std::make_unique<AsyncSaver>();
  const std::string path = directory_for(step);
  DistributedSaveOptions booked;
  booked.save = with_books(booked.save, step, metrics);
  return saver_->save_with(tree, path,
                           [this, step, path, metrics, booked, &group](const Node& snapshot) {
                             zanj::save_distributed(path, snapshot, group, booked);
                             keep_books(group, path, [&] { bookkeep(step, path, metrics); });
                           });
}

}  // namespace zanj
