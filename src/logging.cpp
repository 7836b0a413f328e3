// SPDX-License-Identifier: MIT
#include "configured_model/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>

namespace zanj {
namespace {

constexpr const char* kLoggerName = "configured_model";

std::mutex& logger_mutex() {
  static std::mutex m;
  return m;
}

std::shared_ptr<spdlog::logger>& current() {
  static std::shared_ptr<spdlog::logger> l;
  return l;
}

std::shared_ptr<spdlog::logger> make_default() {
  if (auto existing = spdlog::get(kLoggerName)) {
    return existing;
  }
  // NOTE: stderr, so that programs printing results to stdout stay parseable.
  auto l = std::make_shared<spdlog::logger>(
      kLoggerName, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  l->set_level(spdlog::level::warn);
  try {
    spdlog::register_logger(l);
  } catch (const spdlog::spdlog_ex&) {
    // Registered concurrently by someone else: use theirs.
    if (auto existing = spdlog::get(kLoggerName)) {
      return existing;
    }
  }
  return l;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger() {
  std::lock_guard<std::mutex> lock(logger_mutex());
  auto& l = current();
  if (!l) {
    l = make_default();
  }
  return l;
}

void set_logger(std::shared_ptr<spdlog::logger> new_logger) {
  std::lock_guard<std::mutex> lock(logger_mutex());
  current() = std::move(new_logger);
}

}  // namespace zanj
