// Each parameter's effect: P, G, qk_normalize, scale_mul, scale change the function (and
// match the reference); block sizes, thread counts and precision flags do not change the
// f64 result; eps, fallback_on_negative and early_probe act on denominators as documented.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::make_problem;
using tatest::Problem;
using tatest::RefKind;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::test_config;

const Shape kS{2, 2, 13, 17, 12, 6};  // B2_H2_Nq13_Nk17_d12_dv6

// Runs, checks against the reference (f64: 1e-9), returns the output.
std::vector<double> run_and_match(Problem &p, const ta_config &c) {
  const auto r = run_checked(p, c);
  EXPECT_EQ(r.status, TA_OK) << r.message << " " << rname(r.stats.fallback_reason);
  const auto out = p.out.dense();
  EXPECT_TRUE(tatest::close_rel_l2(out, tatest::reference_of(p, c, RefKind::Taylor).out, 1e-9));
  return out;
}

void expect_differ(const std::vector<double> &a, const std::vector<double> &b, const std::string &what) {
  EXPECT_GT(tatest::rel_l2(a, b), 1e-4) << what << " did not change the output";
}

TEST(Params, PChangesOutput_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F64, 61, 0.7);
  std::vector<std::vector<double>> outs;
  for (int P = 1; P <= 6; ++P) {
    SCOPED_TRACE("P=" + std::to_string(P));
    outs.push_back(run_and_match(p, test_config(P, 2)));
  }
  for (size_t i = 1; i < outs.size(); ++i) expect_differ(outs[i - 1], outs[i], "P " + std::to_string(i) + "->" + std::to_string(i + 1));
}

TEST(Params, SubHeadBlocksChangeOutput_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F64, 62);
  std::vector<std::vector<double>> outs;
  for (int G : {1, 2, 3, 6}) {
    SCOPED_TRACE("G=" + std::to_string(G));
    outs.push_back(run_and_match(p, test_config(3, G)));
  }
  for (size_t i = 1; i < outs.size(); ++i) expect_differ(outs[0], outs[i], "G");
}

TEST(Params, QkNormalize_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F64, 63, 2.0);
  ta_config c = test_config(3, 3);
  const auto plain = run_and_match(p, c);
  c.qk_normalize = 1;
  const auto norm = run_and_match(p, c);
  expect_differ(plain, norm, "qk_normalize");
  // Normalised: scaling q and k by 10 changes (almost) nothing.
  for (auto *t : {&p.q, &p.k})
    t->for_each([&](const std::array<int64_t, 4> &, int64_t off) { t->set_at(off, 10.0 * t->get_at(off)); });
  const auto norm10 = run_and_match(p, c);
  EXPECT_LT(tatest::rel_l2(norm10, norm), 1e-5);
  c.qk_normalize = 0;
  expect_differ(run_and_match(p, c), plain, "scaling q, k without normalize");
}

TEST(Params, ScaleMul_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F64, 64);
  ta_config c = test_config(3, 2);
  std::vector<std::vector<double>> outs;
  for (double sm : {1.0, 0.5, 2.0, -0.7}) {
    SCOPED_TRACE("scale_mul=" + std::to_string(sm));
    c.scale_mul = sm;
    outs.push_back(run_and_match(p, c));
  }
  for (size_t i = 1; i < outs.size(); ++i) expect_differ(outs[0], outs[i], "scale_mul");
  // scale_mul = 0: every score is 0, every weight 1: the mean of v.
  c.scale_mul = 0.0;
  const auto avg = run_and_match(p, c);
  for (int64_t b = 0; b < kS.B; ++b)
    for (int64_t h = 0; h < kS.H; ++h)
      for (int64_t e = 0; e < kS.dv; ++e) {
        double m = 0;
        for (int64_t j = 0; j < kS.Nk; ++j) m += p.v.get({b, h, j, e});
        m /= static_cast<double>(kS.Nk);
        EXPECT_NEAR(avg[static_cast<size_t>(((b * kS.H + h) * kS.Nq + 5) * kS.dv + e)], m, 1e-13);
      }
}

TEST(Params, ExplicitScale_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F64, 65);
  ta_config c = test_config(3, 2);
  c.scale_mul = 0.8;
  const auto dflt = run_and_match(p, c);
  c.scale = 1.0 / std::sqrt(12.0);  // the default base, given explicitly: the same function
  const auto same = run_and_match(p, c);
  EXPECT_LT(tatest::rel_l2(same, dflt), 1e-12);
  c.scale = 0.37;  // slices use 0.37 * sqrt(2) * 0.8
  expect_differ(run_and_match(p, c), dflt, "explicit scale");
}

