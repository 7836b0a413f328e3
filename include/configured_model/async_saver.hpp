// SPDX-License-Identifier: MIT
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"
#include "configured_model/training_state.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// A save running in the background (see AsyncSaver). Cheap to copy; every copy refers to the
/// same save.
class SaveHandle {
 public:
  SaveHandle() = default;

  /// Blocks until the file is written and in place (or the save failed), then rethrows the
  /// save's error, if any (every call does). A handle that was never started returns at once.
  /// @throws IoError (disk full, permission, ...), or whatever a progress callback threw.
  void wait() const;
  /// Whether the save has ended, successfully or not (never blocks).
  bool done() const;
  /// Where the file goes.
  const std::string& path() const;

 private:
  friend class AsyncSaver;
  struct State;
  explicit SaveHandle(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

/// Options of an AsyncSaver.
struct AsyncOptions {
  /// Saves written at the same time. A save() beyond this first waits for the oldest one. Each
  /// slot keeps its own staging copy of the state, so memory is model + slots x state.
  std::size_t max_in_flight = 1;
};

/// Saves that do not stop training. save() only snapshots: it copies every tensor of the tree
/// (parameters, buffers, optimizer state, RNG states) into a staging area reused from one save
/// to the next (no allocation after the first save of the same state; pinned host memory for
/// CUDA tensors), then returns while a background thread writes the file exactly as
/// zanj::save() does (temporary file, fsync, rename, directory fsync). Training may change the
/// model the moment save() returns: the file holds the values at the call.
///
/// \code
///   zanj::AsyncSaver saver;
///   for (state.step = 1; state.step <= steps; ++state.step) {
///     train_one_step();
///     if (state.step % 100 == 0) saver.save_checkpoint(path_for(state.step), *model, optimizer,
///                                                      nullptr, state);
///   }
///   saver.wait();  // the last file is in place; rethrows its error
/// \endcode
///
/// Errors are never lost: SaveHandle::wait() rethrows a save's error; a failure nobody waited
/// for is rethrown by the next save() (before it snapshots anything) or by wait(), and is logged
/// at error level by the destructor if still unobserved then. The destructor waits for the
/// writes in flight. Progress callbacks run on the writer thread. Not thread-safe: call it from
/// one thread (the training loop).
class AsyncSaver {
 public:
  explicit AsyncSaver(AsyncOptions options = {});
  ~AsyncSaver();
  AsyncSaver(const AsyncSaver&) = delete;
  AsyncSaver& operator=(const AsyncSaver&) = delete;

  /// Snapshots `tree` and writes it to `path` in the background. `then`, if given, runs on the
  /// writer thread after the file is in place (a manager's bookkeeping); its exception counts
  /// as the save's.
  /// @throws the error of an earlier save nobody observed (that save's file is not there).
  SaveHandle save(const Node& tree, std::string path, const SaveOptions& options = {},
                  std::function<void()> then = {});

  /// Snapshots `tree` like save(), then runs `write(snapshot)` on the writer thread instead of
  /// zanj::save(): the one snapshot for every kind of save (distributed saves use it). `label`
  /// is what SaveHandle::path() gives. An exception from `write` is the save's error.
  SaveHandle save_with(const Node& tree, std::string label,
                       std::function<void(const Node& snapshot)> write);

  /// A ConfiguredModel (or anything with to_node()), as model.save(path) writes it.
  template <class Model>
  SaveHandle save_model(const Model& model, std::string path, const SaveOptions& options = {}) {
    return save(model.to_node(), std::move(path), options);
  }

  /// A full training checkpoint, as zanj::save_checkpoint() writes it.
  template <class Model>
  SaveHandle save_checkpoint(std::string path, const Model& model,
                             const torch::optim::Optimizer& optimizer,
                             const torch::optim::LRScheduler* scheduler, const TrainingState& state,
                             const SaveOptions& options = {}) {
    return save(checkpoint_node(model, optimizer, scheduler, state), std::move(path), options);
  }

  /// Allocates (and touches) the staging memory of the next save for a tree shaped like
  /// `tree`, so that the first save() of a process stalls no longer than later ones: call it
  /// once while setting up (say after the first optimizer step, when the optimizer's state
  /// exists). Nothing is copied; a later save of other shapes reallocates what differs.
  void reserve(const Node& tree);

  /// Waits for every save in flight; rethrows the first unobserved failure.
  void wait();

  /// Bytes of staging memory held (one copy of the state per slot used so far).
  std::uint64_t staging_bytes() const;
  /// Staging tensors allocated so far (stays put once the state's shapes stop changing).
  std::uint64_t staging_allocations() const { return allocations_; }

 private:
  struct Slot;
  struct Job;
  void run();
  Slot& free_slot();
  void rethrow_unobserved();

  AsyncOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::uint64_t allocations_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  std::vector<SaveHandle> in_flight_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace zanj

CONFIGURED_MODEL_API_END
