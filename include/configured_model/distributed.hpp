// SPDX-License-Identifier: MIT
// Distributed checkpoints: every rank of a c10d process group saves its part of one checkpoint
// in parallel, the ranks commit together, and any number of ranks read it back.
//
// Built only with CONFIGURED_MODEL_DISTRIBUTED (ON when libtorch's c10d headers and Gloo's are
// found); single-process users do not pay for it. Only the c10d::ProcessGroup interface is used,
// so Gloo, NCCL and MPI groups all work (the tests use Gloo on 127.0.0.1; NCCL is untested).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <vector>

#include "configured_model/async_saver.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"
#include "configured_model/training_state.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// The name of the file that makes a distributed checkpoint exist (written last, by rank 0).
inline constexpr const char* kDistributedIndex = "checkpoint.json";

/// A tensor this rank holds only a piece of: the piece is `global_shape` cut along `dim`,
/// starting at `offset` (its other dimensions are whole). Paths name tensors in the tree by keys
/// and list indices joined with '/': "state_dict/embedding.weight".
struct Shard {
  std::vector<std::int64_t> global_shape;
  std::int64_t dim = 0;
  std::int64_t offset = 0;
};

/// torch.chunk's split of `size` elements over `world_size` ranks: (offset, length) of `rank`'s
/// part (the last parts may be shorter or empty).
std::pair<std::int64_t, std::int64_t> even_split(std::int64_t size, int rank, int world_size);

struct DistributedSaveOptions {
  /// How every rank file is written (compression, thresholds).
  SaveOptions save;
  /// Tensors this rank holds a piece of, by path. Every other tensor is replicated: the same on
  /// every rank, and written by exactly one rank chosen by the plan.
  std::map<std::string, Shard> shards;
  /// Path prefixes whose tensors differ per rank and are written by every rank into its own file
  /// (by default the RNG states of a training checkpoint).
  std::vector<std::string> per_rank = {"training_state/rng"};
};

struct DistributedReadOptions {
  ReadOptions read;
  /// For tensors saved as shards: the piece this rank wants, by path (dim, offset, length along
  /// dim). Sharded tensors not named come back whole.
  struct Piece {
    std::int64_t dim = 0;
    std::int64_t offset = 0;
    std::int64_t length = 0;
  };
  std::map<std::string, Piece> pieces;
  /// Replicated tensors: false (default) each rank reads them from the files; true rank 0 reads
  /// them and broadcasts them over the process group (fewer file reads, more network).
  bool broadcast_replicated = false;
};

/// What a save wrote, as every rank sees it after the commit.
struct DistributedSaveResult {
  std::string directory;
  std::vector<std::uint64_t> bytes_per_rank;  ///< size of each rank's file
  std::uint64_t tensor_bytes = 0;             ///< bytes of the whole model's tensors
};

/// Saves `root` (this rank's view of the tree: every rank passes the same structure; replicated
/// tensors are equal everywhere; JSON values are taken from rank 0, so a timestamp that differs
/// between ranks is fine) as the distributed checkpoint in `directory`. Called by every
/// rank of `group`. Replicated tensors are written once in total, spread over the ranks by a
/// deterministic plan balanced by bytes; shards are written by their owners.
///
/// Commit: every rank writes and fsyncs its file under a name new to this save; the results
/// (success, size, CRC-32) are gathered over `group`; only if every rank succeeded does rank 0
/// write the index (checkpoint.json, crash-safely) last, and the index is what makes the
/// checkpoint exist. Files of the previous save in the directory are removed after the commit.
/// If any rank fails, the previous checkpoint stays, the new files are removed, and every rank
/// that is alive throws IoError (a rank that died is noticed through the group's timeout).
/// @throws IoError as above; ConfigError when the ranks disagree on the tree's structure or a
///         shard does not fit its declaration.
DistributedSaveResult save_distributed(const std::string& directory, const Node& root,
                                       c10d::ProcessGroup& group,
                                       const DistributedSaveOptions& options = {});

