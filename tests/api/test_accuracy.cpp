// The library's output against the independent fp64 reference over awkward shapes and every
// dtype: f64 to 1e-9, f32 / f16 / bf16 to the tolerances of common/ta_api_helpers.h
// (rel_tolerance explains them). Also the library's own quadratic reference against ours.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <tuple>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::RefKind;
using tatest::Shape;

struct AccCase {
  Shape s;
  int P;
  int G;
  int normalize;
  double std_dev;  // input spread (keeps denominators of even P positive)
};

std::string case_name(const AccCase &c) {
  return c.s.name() + "_P" + std::to_string(c.P) + "_G" + std::to_string(c.G) + (c.normalize ? "_norm" : "");
}

void PrintTo(const AccCase &c, std::ostream *os) { *os << case_name(c); }

class Accuracy : public ::testing::TestWithParam<std::tuple<AccCase, ta_dtype>> {};

TEST_P(Accuracy, MatchesIndependentReference) {
  const auto [ac, dt] = GetParam();
  auto p = tatest::make_problem(ac.s, dt, 1000 + static_cast<uint64_t>(ac.s.Nq * 31 + ac.s.d), ac.std_dev);
  ta_config c = tatest::test_config(ac.P, ac.G);
  c.qk_normalize = ac.normalize;
  c.max_head_dim = 1 << 20;
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
  double min_den = 1e300;
  for (double d : ref.den) min_den = std::min(min_den, d);
  ASSERT_GT(min_den, 1e-3) << "test precondition: inputs must keep denominators positive";

  const auto r = tatest::run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << r.message << " reason " << tatest::rname(r.stats.fallback_reason);
  const double tol = tatest::rel_tolerance(dt, ref);
  const auto got = p.out.dense();
  EXPECT_TRUE(tatest::close_rel_l2(got, ref.out, tol));
  RecordProperty("rel_l2", std::to_string(tatest::rel_l2(got, ref.out)));
  RecordProperty("tolerance", std::to_string(tol));

  // The stats describe this call.
  int64_t R = 0;
  ASSERT_EQ(ta_feature_dim(ac.s.d / ac.G, ac.P, &R), TA_OK);
  EXPECT_EQ(r.stats.feature_dim, R);
  EXPECT_EQ(r.stats.sub_head_blocks, ac.G);
  EXPECT_EQ(r.stats.slice_dim, ac.s.d / ac.G);
  EXPECT_EQ(r.stats.slice_value_dim, ac.s.dv / ac.G);
  EXPECT_EQ(r.stats.denom_count, ac.s.B * ac.s.H * ac.G * ac.s.Nq);
}

TEST_P(Accuracy, LibraryQuadraticReferenceMatchesOurs) {
  const auto [ac, dt] = GetParam();
  auto p = tatest::make_problem(ac.s, dt, 2000 + static_cast<uint64_t>(ac.s.Nk), ac.std_dev);
  ta_config c = tatest::test_config(ac.P, ac.G);
  c.qk_normalize = ac.normalize;
  const ta_attention_args a = p.args();
  for (auto [kind, rk] : {std::pair{TA_REFERENCE_TAYLOR_QUADRATIC, RefKind::Taylor},
                          std::pair{TA_REFERENCE_EXACT_MODIFIED, RefKind::ExactModified},
                          std::pair{TA_REFERENCE_EXACT_ORIGINAL, RefKind::ExactOriginal}}) {
    SCOPED_TRACE("kind " + std::to_string(kind));
    p.out.fill_bytes(0xA5);
    ASSERT_EQ(ta_reference_attention(&a, &c, kind), TA_OK) << ta_last_error_message();
    EXPECT_TRUE(p.out.canaries_intact(0xA5));
    const auto ref = tatest::reference_of(p, c, rk);
    // fp64 inside: only the final rounding to the output dtype differs (<= u per element).
    EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, dt == TA_DTYPE_F64 ? 1e-12 : 2 * tatest::unit_roundoff(dt)));
  }
}

