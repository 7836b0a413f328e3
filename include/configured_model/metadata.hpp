// SPDX-License-Identifier: MIT
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/options.hpp"
#include "configured_model/tree.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// The entry names of a `.zanj` archive.
inline constexpr const char* kTreeEntry = "__zanj__.json";
inline constexpr const char* kMetaEntry = "__zanj_meta__.json";

/// Describes this runtime: libtorch version and build, CUDA availability and devices, compiler,
/// operating system and CPU. Written as `sysinfo` in `__zanj_meta__.json`.
nlohmann::ordered_json sysinfo();

/// Builds `__zanj_meta__.json`: `zanj_cfg` (the save options, in Python's spelling), `sysinfo`,
/// `configured_model` (library and format versions, and `int_key_dicts` when the tree has
/// int-keyed dicts: their paths), `externals_info` (sorted by path length, as Python does) and
/// `timestamp`.
nlohmann::ordered_json make_metadata(const SaveOptions& options,
                                     const std::vector<ExternalEntry>& externals,
                                     const nlohmann::ordered_json& int_key_dicts = {});

/// Checks a file's metadata against this library: throws VersionError when its format version
/// is newer than kFormatVersion; warns (per `options.error_mode`) when it was written by another
/// library or libtorch version. Python ZANJ files carry no version and pass.
void check_metadata(const nlohmann::ordered_json& meta, const std::string& file,
                    const ReadOptions& options);

}  // namespace zanj

CONFIGURED_MODEL_API_END
