// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/file.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"
#include "configured_model/tree.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Named tensors in a fixed order.
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

/// The module's parameters and buffers with PyTorch's dotted names, in PyTorch's `state_dict()`
/// order (per module in pre-order: its parameters, its buffers, then its children). The tensors
/// alias the module's own storage.
StateDict state_dict(const torch::nn::Module& module);

/// Copies `stored` (a dict Node of tensors, as read from a file) into the module's parameters
/// and buffers. Every problem is collected first and reported in one StateMismatchError:
/// missing and unexpected keys (refused when `options.strict`, else warned), shape mismatches
/// and dtype mismatches (always refused). `file` names the source in messages.
void load_state_dict(torch::nn::Module& module, const Node& stored, const std::string& file,
                     const ReadOptions& options = {});

/// A 16-hex-digit digest of named tensors (names, dtypes, shapes and bytes, in the given order).
/// Equal digests mean bit-identical tensors (up to CRC collisions); for comparing runs.
std::string state_digest(const StateDict& tensors);

namespace detail {

/// The parts of a stored ConfiguredModel (section 8.1 of docs/FORMAT.md).
struct ModelParts {
  nlohmann::ordered_json config;  ///< `zanj_model_config` without its `__muutils_format__` tag
  std::string config_tag;         ///< that tag, or empty
  int config_version = 0;         ///< `meta/config_version`, or 0 when none is recorded
  nlohmann::json nested_records;  ///< `meta/nested_training_records`, or null
  nlohmann::ordered_json training_records;
  const Node* state_dict = nullptr;
};

/// Checks the class tag (exact match, unlike Python's prefix match) and picks out the parts.
/// @throws StateMismatchError naming both classes when the tag differs; FormatError when a part
///         is missing or of the wrong kind.
ModelParts model_parts(const Node& root, const std::string& class_name, const std::string& file);

/// The class check and config of a stored model from `__zanj__.json` alone, before any tensor
/// is read (`state_dict` stays null).
ModelParts model_header(const nlohmann::ordered_json& tree, const std::string& class_name,
                        const std::string& file);

/// A model file opened for reading: its archive, its JSON, and the class check and config.
struct OpenedModel {
  ArchiveReader archive;
  Document document;
  ModelParts header;
};

/// Opens `path`, reads its JSON and checks that it holds a `class_name` (model_header()).
/// @throws IoError, FormatError, VersionError, StateMismatchError.
OpenedModel open_model(const std::string& path, const std::string& class_name,
                       const ReadOptions& options);

/// @throws UsageError when `options.device` is a CUDA device this process does not have.
void check_device(const ReadOptions& options, const std::string& file);

/// Sends each stored `state_dict/<name>` tensor straight into the module's own tensor.
TensorDestination state_dict_destination(const torch::nn::Module& module);

/// load_state_dict(); with `adopt`, the module's tensors take the stored tensors' storage
/// (set_data) instead of copying it, for trees read for this module alone (and mappings).
/// With `fresh` (a module just built from its config), a floating tensor stored in another
/// floating dtype turns the module's tensor into that dtype (a model saved after
/// `->to(torch::kFloat64)` or with mixed dtypes reads back as saved); otherwise a dtype that
/// differs is refused.
void load_state_dict(torch::nn::Module& module, const Node& stored, const std::string& file,
                     const ReadOptions& options, bool adopt, bool fresh = false);

/// Something with its own training records: every ConfiguredModel, found among a model's
/// submodules when it is nested in another.
class HasTrainingRecords {
 public:
  virtual ~HasTrainingRecords() = default;
  virtual nlohmann::json& records() = 0;
  virtual const nlohmann::json& records() const = 0;
};

/// The non-null records of `module`'s submodules (at any depth) that have their own, by module
/// path; null when there are none.
nlohmann::json nested_records(const torch::nn::Module& module);

/// Gives each submodule named in `nested` (what nested_records() returned) its records back;
/// a path that names no such submodule is logged as a warning naming `file`.
void restore_nested_records(torch::nn::Module& module, const nlohmann::json& nested,
                            const std::string& file);

/// The tree Python's `ConfiguredModel.serialize()` produces for a model. `nested_records` go
/// into `meta/nested_training_records` (Python ignores them).
Node model_node(const torch::nn::Module& module, const std::string& class_name,
                const std::string& cpp_type, nlohmann::ordered_json config,
                const std::string& config_tag, const nlohmann::json& training_records,
                int config_version = 0, const nlohmann::json& nested_records = nullptr);

/// Converts floating-point parameters and buffers to `dtype` (integer buffers stay, as in
/// PyTorch's `Module.to(dtype)`).
void convert_floating(torch::nn::Module& module, c10::ScalarType dtype);

/// Demangled type name without namespaces or template arguments.
std::string short_type_name(const std::string& demangled);

}  // namespace detail
}  // namespace zanj

CONFIGURED_MODEL_API_END
