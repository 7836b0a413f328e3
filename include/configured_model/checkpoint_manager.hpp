// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <exception>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "configured_model/async_saver.hpp"
#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"
#include "configured_model/training_state.hpp"

CONFIGURED_MODEL_API_BEGIN

#ifdef CONFIGURED_MODEL_DISTRIBUTED
namespace c10d {
class ProcessGroup;
}
#endif

namespace zanj {

/// When to save and what to keep.
struct CheckpointPolicy {
  std::int64_t save_every = 1;  ///< due(step) is true every this many steps (0: never)
  std::int64_t keep_last = 3;   ///< keep the newest N checkpoints (0: none by recency)
  std::int64_t keep_best = 0;   ///< keep the best K by `metric` (0: none by metric)
  std::string metric;           ///< name of the metric passed to save(), e.g. "val_loss"
  bool maximize = false;        ///< best means largest (true) or smallest (false)
  std::int64_t keep_every = 0;  ///< keep every checkpoint whose step is a multiple of M forever
};

/// One checkpoint in the directory.
struct CheckpointInfo {
  std::string path;
  std::int64_t step = 0;
  nlohmann::json metrics;  ///< as passed to save(); null if unknown
};

/// The checkpoints in `directory` (a local directory or an `s3://bucket/prefix`) by step, oldest
/// first, with the metrics each carries: what CheckpointManager::list() returns, without a
/// manager (nothing is created, cleaned or rewritten).  @throws IoError if it cannot be listed.
std::vector<CheckpointInfo> list_checkpoints(const std::string& directory);

#ifdef CONFIGURED_MODEL_DISTRIBUTED
struct DistributedSaveOptions;  // configured_model/distributed.hpp
#endif

/// Keeps a directory of checkpoints `ckpt-<step>.zanj` (and distributed ones, directories
/// `ckpt-<step>/`), pruned by a policy.
///
/// Each save is crash-safe (see zanj::save), then the index `checkpoints.json` (steps and
/// metrics) is replaced atomically, then old checkpoints are pruned. Pruning never removes the
/// checkpoint just written, nor the current best. The directory listing is the source of truth
/// for which checkpoints exist; the index only adds their metrics (it is written to a
/// temporary, fsync'ed, renamed, and the directory fsync'ed, like a checkpoint). Temporary files
/// are hidden (`.ckpt-...tmp`) and never listed; each writer holds an flock on its temporary
/// while it writes, and opening a manager removes the temporaries no live writer holds (left by
/// a killed process), never those of a save in progress.
///
/// Not safe for two processes managing the same directory at once.
class CheckpointManager {
 public:
  /// Opens (creating if needed) `directory`.
  /// @throws IoError if it cannot be created.
  CheckpointManager(std::string directory, CheckpointPolicy policy);

  /// Whether the policy wants a checkpoint after `step` steps.
  bool due(std::int64_t step) const;

  /// Saves `tree` as the checkpoint for `step` with `metrics` (a JSON object; must contain
  /// policy.metric when keep_best > 0), then prunes. Returns the path written.
  std::string save(std::int64_t step, const Node& tree, const nlohmann::json& metrics = nullptr,
                   const SaveOptions& options = {});

  /// Saves a model with its optimizer, scheduler and counters (`state.step` names the file).
  template <class Model>
  std::string save(const Model& model, const torch::optim::Optimizer& optimizer,
                   const torch::optim::LRScheduler* scheduler, const TrainingState& state,
                   const nlohmann::json& metrics = nullptr, const SaveOptions& options = {}) {
    return save(state.step, checkpoint_node(model, optimizer, scheduler, state), metrics, options);
  }

  /// Like save(), in the background (AsyncSaver): returns once the state is copied aside; the
  /// file is written, the index updated and old checkpoints pruned on the writer thread. At
  /// most one save is in flight: the next save or save_async first waits for it. A failure is
  /// rethrown by the handle's wait(), or else by the next save/save_async/wait(), or logged when
  /// the manager is destroyed (which waits for the write in flight).
  SaveHandle save_async(std::int64_t step, const Node& tree,
                        const nlohmann::json& metrics = nullptr, const SaveOptions& options = {});

  /// A model with its optimizer, scheduler and counters, in the background.
  template <class Model>
  SaveHandle save_async(const Model& model, const torch::optim::Optimizer& optimizer,
                        const torch::optim::LRScheduler* scheduler, const TrainingState& state,
                        const nlohmann::json& metrics = nullptr, const SaveOptions& options = {}) {
    return save_async(state.step, checkpoint_node(model, optimizer, scheduler, state), metrics,
                      options);
  }

