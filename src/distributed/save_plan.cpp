// SPDX-License-Identifier: MIT
#include "save_plan.hpp"

#include <algorithm>

namespace zanj::detail {

std::vector<PlanPiece> plan_pieces(const std::vector<PlanItem>& items, int world_size) {
  const int n = std::max(world_size, 1);
  long double total = 0;
  for (const auto& it : items) total += static_cast<long double>(it.rows) * it.row_bytes;
  const long double quota = total / n;

  std::vector<PlanPiece> pieces;
  int rank = 0;
  long double written = 0;  // bytes assigned so far, over all ranks
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    std::int64_t offset = 0;
    while (offset < it.rows) {
      const std::int64_t left = it.rows - offset;
      std::int64_t take = left;
      if (rank < n - 1 && it.row_bytes > 0) {
        const long double room = quota * (rank + 1) - written;
        const auto fit = static_cast<std::int64_t>(room / it.row_bytes + 0.5L);  // nearest row
        take = std::clamp<std::int64_t>(fit, 0, left);
      }
      if (take > 0) {
        pieces.push_back({i, rank, offset, take});
        offset += take;
        written += static_cast<long double>(take) * it.row_bytes;
      }
      if (offset < it.rows) ++rank;  // this rank's part is full
    }
  }
  return pieces;
}

}  // namespace zanj::detail
