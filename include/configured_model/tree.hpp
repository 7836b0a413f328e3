// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "configured_model/archive.hpp"
#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// An entry that a tree puts outside `__zanj__.json`.
struct ExternalEntry {
  std::string name;             ///< zip entry name, e.g. "state_dict/net.0.weight.npy"
  std::string item_type;        ///< "npy" or "jsonl"
  nlohmann::ordered_json info;  ///< its `externals_info` record (item_type, path, ...)
  std::string bytes;            ///< the entry's content (for "npy": its header only)
  at::Tensor data;              ///< for "npy": the tensor whose memory follows the header
  /// The entry's size in bytes.
  std::uint64_t size() const;
};

/// A tree turned into ZANJ's JSON plus the external entries it refers to by `$ref`.
struct SerializedTree {
  nlohmann::ordered_json json;
  std::vector<ExternalEntry> externals;  ///< in the order they were met
};

/// Turns a tree into ZANJ's JSON form (section 5 of docs/FORMAT.md): tagged inline arrays,
/// `zero_dim` scalars, external `.npy` tensors and `.jsonl` lists past the thresholds.
/// @throws FormatError if a tensor's dtype has no encoding.
SerializedTree serialize_tree(const Node& root, const SaveOptions& options = {});

/// Where an external tensor at a tree path (keys joined by '/', e.g. "state_dict/fc1.weight")
/// should be read to: a tensor of the stored shape and dtype whose memory the data goes
/// straight into, or an undefined tensor to let the reader allocate one.
using TensorDestination = std::function<at::Tensor(const std::string& path)>;

/// Turns ZANJ's JSON back into a tree, reading external entries from `archive`.
/// `externals_info` is `__zanj_meta__.json`'s record of them (may be null). With
/// `options.mmap`, tensors alias a mapping of the archive where they can (see ReadOptions);
/// otherwise external tensors are read straight into `destination`'s tensors when it names
/// fitting ones (the returned tree then holds those very tensors), or into new ones.
/// `at_path` is where `json` sits in the whole tree (for messages and externals_info look-ups).
/// @throws FormatError naming the archive and the entry or key on anything malformed.
Node deserialize_tree(const nlohmann::ordered_json& json, const ArchiveReader& archive,
                      const nlohmann::ordered_json& externals_info, const ReadOptions& options = {},
                      const TensorDestination& destination = {},
                      const std::vector<std::string>& at_path = {});

namespace detail {
std::string base64_encode(std::string_view bytes);
/// @throws FormatError on characters outside the alphabet or bad padding.
std::string base64_decode(std::string_view text);
}  // namespace detail

}  // namespace zanj

CONFIGURED_MODEL_API_END