const AccCase kCases[] = {
    {{1, 1, 1, 1, 3, 3}, 3, 1, 0, 0.8},          // single query, single key
    {{1, 2, 1, 9, 4, 4}, 4, 2, 0, 0.5},          // Nq = 1
    {{1, 2, 17, 1, 8, 4}, 3, 2, 0, 0.8},         // Nk = 1 (output = v exactly)
    {{2, 3, 97, 64, 59, 17}, 2, 1, 0, 0.3},      // d = 59 prime, dv != d, cross, B > 1
    {{1, 2, 1025, 1025, 3, 5}, 3, 1, 0, 0.8},    // N = 1025, tiny d
    {{1, 1, 33, 40, 128, 128}, 3, 1, 0, 0.5},    // d = 128 full head, P = 3 (R = 8385)
    {{1, 2, 64, 48, 128, 64}, 4, 4, 0, 0.6},     // node defaults' shape: d = 128, G = 4, P = 4
    {{3, 1, 5, 200, 12, 6}, 4, 3, 1, 1.0},       // G = 3, qk_normalize, Nk >> Nq
    {{1, 2, 7, 9, 4, 3}, 1, 1, 0, 1.0},          // P = 1: plain average
    {{1, 1, 20, 30, 4, 4}, 5, 2, 1, 1.0},        // P = 5
    {{1, 1, 10, 12, 2, 3}, 16, 1, 0, 0.8},       // P = 16 (maximum)
    {{2, 2, 63, 63, 100, 100}, 2, 4, 1, 1.0},    // d = 100, G = 4 (slice 25), normalize
};

INSTANTIATE_TEST_SUITE_P(
    Api, Accuracy,
    ::testing::Combine(::testing::ValuesIn(kCases),
                       ::testing::Values(TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16)),
    [](const auto &info) {
      return case_name(std::get<0>(info.param)) + "_" + tatest::dtype_tag(std::get<1>(info.param));
    });

// Nk = 1: every weight is divided out, the output is v of the single key (up to rounding).
TEST(AccuracyExact, SingleKeyGivesItsValue_B2_H2_Nq5_Nk1_d6_dv4) {
  auto p = tatest::make_problem(Shape{2, 2, 5, 1, 6, 4}, TA_DTYPE_F64, 8, 0.5);
  const auto r = tatest::run_checked(p, tatest::test_config(3, 2));
  ASSERT_EQ(r.status, TA_OK) << r.message;
  const auto v = p.v.dense();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t e = 0; e < 4; ++e)
          EXPECT_NEAR(p.out.get({b, h, i, e}), v[static_cast<size_t>(((b * 2 + h) * 1 + 0) * 4 + e)], 1e-12);
}

// P = 1: T_1 = 1, so the output is the mean of v, whatever q and k are.
TEST(AccuracyExact, P1IsTheMeanOfV_B1_H3_Nq4_Nk13_d5_dv7) {
  auto p = tatest::make_problem(Shape{1, 3, 4, 13, 5, 7}, TA_DTYPE_F64, 9, 3.0);
  const auto r = tatest::run_checked(p, tatest::test_config(1, 1));
  ASSERT_EQ(r.status, TA_OK) << r.message;
  for (int64_t h = 0; h < 3; ++h)
    for (int64_t e = 0; e < 7; ++e) {
      double mean = 0;
      for (int64_t j = 0; j < 13; ++j) mean += p.v.get({0, h, j, e});
      mean /= 13.0;
      for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(p.out.get({0, h, i, e}), mean, 1e-13);
    }
}

// The node's defaults as they are (min_tokens 100, G 4, P 4, probe and quality check on).
TEST(AccuracyExact, NodeDefaults_B1_H2_Nq128_Nk128_d64_dv64_f32) {
  auto p = tatest::make_problem(Shape{1, 2, 128, 128, 64, 64}, TA_DTYPE_F32, 11, 0.7);
  ta_config c;
  ta_config_defaults(&c);
  const auto r = tatest::run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << r.message << " " << tatest::rname(r.stats.fallback_reason);
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, tatest::rel_tolerance(TA_DTYPE_F32, ref)));
  EXPECT_EQ(r.stats.feature_dim, 969);
  EXPECT_EQ(r.stats.slice_dim, 16);
  EXPECT_EQ(r.stats.probe_ran, 1);
  EXPECT_EQ(r.stats.probe_samples, 16);
  EXPECT_EQ(r.stats.quality_vs_original.samples, 16);
  EXPECT_EQ(r.stats.quality_truncation.samples, 16);
}

}  // namespace
