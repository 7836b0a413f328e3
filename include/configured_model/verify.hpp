// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/options.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// What verify() found.
struct VerifyReport {
  bool ok = true;                     ///< no problem found
  std::vector<std::string> problems;  ///< one message per problem, naming the entry
  std::uint64_t entries = 0;          ///< zip entries checked
  std::uint64_t bytes = 0;            ///< uncompressed bytes read and CRC-checked
  std::uint64_t tensors = 0;          ///< tensors decoded
  /// What the format let verify check and what it could not (e.g. safetensors has no checksum:
  /// its structure and bounds are checked, flipped data bytes cannot be found).
  std::vector<std::string> notes;
};

/// Checks a `.zanj` file without trusting it: opens the zip, reads every entry (checking its
/// CRC-32 and size), parses both JSON entries, checks that every `externals_info` record names
/// an entry and every non-JSON entry is referenced, and decodes the whole tree with anomalies
/// treated as errors, which checks every `.npy` header against its JSON item. Never throws for
/// a bad file: problems are reported.
/// @throws IoError only if the file cannot be opened at all.
VerifyReport verify(const std::string& path, const ReadOptions& options = {});

}  // namespace zanj

CONFIGURED_MODEL_API_END
