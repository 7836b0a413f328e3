// SPDX-License-Identifier: MIT
// The one shape rule of every reader and writer (npy, safetensors, torch.save views, the ZANJ
// tree, the lazy index): each dimension is >= 0 and the product of the non-zero dimensions times
// the item size fits in an int64. numpy and torch refuse the rest, even when another dimension
// is 0, so a shape one reader takes no other reader, writer or consumer refuses.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace zanj::detail {

/// The bytes a tensor of `shape` and `item_size` holds (0 when a dimension is 0), or nothing
/// when the shape breaks the rule.
template <typename Shape>
std::optional<std::uint64_t> shape_bytes(const Shape& shape, std::uint64_t item_size) {
  std::int64_t bound = static_cast<std::int64_t>(item_size);
  bool empty = false;
  for (const auto dim : shape) {
    const auto d = static_cast<std::int64_t>(dim);
    if (d < 0 || __builtin_mul_overflow(bound, std::max<std::int64_t>(d, 1), &bound)) {
      return std::nullopt;
    }
    empty = empty || d == 0;
  }
  return empty ? 0 : static_cast<std::uint64_t>(bound);
}

}  // namespace zanj::detail
