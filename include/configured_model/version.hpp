// SPDX-License-Identifier: MIT
#pragma once

#include "configured_model/export.hpp"

/// Library version (one source of truth; CMake's project() version must match).
#define CONFIGURED_MODEL_VERSION_MAJOR 0
#define CONFIGURED_MODEL_VERSION_MINOR 1
#define CONFIGURED_MODEL_VERSION_PATCH 0
#define CONFIGURED_MODEL_VERSION_STRING "0.1.0"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Version of the checkpoint layout this library writes, recorded in `__zanj_meta__.json` as
/// `configured_model.format_version`. Reading a file with a larger number throws VersionError.
/// Files without the key (Python ZANJ's) are read as version 1.
inline constexpr int kFormatVersion = 1;

/// The library version as a string, e.g. "0.1.0".
inline constexpr const char* kLibraryVersion = CONFIGURED_MODEL_VERSION_STRING;

}  // namespace zanj

CONFIGURED_MODEL_API_END