// Chunking and threading are implementation choices: the f64 result moves by rounding only.
TEST(Params, BlockSizesDoNotChangeResult_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F64, 66);
  ta_config c = test_config(4, 3);
  const auto base = run_and_match(p, c);
  for (int bq : {1, 3, 7, 13, 32, 1000})
    for (int bk : {1, 2, 16, 17, 1000}) {
      SCOPED_TRACE("block_size_q=" + std::to_string(bq) + " block_size_k=" + std::to_string(bk));
      c.block_size_q = bq;
      c.block_size_k = bk;
      const auto r = run_checked(p, c);
      ASSERT_EQ(r.status, TA_OK);
      EXPECT_LT(tatest::rel_l2(p.out.dense(), base), 1e-12);
    }
}

TEST(Params, NumThreadsBitIdentical_B2_H3_Nq40_Nk33_d8_dv8) {
  for (ta_dtype dt : {TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_BF16}) {
    SCOPED_TRACE(tatest::dtype_tag(dt));
    auto p = make_problem(Shape{2, 3, 40, 33, 8, 8}, dt, 67);
    ta_config c = test_config(4, 2);
    c.block_size_q = 8;
    c.block_size_k = 4;
    c.num_threads = 1;
    ASSERT_EQ(run_checked(p, c).status, TA_OK);
    const auto one = p.out.element_bytes();
    for (int nt : {2, 0, 3, 7, 64}) {
      c.num_threads = nt;
      ASSERT_EQ(run_checked(p, c).status, TA_OK);
      EXPECT_EQ(p.out.element_bytes(), one) << "num_threads=" << nt << " changed the bits";
    }
  }
}

TEST(Params, PrecisionFlagsDoNotChangeCpuResult_B2_H2_Nq13_Nk17_d12_dv6) {
  for (ta_dtype dt : {TA_DTYPE_F64, TA_DTYPE_F32}) {
    SCOPED_TRACE(tatest::dtype_tag(dt));
    auto p = make_problem(kS, dt, 68);
    ta_config c = test_config(3, 2);
    ASSERT_EQ(run_checked(p, c).status, TA_OK);
    const auto base = p.out.dense();
    const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
    for (int f : {0, 1})
      for (int dn : {0, 1}) {
        c.force_fp32 = f;
        c.denom_fp32 = dn;
        ASSERT_EQ(run_checked(p, c).status, TA_OK);
        EXPECT_LT(tatest::rel_l2(p.out.dense(), base), dt == TA_DTYPE_F64 ? 1e-12 : tatest::rel_tolerance(dt, ref))
            << "force_fp32=" << f << " denom_fp32=" << dn;
      }
  }
}

TEST(Params, EpsInNormalisation_B1_H2_Nq9_Nk10_d6_dv4) {
  auto p = make_problem(Shape{1, 2, 9, 10, 6, 4}, TA_DTYPE_F64, 69, 0.3);
  ta_config c = test_config(3, 2);
  c.qk_normalize = 1;
  const auto small = run_and_match(p, c);
  c.eps = 0.5;  // comparable to the slice norms: the normalised vectors shrink
  expect_differ(run_and_match(p, c), small, "eps (normalisation)");
}

// d = 1, P = 2, scale 1: s = q k, w = 1 + q k. One query q = 1 against keys -0.5 and -0.9:
// den = 0.5 + 0.1 = 0.6, num = 0.5 v0 + 0.1 v1.
Problem tiny_den_problem() {
  auto p = make_problem(Shape{1, 1, 1, 2, 1, 1}, TA_DTYPE_F64, 1);
  p.q.set({0, 0, 0, 0}, 1.0);
  p.k.set({0, 0, 0, 0}, -0.5);
  p.k.set({0, 0, 1, 0}, -0.9);
  p.v.set({0, 0, 0, 0}, 2.0);
  p.v.set({0, 0, 1, 0}, -3.0);
  return p;
}

