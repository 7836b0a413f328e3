// SPDX-License-Identifier: MIT
// How an optimizer type is saved in a checkpoint and rebuilt from it.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/node.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Saves and rebuilds one optimizer type. Every optimizer libtorch 1.13 ships is built in (SGD,
/// Adam, AdamW, RMSprop, Adagrad, LBFGS); register one for your own with register_optimizer().
/// A codec's functions may throw any std::exception on bad input: the caller turns it into a
/// FormatError naming the file and the entry.
struct OptimizerCodec {
  /// True for the optimizers this codec saves (typically a dynamic_cast).
  std::function<bool(const torch::optim::Optimizer&)> matches;
  /// A group's (or the defaults') options as JSON.
  std::function<nlohmann::json(const torch::optim::OptimizerOptions&)> save_options;
  /// The options back from what save_options() returned.
  std::function<std::unique_ptr<torch::optim::OptimizerOptions>(const nlohmann::json&)>
      load_options;
  /// One parameter's state as a tree (tensors are copied by the caller when it writes).
  std::function<Node(const torch::optim::OptimizerParamState&)> save_state;
  /// One parameter's state back, for `param` (tensors moved to its device; a parameter-shaped
  /// tensor whose shape differs from param's should throw StateMismatchError). The state's
  /// tensors are handed over: the optimizer may keep them without copying.
  std::function<std::unique_ptr<torch::optim::OptimizerParamState>(const Node& state,
                                                                   const at::Tensor& param)>
      load_state;
  /// The optimizer over `groups` with `defaults`.
  std::function<std::unique_ptr<torch::optim::Optimizer>(
      std::vector<torch::optim::OptimizerParamGroup> groups,
      const torch::optim::OptimizerOptions& defaults)>
      make;
};

/// Registers (or replaces) the codec for optimizer type `type`, the name written to files.
/// Thread-safe.
void register_optimizer(const std::string& type, OptimizerCodec codec);

/// The registered optimizer type names, sorted.
std::vector<std::string> optimizer_names();

}  // namespace zanj

CONFIGURED_MODEL_API_END
