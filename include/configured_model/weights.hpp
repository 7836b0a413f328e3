// SPDX-License-Identifier: MIT
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"
#include "configured_model/state_dict.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// The weight files configured_model reads and writes.
enum class WeightsFormat {
  kZanj,         ///< `.zanj` (ours and Python ZANJ's)
  kTorch,        ///< Python `torch.save` zip (`.pt`, `.pth`, `.bin`)
  kLibtorch,     ///< libtorch's `torch::save` archive
  kSafetensors,  ///< `.safetensors`, or a sharded `*.safetensors.index.json`
};

/// "zanj", "pt", "libtorch-pt", "safetensors" (the CLI's --to names).
std::string format_name(WeightsFormat format);
/// The inverse of format_name(). @throws UsageError for another name.
WeightsFormat parse_format_name(const std::string& name);

/// What a file is, from its first bytes and entry names (never from its name alone, except that
/// a `.index.json` is a safetensors index).
/// @throws IoError if it cannot be read; FormatError if it is none of the formats.
WeightsFormat detect_format(const std::string& path);

/// The format a path's extension asks for when writing: `.zanj`; `.pt`, `.pth`, `.bin`
/// (Python torch.save); `.safetensors`. libtorch archives share `.pt`: ask for them by name.
/// @throws UsageError for another extension.
WeightsFormat format_for_extension(const std::string& path);

/// Reads any of the formats as a tree: a `.zanj` as zanj::read() does, a Python `.pt` as
/// read_torch(), a libtorch archive or safetensors file as a flat dict of tensors.
Node read_weights(const std::string& path, const ReadOptions& options = {});

/// Writes a tree in `format`. A libtorch archive or safetensors file holds named tensors only:
/// the tree is flattened with dotted keys ("model.fc1.weight") and must hold nothing else.
/// @throws FormatError if the tree cannot be written in that format; IoError.
void save_weights(const Node& root, const std::string& path, WeightsFormat format,
                  const SaveOptions& options = {});

/// A tree's tensors under dotted paths, in order ("model.fc1.weight"); list items are numbered.
/// @throws FormatError naming the path of anything that is not a tensor, unless `skip_values`.
StateDict flatten_tensors(const Node& root, bool skip_values = false);

/// Where a tree keeps its state dict: `subtree` ('/'-separated) if given; else the root if it
/// holds only tensors, else the first of "state_dict", "model_state_dict", "model" that does.
/// @throws FormatError naming `file` and the root's keys when there is none.
const Node& find_state_dict(const Node& root, const std::string& subtree = "",
                            const std::string& file = "");

/// How stored keys are renamed before they meet a module's names. Rules apply in the order
/// they were added; a rule that does not match leaves the key as it is.
///
/// \code
///   zanj::KeyMap keys;
///   keys.strip_prefix("module.")                      // saved from DataParallel
///       .rename(R"(^layers\.(\d+)\.)", "net.$1.");    // Python numbering -> C++ Sequential
///   zanj::load_weights(*model, "pytorch_model.bin", {keys});
/// \endcode
class KeyMap {
 public:
  /// Removes `prefix` from keys that start with it.
  KeyMap& strip_prefix(std::string prefix);
  /// Puts `prefix` in front of every key.
  KeyMap& add_prefix(std::string prefix);
  /// std::regex_replace(key, pattern, replacement) (ECMAScript syntax; `$1` for groups).
  /// @throws UsageError for an invalid pattern.
  KeyMap& rename(const std::string& pattern, std::string replacement);
  /// Any function; returning std::nullopt drops the key.
  KeyMap& map(std::function<std::optional<std::string>(const std::string&)> f);

  /// The key after every rule (nullopt: dropped).
  std::optional<std::string> apply(const std::string& key) const;
  bool empty() const { return rules_.empty(); }

 private:
  std::vector<std::function<std::optional<std::string>(const std::string&)>> rules_;
};

struct LoadWeightsOptions {
  KeyMap keys;
  /// Where the state dict sits in the file's tree, as a '/'-separated path ("model",
  /// "state_dict"). Empty: the root if it holds only tensors, else the first of "state_dict",
  /// "model_state_dict", "model" that does.
  std::string subtree;
  /// strict (missing/unexpected keys), dtype (stored floating tensors and the module's are cast
  /// to it), device, mmap, check_crc, limits: as for model reads.
  ReadOptions read;
};

/// Loads a state dict from a `.zanj`, Python `.pt`, libtorch `.pt`, `.safetensors` or sharded
/// safetensors index into any module: keys renamed by `options.keys`, then checked as
/// load_state_dict() does (one StateMismatchError listing missing and unexpected keys, shape and
/// dtype mismatches; nothing is copied unless everything fits).
/// @throws StateMismatchError; FormatError if no state dict is found or two keys collide after
///         renaming; IoError; UnsafeContentError.
void load_weights(torch::nn::Module& module, const std::string& path,
                  const LoadWeightsOptions& options = {});

}  // namespace zanj

CONFIGURED_MODEL_API_END
