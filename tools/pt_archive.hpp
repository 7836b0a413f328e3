// SPDX-License-Identifier: MIT
// State dicts <-> libtorch's torch::save archive format (what torch::save(module) writes).
#pragma once

#include <configured_model/state_dict.hpp>
#include <string>

namespace zanj_cli {

/// Reads every tensor of a libtorch archive (torch::save of a module or an OutputArchive),
/// naming nested archives with dots: "net.0.weight".
zanj::StateDict read_pt(const std::string& path);

/// Writes tensors as a libtorch archive that `torch::load(module, path)` loads into a module
/// with the same parameter and buffer names ("net.0.weight" becomes archive net/0/weight).
void write_pt(const zanj::StateDict& tensors, const std::string& path);

}  // namespace zanj_cli
