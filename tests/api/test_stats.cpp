// ta_stats against an independent computation (denominators, quality metrics against the
// original and the modified exact attention), the workspace contract and the memory estimate.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::make_mask;
using tatest::make_problem;
using tatest::MaskForm;
using tatest::Problem;
using tatest::RefKind;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::test_config;

void expect_time_fields_sane(const ta_stats &s) {
  for (double t : {s.time_probe_ms, s.time_key_pass_ms, s.time_query_pass_ms, s.time_quality_ms, s.time_total_ms}) {
    EXPECT_TRUE(std::isfinite(t));
    EXPECT_GE(t, 0.0);
  }
}

void expect_denominator_stats(const ta_stats &s, const tatest::RefOutput &ref, double eps, double rel) {
  double mn = 1e300, mx = -1e300, sum = 0;
  int64_t le = 0;
  for (double d : ref.den) {
    mn = std::min(mn, d);
    mx = std::max(mx, d);
    sum += d;
    le += d <= eps;
  }
  EXPECT_EQ(s.denom_count, static_cast<int64_t>(ref.den.size()));
  EXPECT_TRUE(tatest::near_rel(s.denom_min, mn, rel)) << "denom_min";
  EXPECT_TRUE(tatest::near_rel(s.denom_max, mx, rel)) << "denom_max";
  EXPECT_TRUE(tatest::near_rel(s.denom_mean, sum / static_cast<double>(ref.den.size()), rel)) << "denom_mean";
  EXPECT_EQ(s.denom_le_eps, le);
  EXPECT_EQ(s.denom_non_finite, 0);
}

TEST(Stats, FieldsOnSuccess_B2_H3_Nq21_Nk18_d12_dv9_G3_P4) {
  const Shape s{2, 3, 21, 18, 12, 9};
  auto p = make_problem(s, TA_DTYPE_F64, 91, 0.6);
  ta_config c = test_config(4, 3);
  c.qk_normalize = 1;
  c.scale_mul = 1.3;
  const auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
  const auto& st = r.stats;
  EXPECT_EQ(st.backend, TA_BACKEND_CPU);
  EXPECT_EQ(st.fallback_reason, TA_REASON_NONE);
  EXPECT_EQ(st.sub_head_blocks, 3);
  EXPECT_EQ(st.slice_dim, 4);
  EXPECT_EQ(st.slice_value_dim, 3);
  EXPECT_EQ(st.feature_dim, 35);  // R(4, 4) = C(7, 3)
  EXPECT_GE(st.state_bytes, 35 * (3 + 1) * 4) << "S (R x dv/G) plus z in at least fp32";
  EXPECT_GE(st.workspace_bytes, 0);
  EXPECT_EQ(st.denom_count, s.B * s.H * 3 * s.Nq);
  expect_denominator_stats(st, tatest::reference_of(p, c, RefKind::Taylor), c.eps, 1e-9);
  EXPECT_EQ(st.probe_ran, 1);
  EXPECT_EQ(st.probe_samples, 16);
  expect_time_fields_sane(st);
}

TEST(Stats, DenominatorsF32_B1_H2_Nq30_Nk25_d8_dv8) {
  auto p = make_problem(Shape{1, 2, 30, 25, 8, 8}, TA_DTYPE_F32, 92);
  const ta_config c = test_config(3, 2);
  const auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK);
  // fp32 sums of positive-leaning terms: a few ulps relative, 1e-5 is generous.
  expect_denominator_stats(r.stats, tatest::reference_of(p, c, RefKind::Taylor), c.eps, 1e-5);
}

// The function's configuration for a quality case.
struct QCase {
  const char *name;
  Shape s;
  int P, G, normalize;
  double scale_mul, scale;
  bool mask;
  ta_dtype dt;
};

class Quality : public ::testing::TestWithParam<QCase> {};

void PrintTo(const QCase &q, std::ostream *os) { *os << q.name; }

// All queries sampled: the metrics are computable exactly; compare with our own.
TEST_P(Quality, AllRowsSampledMatchIndependentMetrics) {
  const QCase &q = GetParam();
  auto p = make_problem(q.s, q.dt, 93, 0.9);
  if (q.mask) {
    p.keep.assign(static_cast<size_t>(q.s.B * q.s.Nk), 1);
    for (int64_t b = 0; b < q.s.B; ++b) p.keep[static_cast<size_t>(b * q.s.Nk + 2 + b)] = 0;
    p.mask = make_mask(MaskForm::B_1_1_Nk, TA_DTYPE_F32, q.s, p.keep);
  }
  ta_config c = test_config(q.P, q.G);
  c.qk_normalize = q.normalize;
  c.scale_mul = q.scale_mul;
  c.scale = q.scale;
  c.quality_check = 1;
  c.quality_check_samples = static_cast<int32_t>(q.s.Nq) + 3;
  const auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
  const auto o = p.out.dense();
  std::vector<int64_t> rows(static_cast<size_t>(q.s.B * q.s.H * q.s.Nq));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>(i);
  const double rel = q.dt == TA_DTYPE_F64 ? 1e-9 : 1e-3;
  const std::pair<const ta_quality *, RefKind> which[] = {{&r.stats.quality_vs_original, RefKind::ExactOriginal},
                                                           {&r.stats.quality_truncation, RefKind::ExactModified}};
  for (const auto &[got, kind] : which) {
    SCOPED_TRACE(kind == RefKind::ExactOriginal ? "quality_vs_original" : "quality_truncation");
    const auto ref = tatest::reference_of(p, c, kind);
    const tatest::RefQuality want = tatest::quality_metrics(o, ref.out, q.s.dv, rows);
    EXPECT_EQ(got->samples, q.s.Nq);
    EXPECT_TRUE(tatest::near_rel(got->rel_l2, want.rel_l2, rel)) << "rel_l2";
    EXPECT_TRUE(tatest::near_rel(got->mean_abs, want.mean_abs, rel)) << "mean_abs";
    EXPECT_TRUE(tatest::near_rel(got->max_abs, want.max_abs, rel)) << "max_abs";
    EXPECT_TRUE(tatest::near_rel(got->mean_rel, want.mean_rel, rel)) << "mean_rel";
  }
  expect_time_fields_sane(r.stats);
}

