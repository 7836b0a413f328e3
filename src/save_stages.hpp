// SPDX-License-Identifier: MIT
// The stages every crash-safe write goes through (local files written through the storage
// files), reported to a hook so that crash tests can stop a process at each stage in turn
// instead of killing it at random times. Private: tests reach it through the internal target.
#pragma once

#include <string>
#include <string_view>

namespace zanj::detail {

enum class SaveStage {
  kTemporaryCreated,  ///< the hidden, locked temporary exists beside the final path
  kDataWritten,       ///< every byte is in the temporary, nothing synced yet
  kTemporarySynced,   ///< fsync of the temporary returned
  kRenamed,           ///< the temporary is the file at the final path
  kDirectorySynced,   ///< the directory entry is durable: the write is complete
};

/// "temporary-created", "data-written", "temporary-synced", "renamed", "directory-synced".
std::string_view save_stage_name(SaveStage stage);

/// Called with the stage and the final path of the file being written, on the writing thread.
/// A test hook: one per process, set before any save starts (not synchronised with saves).
using SaveStageHook = void (*)(SaveStage stage, const std::string& path);
void set_save_stage_hook(SaveStageHook hook);

/// What the writers call at each stage; does nothing unless a hook is set.
void report_save_stage(SaveStage stage, const std::string& path);

}  // namespace zanj::detail