TEST(Params, EpsIsTheDenominatorThreshold_B1_H1_Nq1_Nk2_d1_dv1) {
  auto p = tiny_den_problem();
  ta_config c = test_config(2, 1);
  c.scale = 1.0;
  for (int probe : {0, 1}) {
    SCOPED_TRACE("early_probe=" + std::to_string(probe));
    c.early_probe = probe;
    c.fallback_on_negative = 1;
    c.eps = 0.5;
    auto r = run_checked(p, c);
    ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
    EXPECT_NEAR(p.out.get({0, 0, 0, 0}), (0.5 * 2.0 + 0.1 * -3.0) / 0.6, 1e-14);
    EXPECT_NEAR(r.stats.denom_min, 0.6, 1e-14);
    EXPECT_EQ(r.stats.denom_le_eps, 0);
    c.eps = 0.6000001;
    r = run_checked(p, c);
    EXPECT_EQ(r.status, TA_FALLBACK);
    EXPECT_EQ(r.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << rname(r.stats.fallback_reason);
    c.fallback_on_negative = 0;  // clamp: den = max(0.6, 0.7) = 0.7
    c.eps = 0.7;
    r = run_checked(p, c);
    ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
    EXPECT_NEAR(p.out.get({0, 0, 0, 0}), (0.5 * 2.0 + 0.1 * -3.0) / 0.7, 1e-14);
    EXPECT_NEAR(r.stats.denom_min, 0.6, 1e-14) << "stats report the unclamped denominator";
    EXPECT_EQ(r.stats.denom_le_eps, 1);
  }
}

// "<= eps" is inclusive: keys -0.5 and -0.75 give den = 0.5 + 0.25 = 0.75 exactly in binary.
TEST(Params, DenominatorEqualToEpsFallsBack_B1_H1_Nq1_Nk2_d1_dv1) {
  auto p = tiny_den_problem();
  p.k.set({0, 0, 1, 0}, -0.75);
  ta_config c = test_config(2, 1);
  c.scale = 1.0;
  c.eps = 0.75;
  auto r = run_checked(p, c);
  EXPECT_EQ(r.status, TA_FALLBACK);
  EXPECT_EQ(r.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << rname(r.stats.fallback_reason);
  c.eps = 0.7499999;
  r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
  EXPECT_NEAR(p.out.get({0, 0, 0, 0}), (0.5 * 2.0 + 0.25 * -3.0) / 0.75, 1e-14);
}

// Queries aligned against every key with P = 2: s = -c|u|^2 << -1, every weight 1 + s < 0.
Problem negative_den_problem(const Shape &s, bool all_queries) {
  auto p = make_problem(s, TA_DTYPE_F64, 70, 0.05);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      for (int64_t i = 0; i < s.Nq; ++i)
        if (all_queries || i == s.Nq - 1)
          for (int64_t m = 0; m < s.d; ++m) p.q.set({b, h, i, m}, 2.0 + p.q.get({b, h, i, m}));
      for (int64_t j = 0; j < s.Nk; ++j)
        for (int64_t m = 0; m < s.d; ++m) p.k.set({b, h, j, m}, -2.0 + p.k.get({b, h, j, m}));
    }
  return p;
}

TEST(Params, FallbackOnNegativeVersusClamp_B2_H2_Nq11_Nk7_d4_dv3) {
  const Shape s{2, 2, 11, 7, 4, 3};
  auto p = negative_den_problem(s, /*all_queries=*/false);  // only the last query is bad
  ta_config c = test_config(2, 1);
  c.early_probe = 0;
  auto r = run_checked(p, c);
  EXPECT_EQ(r.status, TA_FALLBACK);
  EXPECT_EQ(r.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << rname(r.stats.fallback_reason);
  EXPECT_EQ(r.stats.probe_ran, 0);

  c.fallback_on_negative = 0;
  r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);  // clamped reference
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, 1e-9));
  int64_t le = 0;
  double mn = 1e300;
  for (double d : ref.den) { le += d <= c.eps; mn = std::min(mn, d); }
  EXPECT_EQ(le, s.B * s.H);  // the last query of every (b, h)
  EXPECT_EQ(r.stats.denom_le_eps, le);
  EXPECT_LT(r.stats.denom_min, 0.0);
  EXPECT_TRUE(tatest::near_rel(r.stats.denom_min, mn, 1e-9));
}