  /// Reserves the background saves' staging memory for a state shaped like this one (see
  /// AsyncSaver::reserve), so that the first save_async stalls no longer than later ones. Call
  /// it once the optimizer's state exists (after the first step).
  template <class Model>
  void reserve_async(const Model& model, const torch::optim::Optimizer& optimizer,
                     const torch::optim::LRScheduler* scheduler, const TrainingState& state) {
    reserve_async(checkpoint_node(model, optimizer, scheduler, state));
  }
  void reserve_async(const Node& tree);

#ifdef CONFIGURED_MODEL_DISTRIBUTED
  /// A distributed checkpoint for `step` (the directory `ckpt-<step>/`, see
  /// zanj::save_distributed in configured_model/distributed.hpp), called by every rank of
  /// `group` with its view of the tree. After the ranks commit, rank 0 updates the index and
  /// prunes (every rank's manager would decide the same); the others wait for it. Returns the
  /// checkpoint's directory.  @throws as save_distributed; IoError on every rank if rank 0's
  /// bookkeeping fails.
  std::string save_distributed(std::int64_t step, const Node& tree, c10d::ProcessGroup& group,
                               const nlohmann::json& metrics = nullptr);
  std::string save_distributed(std::int64_t step, const Node& tree, c10d::ProcessGroup& group,
                               const nlohmann::json& metrics,
                               const DistributedSaveOptions& options);
  /// A model with its optimizer, scheduler and counters (this rank's RNG states), by every rank.
  template <class Model>
  std::string save_distributed(const Model& model, const torch::optim::Optimizer& optimizer,
                               const torch::optim::LRScheduler* scheduler,
                               const TrainingState& state, c10d::ProcessGroup& group,
                               const nlohmann::json& metrics = nullptr) {
    return save_distributed(state.step, checkpoint_node(model, optimizer, scheduler, state), group,
                            metrics);
  }
  /// save_distributed in the background (see zanj::save_distributed_async): returns once this
  /// rank's state is copied aside; the writer thread saves, then rank 0 updates the index and
  /// prunes. `group` must be dedicated to checkpoints while saves are in flight (not the group
  /// training all-reduces over) and outlive them. Failures reach wait() as with save_async.
  SaveHandle save_distributed_async(std::int64_t step, const Node& tree, c10d::ProcessGroup& group,
                                    const nlohmann::json& metrics = nullptr);
  template <class Model>
  SaveHandle save_distributed_async(const Model& model, const torch::optim::Optimizer& optimizer,
                                    const torch::optim::LRScheduler* scheduler,
                                    const TrainingState& state, c10d::ProcessGroup& group,
                                    const nlohmann::json& metrics = nullptr) {
    return save_distributed_async(state.step, checkpoint_node(model, optimizer, scheduler, state),
                                  group, metrics);
  }
  /// The directory used for the distributed checkpoint of `step`.
  std::string directory_for(std::int64_t step) const;
#endif

  /// Waits for the background save in flight, if any; rethrows its unobserved failure.
  void wait();

  /// Every checkpoint, oldest step first.
  std::vector<CheckpointInfo> list() const;
  /// The newest checkpoint, if any.
  std::optional<CheckpointInfo> latest() const;
  /// The best checkpoint by policy.metric, if any has that metric.
  std::optional<CheckpointInfo> best() const;

  /// Resumes from the newest checkpoint that reads: the model, optimizer, scheduler, counters
  /// and RNG states. A newest checkpoint that is damaged (a FormatError: truncated, a CRC
  /// mismatch, malformed) is skipped with a warning naming it, for the newest one before it
  /// that reads.
  /// @throws IoError if the directory holds no checkpoint or a read fails (a storage error is
  ///         not taken for damage); the newest checkpoint's FormatError when none reads;
  ///         StateMismatchError / ConfigError at once (the code, not the file, differs).
  template <class Model>
  TrainingRun<Model> resume_latest(const ReadOptions& options = {}) const {
    const std::vector<CheckpointInfo> all = list();
    if (all.empty()) throw IoError(directory_ + ": no checkpoint to resume from");
    std::exception_ptr newest_error;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      try {
        return resume<Model>(it->path, options);
      } catch (const FormatError& e) {
        warn_damaged(it->path, e.what(), std::next(it) != all.rend());
        if (!newest_error) newest_error = std::current_exception();
      }
    }
    std::rethrow_exception(newest_error);
  }

  const std::string& directory() const { return directory_; }
  /// The file name used for `step`.
  std::string path_for(std::int64_t step) const;

 private:
  void write_index(const std::vector<CheckpointInfo>& infos) const;
  // The listing, with each checkpoint's metrics from the checkpoint itself where it carries them
  // (else from the index); *stale says whether the index disagreed.
  std::vector<CheckpointInfo> scan(bool* stale) const;
  SaveOptions with_books(SaveOptions options, std::int64_t step,
                         const nlohmann::json& metrics) const;
  void prune(std::int64_t just_written);
  void check_metrics(const nlohmann::json& metrics) const;
  void bookkeep(std::int64_t step, const std::string& path, const nlohmann::json& metrics);
  void remove_stale_temporaries() const;
  void warn_damaged(const std::string& path, const std::string& what, bool older_left) const;

  std::string directory_;
  CheckpointPolicy policy_;
  std::unique_ptr<AsyncSaver> saver_;  // last: destroyed (and waited for) first
};

}  // namespace zanj

CONFIGURED_MODEL_API_END
