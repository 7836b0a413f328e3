// SPDX-License-Identifier: MIT
// Dict key types through `.zanj`: JSON keys are text, so the int-keyed dicts of a tree (an
// optimizer's `state` read from a torch.save file) are listed in `__zanj_meta__.json` by path.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "configured_model/node.hpp"

namespace zanj::detail {

/// The paths from the root (dict keys as strings, list indices as ints) of the dicts in `root`
/// marked Node::KeyType::kInt, as a JSON array of arrays, in tree order. Empty if none.
nlohmann::ordered_json int_key_dict_paths(const Node& root);

/// Marks the dicts at `paths` (as int_key_dict_paths writes them) kInt, in one walk of the
/// tree. @throws FormatError naming `file` and the path when a path is malformed, repeated, leads
/// nowhere, or to something other than a dict of decimal int64 keys.
void mark_int_key_dicts(Node& root, const nlohmann::ordered_json& paths, const std::string& file);

}  // namespace zanj::detail