TEST(Params, EarlyProbeCatchesNegativeDenominator_B1_H2_Nq20_Nk9_d4_dv3) {
  const Shape s{1, 2, 20, 9, 4, 3};
  auto p = negative_den_problem(s, /*all_queries=*/true);
  ta_config c = test_config(2, 1);
  c.early_probe = 1;
  c.probe_samples = 4;
  auto r = run_checked(p, c);
  EXPECT_EQ(r.status, TA_FALLBACK);
  EXPECT_EQ(r.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << rname(r.stats.fallback_reason);
  EXPECT_EQ(r.stats.probe_ran, 1);
  EXPECT_EQ(r.stats.probe_samples, 4);
  EXPECT_LT(r.stats.probe_denom_min, 0.0);
  c.early_probe = 0;
  r = run_checked(p, c);
  EXPECT_EQ(r.status, TA_FALLBACK);
  EXPECT_EQ(r.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);
  EXPECT_EQ(r.stats.probe_ran, 0);
}

TEST(Params, EarlyProbeStatsOnSuccess_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F64, 71);
  ta_config c = test_config(3, 2);
  for (int ps : {1, 5, 13, 100}) {
    SCOPED_TRACE("probe_samples=" + std::to_string(ps));
    c.early_probe = 1;
    c.probe_samples = ps;
    auto r = run_checked(p, c);
    ASSERT_EQ(r.status, TA_OK);
    EXPECT_EQ(r.stats.probe_ran, 1);
    EXPECT_EQ(r.stats.probe_samples, std::min<int>(ps, static_cast<int>(kS.Nq)));
    EXPECT_GE(r.stats.probe_denom_min, r.stats.denom_min * (1 - 1e-12));
    EXPECT_LE(r.stats.probe_denom_min, r.stats.denom_max * (1 + 1e-12));
    if (ps >= kS.Nq) {
      EXPECT_TRUE(tatest::near_rel(r.stats.probe_denom_min, r.stats.denom_min, 1e-9));
    }
    const auto with_probe = p.out.element_bytes();
    c.early_probe = 0;
    r = run_checked(p, c);
    ASSERT_EQ(r.status, TA_OK);
    EXPECT_EQ(r.stats.probe_ran, 0);
    EXPECT_EQ(p.out.element_bytes(), with_probe) << "the probe changed the output";
  }
}

TEST(Params, QualityCheckDoesNotChangeOutput_B2_H2_Nq13_Nk17_d12_dv6) {
  auto p = make_problem(kS, TA_DTYPE_F32, 72);
  ta_config c = test_config(3, 2);
  c.quality_check = 0;
  auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK);
  EXPECT_EQ(r.stats.quality_vs_original.samples, 0);
  EXPECT_EQ(r.stats.quality_truncation.samples, 0);
  const auto off = p.out.element_bytes();
  c.quality_check = 1;
  c.quality_check_samples = 5;
  r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK);
  EXPECT_EQ(r.stats.quality_vs_original.samples, 5);
  EXPECT_EQ(r.stats.quality_truncation.samples, 5);
  EXPECT_GT(r.stats.quality_vs_original.rel_l2, 0.0);
  EXPECT_EQ(p.out.element_bytes(), off) << "quality_check changed the output";
}

TEST(Params, SeedChangesSamplesNotOutput_B2_H2_Nq40_Nk17_d12_dv6) {
  auto p = make_problem(Shape{2, 2, 40, 17, 12, 6}, TA_DTYPE_F64, 73, 1.2);
  ta_config c = test_config(3, 2);
  c.quality_check = 1;
  c.quality_check_samples = 3;
  c.probe_samples = 3;
  std::vector<double> rels;
  std::vector<uint8_t> first;
  for (uint64_t seed : {1ull, 2ull, 3ull, 4ull, 5ull, 0xdeadbeefull}) {
    c.seed = seed;
    const auto r = run_checked(p, c);
    ASSERT_EQ(r.status, TA_OK);
    if (first.empty()) first = p.out.element_bytes();
    EXPECT_EQ(p.out.element_bytes(), first) << "seed " << seed << " changed the output";
    rels.push_back(r.stats.quality_vs_original.rel_l2);
    // Same seed, same samples.
    const auto again = run_checked(p, c);
    EXPECT_EQ(again.stats.quality_vs_original.rel_l2, r.stats.quality_vs_original.rel_l2);
    EXPECT_EQ(again.stats.quality_truncation.max_abs, r.stats.quality_truncation.max_abs);
    EXPECT_EQ(again.stats.probe_denom_min, r.stats.probe_denom_min);
  }
  bool differ = false;
  for (double x : rels) differ |= x != rels[0];
  EXPECT_TRUE(differ) << "six seeds sampled the same rows";
}

}  // namespace
