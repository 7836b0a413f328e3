// SPDX-License-Identifier: MIT
// The distributed save plan: which rank writes which rows of replicated tensors.
#include "distributed/save_plan.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "configured_model/distributed.hpp"
#include "configured_model/errors.hpp"

namespace {

TEST(SavePlan, SpreadsReplicatedBytesEvenlyGiveOrTakeARow) {
  std::vector<zanj::detail::PlanItem> items = {{1000, 400}, {1, 8},       {64, 4},
                                               {0, 4},      {4096, 4096}, {10, 40}};
  std::uint64_t total = 0, widest = 0;
  for (const auto& it : items)
    total += static_cast<std::uint64_t>(it.rows) * it.row_bytes,
        widest = std::max(widest, it.row_bytes);
  for (int world : {1, 2, 3, 4, 7}) {
    const auto plan = zanj::detail::plan_pieces(items, world);
    std::vector<std::uint64_t> per_rank(static_cast<std::size_t>(world), 0);
    std::vector<std::int64_t> covered(items.size(), 0);
    for (const auto& p : plan) {
      ASSERT_GE(p.rank, 0);
      ASSERT_LT(p.rank, world);
      EXPECT_EQ(p.offset, covered[p.item]) << "pieces of an item are in order and contiguous";
      covered[p.item] += p.length;
      per_rank[static_cast<std::size_t>(p.rank)] +=
          static_cast<std::uint64_t>(p.length) * items[p.item].row_bytes;
    }
    for (std::size_t i = 0; i < items.size(); ++i) EXPECT_EQ(covered[i], items[i].rows);
    for (auto b : per_rank)
      EXPECT_LE(b, total / static_cast<std::uint64_t>(world) + widest) << world;
    const auto again = zanj::detail::plan_pieces(items, world);
    ASSERT_EQ(again.size(), plan.size());
    for (std::size_t i = 0; i < plan.size(); ++i) {
      EXPECT_TRUE(again[i].item == plan[i].item && again[i].rank == plan[i].rank &&
                  again[i].offset == plan[i].offset && again[i].length == plan[i].length)
          << "deterministic";
    }
  }
}

TEST(SavePlan, EvenSplitIsTorchChunk) {
  using Split = std::pair<std::int64_t, std::int64_t>;
  EXPECT_EQ(zanj::even_split(37, 0, 4), Split(0, 10));
  EXPECT_EQ(zanj::even_split(37, 3, 4), Split(30, 7));
  EXPECT_EQ(zanj::even_split(2, 2, 3), Split(2, 0));
  EXPECT_THROW(zanj::even_split(5, 3, 3), zanj::UsageError);
}

}  // namespace
