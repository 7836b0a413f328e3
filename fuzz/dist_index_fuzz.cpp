// SPDX-License-Identifier: MIT
// libFuzzer target: the index of a distributed checkpoint (checkpoint.json) is parsed and
// checked (fields, file names, pieces tiling each tensor), then its tree is rebuilt with a
// tensor per placeholder. Only zanj::Error may come out; no input may crash, hang or leak.
#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "configured_model/errors.hpp"
#include "distributed/checkpoint_index.hpp"
#include "distributed/tree_layout.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto index = zanj::detail::parse_index(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/checkpoint.json");
    std::vector<at::Tensor> tensors(index.tensors.size(), at::zeros({1}));
    (void)zanj::detail::join_tree(index.tree, tensors, index.path);
  } catch (const zanj::Error&) {
  }
  return 0;
}
