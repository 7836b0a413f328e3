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

#include "configured_model/data_position.hpp"
#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/optimizer_codec.hpp"
#include "configured_model/options.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Where a training run is. Saved with every checkpoint and handed back by resume().
struct TrainingState {
  std::int64_t step = 0;          ///< optimizer steps taken
  std::int64_t epoch = 0;         ///< epochs completed
  std::int64_t samples_seen = 0;  ///< training samples consumed
  nlohmann::json user;            ///< anything else the run wants back (any JSON)
  /// Where the run is in its data (e.g. a ResumableSampler's position()), saved with every
  /// checkpoint; null: none is saved.
  std::shared_ptr<DataPosition> data;
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

/// What resume_training() rebuilds besides the model; TrainingRun adds the model.
struct Resumed {
  /// Same type, param groups, options and per-parameter state as saved, bound by parameter name
  /// to the model passed to resume().
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  /// Null when none was saved. Refers to *optimizer.
  std::unique_ptr<torch::optim::LRScheduler> scheduler;
  /// The counters and user JSON. When the checkpoint holds a data position, `state.data` is a
  /// placeholder that refuses to be saved until restore() binds a sampler to it.
  TrainingState state;

  /// Puts `data` (say the sampler of a DataLoader built after resuming) where the checkpoint's
  /// data was, sets torch's RNG states back to the checkpoint's (undoing what building the
  /// sampler drew from them) and makes `state.data` track it. Call it once, after building the
  /// sampler and before the first batch.
  /// @throws StateMismatchError when the checkpoint's position belongs to another kind of
  ///         sampler, FormatError when it is malformed.
  void restore(const std::shared_ptr<DataPosition>& data);
  template <class Sampler>
  void restore(const ResumableSampler<Sampler>& sampler) {
    restore(sampler.position());
  }
  /// Sets torch's RNG states back to the checkpoint's: for code that draws random numbers
  /// between resume() and the first step and must not shift the run.
  void restore_rng() const;

  /// What the checkpoint holds for these (null when nothing was saved), and its name.
  Node saved_data;
  Node saved_rng;
  std::string file;
};

/// A run read back from a checkpoint: the model and everything needed to continue training it.
template <class Model>
struct TrainingRun : Resumed {
  std::shared_ptr<Model> model;
};

/// The earlier name of TrainingRun.
template <class Model>
using Run = TrainingRun<Model>;

/// The training state as a tree (`training_state` in a checkpoint): optimizer type, param groups
/// with their options and parameter *names*, per-parameter state keyed by name, the scheduler,
/// the RNG states of torch's default CPU generator and every CUDA generator, `state` and its
/// data position. Any param-group layout: several groups with their own options, a subset of
/// the model's parameters (the rest are recorded as not optimized, with their requires_grad),
/// tied parameters (saved under their first name). Every optimizer with a codec: SGD, Adam,
/// AdamW, RMSprop, Adagrad, LBFGS and those registered with register_optimizer().
/// @throws ConfigError for an unsupported optimizer or scheduler type, StateMismatchError when
///         the optimizer holds a parameter that `model` does not.
Node training_state_node(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                         const torch::optim::LRScheduler* scheduler, const TrainingState& state);

/// Rebuilds the optimizer (bound to `model`'s parameters by name) and scheduler from a
/// checkpoint's `training_state`, restores the RNG states and the requires_grad flags of the
/// parameters the optimizer did not hold, and returns the counters.
/// @throws StateMismatchError when a saved parameter is missing from the model, a shape
///         differs, or the model has parameters the checkpoint does not account for;
///         FormatError when the tree is malformed.
Resumed resume_training(const Node& training_state, torch::nn::Module& model,
                        const std::string& file, const ReadOptions& options = {});

namespace detail {
/// resume_training() for a tree read for this resume alone: the optimizer's state takes the
/// tree's tensors where their dtype and device fit (no copy), so that a resume holds the model
/// and its optimizer state once.
Resumed resume_training_owned(const Node& training_state, torch::nn::Module& model,
                              const std::string& file, const ReadOptions& options);
}  // namespace detail

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

/// Reads a checkpoint in one pass: the model is built from its stored config and its weights are
/// read straight into it, the optimizer takes over the optimizer state as read (peak memory:
/// about the model plus its optimizer state); then as resume_training() (this restores torch's
/// RNG states as a side effect).
template <class Model>
TrainingRun<Model> resume(const std::string& path, const ReadOptions& options = {});

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
TrainingRun<Model> resume(const std::string& path, const ReadOptions& options) {
  // One pass: the weights are read straight into the model built from the stored config, the
  // optimizer state into the tree that the optimizer then takes over.
  Node root;
  std::shared_ptr<Model> model = Model::read(path, options, &root);
  const Node* training = root.find(kTrainingStateKey);
  if (!training) {
    throw FormatError(path + ": " + kTrainingStateKey +
                      ": missing (a model file, not a training checkpoint)");
  }
  TrainingRun<Model> run;
  static_cast<Resumed&>(run) = detail::resume_training_owned(*training, *model, path, options);
  run.model = std::move(model);
  return run;
}

}  // namespace zanj
