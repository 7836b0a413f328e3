// SPDX-License-Identifier: MIT
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "configured_model/archive.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"

namespace zanj {

/// Saves any tree of JSON values and tensors as a `.zanj` archive at `path` (the name is used
/// as given; missing parent directories are created). The write is crash-safe: `path` is
/// replaced atomically once the new file is complete and synced.
///
/// \code
///   zanj::Node tree = zanj::Node::dict();
///   tree["embedding"] = torch::randn({1000, 64});
///   tree["vocab"] = nlohmann::json::array({"a", "b"});
///   zanj::save(tree, "embedding.zanj");
/// \endcode
/// @throws IoError if the file cannot be written, FormatError if a value cannot be encoded.
void save(const Node& root, const std::string& path, const SaveOptions& options = {});

/// Reads a `.zanj` archive written by this library or by Python ZANJ into a tree. Tensors are
/// CPU tensors of the dtype the JSON names.
/// @throws IoError if the file cannot be opened, FormatError if it is malformed, VersionError
///         if its format is newer than this library.
Node read(const std::string& path, const ReadOptions& options = {});

/// Reads the tree of an already opened archive (e.g. one held in memory).
Node read(const ArchiveReader& archive, const ReadOptions& options = {});

/// Reads only `__zanj_meta__.json` (null if the archive has none).
nlohmann::ordered_json read_metadata(const std::string& path, const ReadOptions& options = {});

}  // namespace zanj
