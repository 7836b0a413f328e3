// SPDX-License-Identifier: MIT
#pragma once

#include <torch/nn/modules/container/any.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Builds a module from keyword arguments (a JSON object, e.g. `{"negative_slope": 0.1}`).
using ModuleFactory = std::function<torch::nn::AnyModule(const nlohmann::json& kwargs)>;

/// Creates the activation registered as `name`, spelled as PyTorch's `torch.nn` class
/// ("ReLU", "GELU", "LeakyReLU", ...), so configs stay interchangeable with Python.
/// @throws ConfigError for an unknown name (listing the known ones) or a bad keyword argument.
torch::nn::AnyModule make_activation(const std::string& name,
                                     const nlohmann::json& kwargs = nlohmann::json::object());

/// Creates the loss registered as `name` ("CrossEntropyLoss", "MSELoss", ...) with keyword
/// arguments such as `{"reduction": "sum"}`. Call it as `loss.forward(input, target)`.
/// @throws ConfigError for an unknown name or a bad keyword argument.
torch::nn::AnyModule make_loss(const std::string& name,
                               const nlohmann::json& kwargs = nlohmann::json::object());

/// Adds or replaces an activation factory. Thread-safe.
void register_activation(const std::string& name, ModuleFactory factory);
/// Adds or replaces a loss factory. Thread-safe.
void register_loss(const std::string& name, ModuleFactory factory);

/// Registered names, sorted.
std::vector<std::string> activation_names();
std::vector<std::string> loss_names();

}  // namespace zanj

CONFIGURED_MODEL_API_END
