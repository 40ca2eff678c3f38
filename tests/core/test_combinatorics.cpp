#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "core/combinatorics.h"

namespace ta {
namespace {

TEST(Binomial, SmallValuesMatchPascal) {
  for (int64_t n = 0; n < 30; ++n) {
    for (int64_t k = 0; k <= n; ++k) {
      const int64_t expected = (k == 0 || k == n) ? 1 : *binomial(n - 1, k - 1) + *binomial(n - 1, k);
      EXPECT_EQ(*binomial(n, k), expected) << "C(" << n << "," << k << ")";
    }
  }
}

TEST(Binomial, OverflowIsReportedNotWrapped) {
  EXPECT_TRUE(binomial(66, 33).has_value());   // 7.2e18 fits
  EXPECT_FALSE(binomial(68, 34).has_value());  // 2.8e19 does not
  EXPECT_FALSE(feature_dim(1000000, 16).has_value());
}

TEST(FeatureDim, MatchesMathTable) {
  // ../shared/MATH.md section 2.
  const std::map<std::pair<int, int>, int64_t> table = {
      {{16, 2}, 17},    {{16, 3}, 153},    {{16, 4}, 969},     {{16, 5}, 4845},     {{32, 2}, 33},
      {{32, 3}, 561},   {{32, 4}, 6545},   {{32, 5}, 58905},   {{64, 2}, 65},       {{64, 3}, 2145},
      {{64, 4}, 47905}, {{64, 5}, 814385}, {{128, 2}, 129},    {{128, 3}, 8385},    {{128, 4}, 366145},
      {{128, 5}, 12082785}};
  for (const auto& [key, R] : table) {
    EXPECT_EQ(*feature_dim(key.first, key.second), R) << "d=" << key.first << " P=" << key.second;
  }
}

// Enumerates the sorted multisets of one degree in generation order by brute force,
// from the documented rule: group by last index j ascending; inside a group, the
// degree-(p-1) prefix order.
std::vector<std::vector<int>> enumerate(int d, int p) {
  if (p == 0) return {{}};
  const auto prev = enumerate(d, p - 1);
  std::vector<std::vector<int>> out;
  for (int j = 0; j < d; ++j) {
    for (const auto& m : prev) {
      if (!m.empty() && m.back() > j) continue;
      auto n = m;
      n.push_back(j);
      out.push_back(n);
    }
  }
  return out;
}

class LayoutTest : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(LayoutTest, CountsOffsetsAndWeights) {
  const auto [d, P] = GetParam();
  const FeatureLayout L = make_feature_layout(d, P);
  ASSERT_EQ(L.R, *feature_dim(d, P));
  for (int p = 0; p < P; ++p) {
    const auto monomials = enumerate(d, p);
    ASSERT_EQ(L.degree_offset[p + 1] - L.degree_offset[p], static_cast<int64_t>(monomials.size())) << "p=" << p;
    // Multiplicities p!/prod(c_u!) = p! * weight sum to d^p (the multinomial theorem).
    double fact = 1;
    for (int i = 2; i <= p; ++i) fact *= i;
    double mult_sum = 0;
    for (size_t r = 0; r < monomials.size(); ++r) {
      std::map<int, int> counts;
      for (int i : monomials[r]) counts[i]++;
      double w = 1;
      for (auto [idx, c] : counts) {
        for (int i = 2; i <= c; ++i) w /= i;
      }
      EXPECT_DOUBLE_EQ(L.weight[L.degree_offset[p] + r], w) << "p=" << p << " r=" << r;
      mult_sum += fact * w;
    }
    EXPECT_NEAR(mult_sum, std::pow(d, p), 1e-9 * std::pow(d, p));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LayoutTest,
                         ::testing::Values(std::pair{1, 1}, std::pair{1, 5}, std::pair{3, 4}, std::pair{5, 3},
                                           std::pair{7, 5}, std::pair{16, 4}),
                         [](const auto& info) {
                           return "d" + std::to_string(info.param.first) + "_P" + std::to_string(info.param.second);
                         });

}  // namespace
}  // namespace ta
