// SPDX-License-Identifier: MIT
// Which rank writes which part of the replicated tensors: a deterministic plan, computed alike
// on every rank from the same inputs.
#pragma once

#include <cstdint>
#include <vector>

namespace zanj::detail {

/// A replicated tensor as the plan sees it: `rows` slices along dim 0 of `row_bytes` each
/// (a 0-d tensor is one row).
struct PlanItem {
  std::int64_t rows = 0;
  std::uint64_t row_bytes = 0;
};

/// Rows [offset, offset + length) of item `item` are written by `rank`.
struct PlanPiece {
  std::size_t item = 0;
  int rank = 0;
  std::int64_t offset = 0;
  std::int64_t length = 0;
};

/// Lays the items' bytes end to end in order and cuts the line into `world_size` equal parts,
/// each cut rounded to the nearest row: every rank writes 1/N of the bytes, give or take a row.
/// Empty items get no piece.
std::vector<PlanPiece> plan_pieces(const std::vector<PlanItem>& items, int world_size);

}  // namespace zanj::detail
