// SPDX-License-Identifier: MIT
// The table of optimizer codecs (built in and registered), looked up by optimizer or by name.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "configured_model/optimizer_codec.hpp"

namespace zanj::detail {

/// The codec and type name for `optimizer`.
/// @throws ConfigError naming the supported types when none matches.
std::pair<std::string, OptimizerCodec> optimizer_codec_for(
    const torch::optim::Optimizer& optimizer);

/// The codec registered under `type`, if any.
std::optional<OptimizerCodec> optimizer_codec_named(const std::string& type);

/// "a, b, c": the registered type names, for messages.
std::string known_optimizers();

}  // namespace zanj::detail
