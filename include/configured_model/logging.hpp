// SPDX-License-Identifier: MIT
#pragma once

#include <spdlog/logger.h>

#include <memory>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// The library's logger, named "configured_model". Created on first use (registered with spdlog
/// if no logger of that name exists). Library code never touches spdlog's default logger.
/// Levels: `info` one line per save/read, `debug` one line per entry, `warn` for version
/// differences and recoverable anomalies in files.
std::shared_ptr<spdlog::logger> logger();

/// Replaces the library's logger (e.g. to send warnings to a file or silence them).
/// Passing nullptr restores the default. Thread-safe.
void set_logger(std::shared_ptr<spdlog::logger> logger);

}  // namespace zanj

CONFIGURED_MODEL_API_END