/// save_distributed in the background: `saver` snapshots `root` (the caller's only stall: one
/// memory copy of this rank's state, into staging memory reused save after save), then its
/// writer thread runs save_distributed on the snapshot; the handle's wait() rethrows its error.
/// Every rank calls it. `group` must outlive the save and must not be used by anything else
/// while a save is in flight: collectives have to come in the same order on every rank, and
/// training's allreduce on the other thread would interleave with the save's. Give checkpoints
/// a group of their own (e.g. a ProcessGroupGloo over a c10d::PrefixStore of the training
/// group's store), as examples/ddp does.
SaveHandle save_distributed_async(AsyncSaver& saver, const std::string& directory, const Node& root,
                                  c10d::ProcessGroup& group,
                                  const DistributedSaveOptions& options = {});

/// Reads the distributed checkpoint in `directory` as rank `rank` of `world_size` (any world
/// size, not only the one that saved it): the whole structure, replicated tensors whole, sharded
/// tensors as `options.pieces` asks (whole otherwise), per-rank tensors from the same rank's file
/// when it exists, else from rank 0's. Only the entries needed are read.
/// @throws IoError for a missing file; FormatError (naming the file and rank) for a truncated or
///         foreign rank file or an index that disagrees with the files.
Node read_distributed(const std::string& directory, int rank, int world_size,
                      const DistributedReadOptions& options = {});

/// The same, with the rank and size of `group` (and broadcast_replicated available).
Node read_distributed(const std::string& directory, c10d::ProcessGroup& group,
                      const DistributedReadOptions& options = {});

/// resume() for a distributed training checkpoint: the model (`Model::from_node`), optimizer,
/// scheduler and counters, and this rank's RNG states (rank 0's when the checkpoint was saved by
/// fewer ranks), at any world size. Every rank of `group` calls it.
template <class Model>
TrainingRun<Model> resume_distributed(const std::string& directory, c10d::ProcessGroup& group,
                                      const DistributedReadOptions& options = {}) {
  const Node root = read_distributed(directory, group, options);
  std::shared_ptr<Model> model = Model::adopt_node(root, directory, options.read);
  const Node* training = root.find(kTrainingStateKey);
  if (!training) {
    throw FormatError(directory + ": " + kTrainingStateKey +
                      ": missing (a model checkpoint, not a training checkpoint)");
  }
  TrainingRun<Model> run;
  // The tree was read for this resume alone: the optimizer takes its state tensors.
  static_cast<Resumed&>(run) =
      detail::resume_training_owned(*training, *model, directory, options.read);
  run.model = std::move(model);
  return run;
}

/// One ordinary `.zanj` of the whole tree (what a single process would have saved), which
/// zanj::read and Python ZANJ read.
void consolidate(const std::string& directory, const std::string& out,
                 const SaveOptions& options = {});

/// True when `directory` holds a distributed checkpoint (its index).
bool is_distributed_checkpoint(const std::string& directory);

/// What the index of a distributed checkpoint says, without opening a rank file.
struct DistributedTensorInfo {
  std::string path;
  std::vector<std::int64_t> shape;
  c10::ScalarType dtype = c10::kFloat;
  std::string placement;  ///< "replicated", "sharded" or "per_rank"
  std::size_t pieces = 0;
  std::uint64_t bytes = 0;  ///< of the whole tensor
};
struct DistributedCheckpointInfo {
  int world_size = 1;  ///< ranks that saved it
  std::vector<std::string> files;
  std::vector<std::uint64_t> file_bytes;
  std::vector<DistributedTensorInfo> tensors;
};
/// @throws as read_distributed.
DistributedCheckpointInfo inspect_distributed(const std::string& directory);

/// Checks every rank file against the index: present, size, CRC-32 of the whole file, and
/// each file's own entries. @throws as read_distributed.
void verify_distributed(const std::string& directory);

}  // namespace zanj

CONFIGURED_MODEL_API_END