// Partial sampling: the sampled rows are unknown, but every metric must lie within what
// the rows allow (a ratio of sums lies between the smallest and largest row ratio).
TEST_P(Quality, SampledRowsWithinRowBounds) {
  const QCase &q = GetParam();
  auto p = make_problem(q.s, q.dt, 94, 0.9);
  ta_config c = test_config(q.P, q.G);
  c.qk_normalize = q.normalize;
  c.scale_mul = q.scale_mul;
  c.scale = q.scale;
  c.quality_check = 1;
  c.quality_check_samples = 3;
  const auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
  const auto o = p.out.dense();
  const double slack = q.dt == TA_DTYPE_F64 ? 1e-9 : 1e-3;
  const std::pair<const ta_quality *, RefKind> which[] = {{&r.stats.quality_vs_original, RefKind::ExactOriginal},
                                                           {&r.stats.quality_truncation, RefKind::ExactModified}};
  for (const auto &[got, kind] : which) {
    SCOPED_TRACE(kind == RefKind::ExactOriginal ? "quality_vs_original" : "quality_truncation");
    const auto ref = tatest::reference_of(p, c, kind);
    double rmin = 1e300, rmax = 0, amin = 1e300, amax = 0, gmax = 0;
    for (int64_t row = 0; row < q.s.B * q.s.H * q.s.Nq; ++row) {
      const auto m = tatest::quality_metrics(o, ref.out, q.s.dv, {row});
      rmin = std::min(rmin, m.rel_l2);
      rmax = std::max(rmax, m.rel_l2);
      amin = std::min(amin, m.mean_abs);
      amax = std::max(amax, m.mean_abs);
      gmax = std::max(gmax, m.max_abs);
    }
    EXPECT_EQ(got->samples, 3);
    EXPECT_GE(got->rel_l2, 0.0);
    EXPECT_GE(got->max_abs, got->mean_abs);
    EXPECT_GE(got->rel_l2, rmin * (1 - slack));
    EXPECT_LE(got->rel_l2, rmax * (1 + slack));
    EXPECT_GE(got->mean_rel, rmin * (1 - slack));
    EXPECT_LE(got->mean_rel, rmax * (1 + slack));
    EXPECT_GE(got->mean_abs, amin * (1 - slack));
    EXPECT_LE(got->mean_abs, amax * (1 + slack));
    EXPECT_LE(got->max_abs, gmax * (1 + slack));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Api, Quality,
    ::testing::Values(
        QCase{"B2_H2_Nq11_Nk14_d8_dv6_P3_G1_f64", {2, 2, 11, 14, 8, 6}, 3, 1, 0, 1.0, 0.0, false, TA_DTYPE_F64},
        QCase{"B2_H2_Nq11_Nk14_d8_dv6_P4_G2_norm_smul07_f64", {2, 2, 11, 14, 8, 6}, 4, 2, 1, 0.7, 0.0, false, TA_DTYPE_F64},
        QCase{"B2_H1_Nq9_Nk12_d12_dv6_P3_G3_scale03_mask_f64", {2, 1, 9, 12, 12, 6}, 3, 3, 0, 1.4, 0.3, true, TA_DTYPE_F64},
        QCase{"B1_H3_Nq16_Nk10_d8_dv8_P3_G2_mask_f32", {1, 3, 16, 10, 8, 8}, 3, 2, 0, 1.0, 0.0, true, TA_DTYPE_F32}),
    [](const auto &info) { return std::string(info.param.name); });

// ---- Workspace ----
struct AlignedBuffer {
  explicit AlignedBuffer(size_t n)
      : size(n), raw(static_cast<unsigned char *>(std::aligned_alloc(256, ((n + 4096 + 255) / 256) * 256)), &std::free) {
    std::memset(raw.get(), 0xC3, ((n + 4096 + 255) / 256) * 256);
  }
  bool tail_intact() const {
    for (size_t i = size; i < size + 4096; ++i)
      if (raw.get()[i] != 0xC3) return false;
    return true;
  }
  size_t size;
  std::unique_ptr<unsigned char, decltype(&std::free)> raw{nullptr, &std::free};
};

TEST(Workspace, CallerOwnedWorkspaceContract_B2_H2_Nq37_Nk29_d64_dv32_G4_P4) {
  const Shape s{2, 2, 37, 29, 64, 32};
  auto p = make_problem(s, TA_DTYPE_F32, 95, 0.6);
  ta_config c = test_config(4, 4);
  const ta_attention_args a = p.args();
  size_t ws = 0;
  ASSERT_EQ(ta_attention_workspace_size(&a, &c, &ws), TA_OK) << ta_last_error_message();
  ASSERT_GT(ws, 0u) << "the states of this call must live somewhere";

  ASSERT_EQ(run_checked(p, c).status, TA_OK);  // NULL workspace: the library allocates
  const auto lib_alloc = p.out.element_bytes();

  AlignedBuffer buf(ws);
  const auto r = run_checked(p, c, buf.raw.get(), ws);
  ASSERT_EQ(r.status, TA_OK) << r.message;
  EXPECT_TRUE(buf.tail_intact()) << "wrote past workspace_bytes";
  EXPECT_EQ(p.out.element_bytes(), lib_alloc) << "caller workspace changed the output";
  EXPECT_LE(r.stats.workspace_bytes, static_cast<int64_t>(ws));

  // A bigger workspace is fine too.
  AlignedBuffer big(ws + 1000);
  EXPECT_EQ(run_checked(p, c, big.raw.get(), ws + 1000).status, TA_OK);

  for (size_t small : {ws - 1, ws / 2, size_t{0}}) {
    SCOPED_TRACE("workspace bytes " + std::to_string(small));
    AlignedBuffer sb(small);
    const auto rs = run_checked(p, c, sb.raw.get(), small);
    EXPECT_EQ(rs.status, TA_ERR_WORKSPACE_TOO_SMALL) << ta_status_string(rs.status);
    EXPECT_EQ(rs.stats.fallback_reason, TA_REASON_OUT_OF_MEMORY) << rname(rs.stats.fallback_reason);
    EXPECT_GT(rs.message.size(), 0u);
    EXPECT_TRUE(sb.tail_intact());
    EXPECT_EQ(ta_attention_run(&a, &c, sb.raw.get(), small, nullptr, nullptr), TA_ERR_WORKSPACE_TOO_SMALL);
  }
}

TEST(Workspace, SizeGrowsWithFeatureDim_B1_H1_Nq16_Nk16_d16_dv16) {
  auto p = make_problem(Shape{1, 1, 16, 16, 16, 16}, TA_DTYPE_F32, 96);
  const ta_attention_args a = p.args();
  size_t w3 = 0, w4 = 0;
  const ta_config c3 = test_config(3, 1), c4 = test_config(4, 1);
  ASSERT_EQ(ta_attention_workspace_size(&a, &c3, &w3), TA_OK);
  ASSERT_EQ(ta_attention_workspace_size(&a, &c4, &w4), TA_OK);
  EXPECT_GT(w4, w3) << "R(16,4)=969 > R(16,3)=153";
}

// ---- Memory estimate ----
TEST(MemoryEstimate, FromShapesAlone_B2_H3_Nq50_Nk40_d32_dv16_G2_P4) {
  const Shape s{2, 3, 50, 40, 32, 16};
  for (ta_dtype dt : {TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_F64}) {
    SCOPED_TRACE(tatest::dtype_tag(dt));
    auto p = make_problem(s, dt, 97, 0.5);
    const ta_config c = test_config(4, 2);
    const ta_attention_args a = p.args();
    size_t ws = 0;
    ASSERT_EQ(ta_attention_workspace_size(&a, &c, &ws), TA_OK);
    ta_tensor q = *p.q.ptr(), k = *p.k.ptr(), v = *p.v.ptr(), out = *p.out.ptr();
    q.data = k.data = v.data = out.data = nullptr;
    const ta_attention_args shapes_only{&q, &k, &v, nullptr, &out};
    ta_memory_estimate est;
    std::memset(&est, 0xEE, sizeof est);
    ASSERT_EQ(ta_attention_memory_estimate(&shapes_only, &c, &est), TA_OK) << ta_last_error_message();
    EXPECT_EQ(est.feature_dim, 969);  // R(16, 4)
    EXPECT_EQ(est.workspace_bytes, static_cast<int64_t>(ws));
    EXPECT_EQ(est.output_bytes, s.B * s.H * s.Nq * s.dv * static_cast<int64_t>(tatest::dtype_bytes(dt)));
    EXPECT_EQ(est.total_bytes, est.workspace_bytes + est.output_bytes);
    EXPECT_GT(est.state_bytes, 0);
    EXPECT_LE(est.state_bytes, est.workspace_bytes) << "the workspace includes the states";
    ta_memory_estimate est2;
    ASSERT_EQ(ta_attention_memory_estimate(&a, &c, &est2), TA_OK);
    EXPECT_EQ(std::memcmp(&est, &est2, sizeof est), 0) << "data pointers changed the estimate";
  }
}

}  // namespace
