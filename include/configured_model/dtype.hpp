// SPDX-License-Identifier: MIT
#pragma once

#include <c10/core/ScalarType.h>

#include <optional>
#include <string>
#include <string_view>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// numpy's name for a torch dtype ("float32", "int64", "bool", ...); bfloat16 gives "bfloat16",
/// which numpy does not know (ZANJ stores such tensors with the "torch.bfloat16" spelling).
std::string numpy_dtype_name(c10::ScalarType dtype);

/// Python's `str(torch.dtype)` ("torch.float32", "torch.bfloat16", ...).
std::string torch_dtype_name(c10::ScalarType dtype);

/// Parses every dtype spelling Python ZANJ writes or accepts: "float32", "torch.float32",
/// "bool_", "longlong", "<class 'numpy.float32'>", "half"/"float"/"double" and friends.
/// Returns std::nullopt for names torch has no dtype for (e.g. "uint32", "object").
std::optional<c10::ScalarType> parse_dtype_name(std::string_view name);

}  // namespace zanj

CONFIGURED_MODEL_API_END
