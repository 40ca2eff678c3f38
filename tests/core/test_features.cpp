#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/combinatorics.h"
#include "core/features.h"
#include "core/reference.h"

namespace ta {
namespace {

// <w * phi(x), phi(y)> must equal T_P(x . y) (x, y already carry the scale): the
// identity the whole state form rests on.
void check_identity(int d, int P, int T, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n01(0.0, 1.0 / std::sqrt(static_cast<double>(d)));
  const FeatureLayout L = make_feature_layout(d, P);
  std::vector<double> xT(static_cast<size_t>(d * T)), yT(xT.size());
  for (auto& v : xT) v = n01(rng);
  for (auto& v : yT) v = n01(rng);
  std::vector<double> fx(static_cast<size_t>(L.R * T)), fy(fx.size());
  generate_features(L, xT.data(), T, T, fx.data());
  generate_features(L, yT.data(), T, T, fy.data());
  for (int t = 0; t < T; ++t) {
    double dot = 0, feat = 0;
    for (int c = 0; c < d; ++c) dot += xT[c * T + t] * yT[c * T + t];
    for (int64_t r = 0; r < L.R; ++r) feat += L.weight[r] * fx[r * T + t] * fy[r * T + t];
    EXPECT_NEAR(feat, taylor_exp(dot, P), 1e-12 * std::max(1.0, std::fabs(feat))) << "t=" << t;
  }
}

TEST(Features, KernelIdentity_d1_P6) { check_identity(1, 6, 5, 1); }
TEST(Features, KernelIdentity_d3_P4) { check_identity(3, 4, 7, 2); }
TEST(Features, KernelIdentity_d8_P5) { check_identity(8, 5, 3, 3); }
TEST(Features, KernelIdentity_d32_P4) { check_identity(32, 4, 4, 4); }
TEST(Features, KernelIdentity_d59_P3) { check_identity(59, 3, 9, 5); }
TEST(Features, KernelIdentity_d128_P3) { check_identity(128, 3, 2, 6); }

TEST(Features, DegreeOneIsTheVectorAndDegreeZeroIsOne) {
  const FeatureLayout L = make_feature_layout(4, 3);
  const std::vector<double> xT = {1, 2, 3, 4};  // one token, ld = 1
  std::vector<double> f(static_cast<size_t>(L.R));
  generate_features(L, xT.data(), 1, 1, f.data());
  EXPECT_EQ(f[0], 1.0);
  for (int c = 0; c < 4; ++c) EXPECT_EQ(f[1 + c], xT[c]);
  // Degree 2 in generation order: (0,0) (0,1) (1,1) (0,2) (1,2) (2,2) (0,3) ...
  const std::vector<double> deg2 = {1, 2, 4, 3, 6, 9, 4, 8, 12, 16};
  for (size_t i = 0; i < deg2.size(); ++i) EXPECT_EQ(f[5 + i], deg2[i]) << i;
}

TEST(TaylorExp, MatchesSeriesAndExpForLargeP) {
  EXPECT_DOUBLE_EQ(taylor_exp(0.7, 1), 1.0);
  EXPECT_DOUBLE_EQ(taylor_exp(0.7, 2), 1.7);
  EXPECT_NEAR(taylor_exp(-2.0, 4), 1 - 2 + 2 - 8.0 / 6, 1e-15);
  EXPECT_NEAR(taylor_exp(1.3, 20), std::exp(1.3), 1e-14);  // remainder 1.3^20/20! ~ 8e-17
}

}  // namespace
}  // namespace ta
