// SPDX-License-Identifier: MIT
#include "save_stages.hpp"

#include <atomic>

namespace zanj::detail {

namespace {
std::atomic<SaveStageHook> g_hook{nullptr};
}  // namespace

std::string_view save_stage_name(SaveStage stage) {
  switch (stage) {
    case SaveStage::kTemporaryCreated:
      return "temporary-created";
    case SaveStage::kDataWritten:
      return "data-written";
    case SaveStage::kTemporarySynced:
      return "temporary-synced";
    case SaveStage::kRenamed:
      return "renamed";
    case SaveStage::kDirectorySynced:
      return "directory-synced";
  }
  return "unknown";
}

void set_save_stage_hook(SaveStageHook hook) { g_hook.store(hook); }

void report_save_stage(SaveStage stage, const std::string& path) {
  if (const SaveStageHook hook = g_hook.load(std::memory_order_relaxed)) hook(stage, path);
}

}  // namespace zanj::detail
