#include <gtest/gtest.h>

#include <set>

#include "core/sampling.h"

namespace ta {
namespace {

TEST(SampleRows, DistinctSortedInRangeAndSeeded) {
  const auto a = sample_rows(1000, 16, 42);
  const auto b = sample_rows(1000, 16, 42);
  const auto c = sample_rows(1000, 16, 43);
  ASSERT_EQ(a.size(), 16u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 16u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_GE(a[i], 0);
    EXPECT_LT(a[i], 1000);
    if (i > 0) EXPECT_LT(a[i - 1], a[i]);
  }
}

TEST(SampleRows, AllRowsWhenAskingForMoreAndNoneForZero) {
  EXPECT_EQ(sample_rows(5, 16, 0), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(sample_rows(5, 0, 0).empty());
  EXPECT_TRUE(sample_rows(0, 3, 0).empty());
}

TEST(SampleRows, HugeRangeNeedsNoHugeMemory) {
  const auto rows = sample_rows(int64_t{1} << 60, 8, 7);
  EXPECT_EQ(rows.size(), 8u);
}

}  // namespace
}  // namespace ta
