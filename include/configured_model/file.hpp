// SPDX-License-Identifier: MIT
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>

#include "configured_model/archive.hpp"
#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"
#include "configured_model/tree.hpp"

CONFIGURED_MODEL_API_BEGIN

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

/// Saves the tree to a stream (a socket, a database blob, an object-store upload): the same
/// bytes as a file, built in memory first (zip needs to patch headers), then written at once.
/// @throws IoError if the stream fails.
void save(const Node& root, std::ostream& out, const SaveOptions& options = {});

/// The `.zanj` bytes of the tree, as save() would write them to a file.
std::string save_to_bytes(const Node& root, const SaveOptions& options = {});

/// Reads a `.zanj` archive held in memory (`name` names it in messages), with every check a
/// file read makes.
Node read_bytes(std::string bytes, const ReadOptions& options = {},
                const std::string& name = "<memory>");

/// Reads a `.zanj` archive from a stream to its end (at most
/// `options.archive_limits.max_entry_bytes` bytes), then as read_bytes().
Node read(std::istream& in, const ReadOptions& options = {});

/// Reads a `.zanj` archive written by this library or by Python ZANJ into a tree. Tensors are
/// CPU tensors of the dtype the JSON names.
/// @throws IoError if the file cannot be opened, FormatError if it is malformed, VersionError
///         if its format is newer than this library.
Node read(const std::string& path, const ReadOptions& options = {});

/// Reads the tree of an already opened archive (e.g. one held in memory).
Node read(const ArchiveReader& archive, const ReadOptions& options = {});

/// The JSON parts of an archive, read and checked before any tensor is: where model reads and
/// lazy reads start.
struct Document {
  nlohmann::ordered_json tree;            ///< `__zanj__.json`
  nlohmann::ordered_json metadata;        ///< `__zanj_meta__.json` (null if absent)
  nlohmann::ordered_json externals_info;  ///< its `externals_info` (null if absent)
};

/// Reads and checks `__zanj_meta__.json` (versions, externals present) and `__zanj__.json`.
/// @throws FormatError / VersionError as read() does.
Document read_document(const ArchiveReader& archive, const ReadOptions& options = {});

/// Reads the tree of an archive whose document is already read. External tensors go straight
/// into `destination`'s tensors where it names fitting ones (see deserialize_tree()).
Node read(const ArchiveReader& archive, const Document& document, const ReadOptions& options = {},
          const TensorDestination& destination = {});

/// Reads only `__zanj_meta__.json` (null if the archive has none).
nlohmann::ordered_json read_metadata(const std::string& path, const ReadOptions& options = {});

namespace detail {
/// Call inside a catch block: rethrows a zanj::Error as it is and anything else (torch,
/// nlohmann, allocation failures caused by a file) as a FormatError naming `file`.
[[noreturn]] void rethrow_as_format_error(const std::string& file);
/// A stream's bytes to its end, refusing more than `limits.max_entry_bytes`.
std::string read_stream(std::istream& in, const ArchiveLimits& limits);
}  // namespace detail

}  // namespace zanj

CONFIGURED_MODEL_API_END
