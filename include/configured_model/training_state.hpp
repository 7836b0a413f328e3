// SPDX-License-Identifier: MIT
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/schedulers/lr_scheduler.h>
#include <torch/optim/schedulers/step_lr.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Where a training run is. Saved with every checkpoint and handed back by resume().
struct TrainingState {
  std::int64_t step = 0;          ///< optimizer steps taken
  std::int64_t epoch = 0;         ///< epochs completed
  std::int64_t samples_seen = 0;  ///< training samples consumed
  nlohmann::json user;            ///< anything else the run wants back (any JSON)
};

/// A scheduler that can be saved and rebuilt from a file. Implement it for your own schedulers
/// and register a factory with register_scheduler(); zanj::StepLR implements it for libtorch's
/// StepLR.
class SavableScheduler {
 public:
  virtual ~SavableScheduler() = default;
  /// The name its factory is registered under, e.g. "StepLR".
  virtual std::string scheduler_type() const = 0;
  /// Everything needed to rebuild it: construction arguments and progress.
  virtual nlohmann::json scheduler_state() const = 0;
};

/// Rebuilds a scheduler over `optimizer` from what scheduler_state() returned.
using SchedulerFactory = std::function<std::unique_ptr<torch::optim::LRScheduler>(
    torch::optim::Optimizer& optimizer, const nlohmann::json& state)>;

/// Registers a factory for a scheduler type (replacing any earlier one). Thread-safe.
void register_scheduler(const std::string& type, SchedulerFactory factory);

/// libtorch's StepLR, remembering its arguments so that it can be saved: use it wherever you
/// would use `torch::optim::StepLR` (it *is* one; the learning rates come from libtorch's code).
class StepLR : public torch::optim::StepLR, public SavableScheduler {
 public:
  StepLR(torch::optim::Optimizer& optimizer, unsigned step_size, double gamma = 0.1);
  std::string scheduler_type() const override { return "StepLR"; }
  nlohmann::json scheduler_state() const override;
  unsigned step_size() const { return step_size_arg_; }
  double gamma() const { return gamma_arg_; }
  /// How many times step() has been called.
  unsigned step_count() const { return step_count_; }
  /// Sets the progress (used when rebuilding from a file).
  void set_step_count(unsigned count) { step_count_ = count; }

 private:
  unsigned step_size_arg_;
  double gamma_arg_;
};

/// What resume() rebuilds besides the model.
struct Resumed {
  /// Same type, param groups, options and per-parameter state as saved, bound by parameter name
  /// to the model passed to resume().
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  /// Null when none was saved. Refers to *optimizer.
  std::unique_ptr<torch::optim::LRScheduler> scheduler;
  TrainingState state;
};

/// The training state as a tree (`training_state` in a checkpoint): optimizer type, param groups
/// with their options and parameter *names*, per-parameter state keyed by name, the scheduler,
/// the RNG states of torch's default CPU generator and every CUDA generator, and `state`.
/// Supports SGD, Adam, AdamW, RMSprop and Adagrad.
/// @throws ConfigError for an unsupported optimizer or scheduler type, StateMismatchError when
///         the optimizer holds a parameter that `model` does not.
Node training_state_node(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                         const torch::optim::LRScheduler* scheduler, const TrainingState& state);

/// Rebuilds the optimizer (bound to `model`'s parameters by name) and scheduler from a
/// checkpoint's `training_state`, restores the RNG states, and returns the counters.
/// @throws StateMismatchError when a saved parameter is missing from the model, a shape
///         differs, or the model has trainable parameters the optimizer did not know;
///         FormatError when the tree is malformed.
Resumed resume_training(const Node& training_state, torch::nn::Module& model,
                        const std::string& file, const ReadOptions& options = {});

/// The key under which checkpoints keep their training state (next to the model's keys, which
/// Python ZANJ's `MyNN.read` ignores).
inline constexpr const char* kTrainingStateKey = "training_state";

/// A model's tree with its training state (`training_state`) beside it: what every checkpoint
/// save writes (save_checkpoint, the manager, background and distributed saves).
template <class Model>
Node checkpoint_node(const Model& model, const torch::optim::Optimizer& optimizer,
                     const torch::optim::LRScheduler* scheduler, const TrainingState& state) {
  Node root = model.to_node();
  root[kTrainingStateKey] = training_state_node(model, optimizer, scheduler, state);
  return root;
}

/// Saves a model with its optimizer, scheduler (may be null), RNG states and counters in one
/// file, crash-safely.
template <class Model>
void save_checkpoint(const std::string& path, const Model& model,
                     const torch::optim::Optimizer& optimizer,
                     const torch::optim::LRScheduler* scheduler, const TrainingState& state,
                     const SaveOptions& options = {});

/// A model read back with everything needed to continue training it.
template <class Model>
struct Run {
  std::shared_ptr<Model> model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<torch::optim::LRScheduler> scheduler;
  TrainingState state;
};

/// Reads a checkpoint in one pass: `Model::read` for the model, then resume_training() for the
/// rest (this restores torch's RNG states as a side effect).
template <class Model>
Run<Model> resume(const std::string& path, const ReadOptions& options = {});

}  // namespace zanj

CONFIGURED_MODEL_API_END

// ---- template definitions ----
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"

namespace zanj {

template <class Model>
void save_checkpoint(const std::string& path, const Model& model,
                     const torch::optim::Optimizer& optimizer,
                     const torch::optim::LRScheduler* scheduler, const TrainingState& state,
                     const SaveOptions& options) {
  save(checkpoint_node(model, optimizer, scheduler, state), path, options);
}

template <class Model>
Run<Model> resume(const std::string& path, const ReadOptions& options) {
  const Node root = read(path, options);
  Run<Model> run;
  run.model = Model::from_node(root, path, options);
  const Node* training = root.find(kTrainingStateKey);
  if (!training) {
    throw FormatError(path + ": " + kTrainingStateKey +
                      ": missing (a model file, not a training checkpoint)");
  }
  Resumed r = resume_training(*training, *run.model, path, options);
  run.optimizer = std::move(r.optimizer);
  run.scheduler = std::move(r.scheduler);
  run.state = std::move(r.state);
  return run;
}

}  // namespace zanj
