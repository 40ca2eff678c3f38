// Guards: each reason with its boundary, the documented order between them (all 2^10
// combinations of violations), and that run agrees with check (TA_FALLBACK, backend NONE,
// no write outside out).
#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <limits>
#include <string>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::make_problem;
using tatest::Problem;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::test_config;

ta_reason check_reason(const Problem &p, const ta_config &c) {
  const ta_attention_args a = p.args();
  ta_reason r = TA_REASON_COUNT_;
  const ta_status st = ta_attention_check(&a, &c, &r);
  EXPECT_EQ(st, TA_OK) << ta_last_error_message();
  return r;
}

void expect_guard(Problem &p, const ta_config &c, ta_reason want) {
  EXPECT_EQ(check_reason(p, c), want) << "want " << rname(want);
  const tatest::RunResult r = run_checked(p, c);
  if (want == TA_REASON_NONE) {
    EXPECT_EQ(r.status, TA_OK) << r.message << " reason " << rname(r.stats.fallback_reason);
  } else {
    EXPECT_EQ(r.status, TA_FALLBACK);
    EXPECT_EQ(r.stats.fallback_reason, want) << "got " << rname(r.stats.fallback_reason);
    EXPECT_EQ(r.stats.backend, TA_BACKEND_NONE);
  }
  // stats may be NULL on every path.
  const ta_attention_args a = p.args();
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, nullptr), want == TA_REASON_NONE ? TA_OK : TA_FALLBACK);
}

TEST(Guards, NoneWhenRunnable_B1_H2_Nq8_Nk8_d8_dv8) {
  auto p = make_problem(Shape{1, 2, 8, 8, 8, 8}, TA_DTYPE_F64, 1);
  expect_guard(p, test_config(), TA_REASON_NONE);
}

TEST(Guards, Disabled_B1_H2_Nq8_Nk8_d8_dv8) {
  auto p = make_problem(Shape{1, 2, 8, 8, 8, 8}, TA_DTYPE_F64, 1);
  ta_config c = test_config();
  c.enabled = 0;
  expect_guard(p, c, TA_REASON_DISABLED);
}

TEST(Guards, UnsupportedDeviceCudaInCpuBuild_B1_H2_Nq8_Nk8_d8_dv8) {
  if (ta_backend_available(TA_DEVICE_CUDA)) GTEST_SKIP() << "CUDA backend compiled in";
  auto p = make_problem(Shape{1, 2, 8, 8, 8, 8}, TA_DTYPE_F32, 1);
  for (auto *t : {&p.q, &p.k, &p.v, &p.out}) t->desc().device = TA_DEVICE_CUDA;
  expect_guard(p, test_config(), TA_REASON_UNSUPPORTED_DEVICE);
  // memory estimate and workspace size still answer for a guarded call, or decline cleanly.
}

TEST(Guards, UnsupportedDtypeMixed_B1_H2_Nq8_Nk8_d8_dv8) {
  const ta_dtype others[] = {TA_DTYPE_F16, TA_DTYPE_BF16, TA_DTYPE_F32};
  for (ta_dtype kd : others) {
    for (int which = 0; which < 2; ++which) {
      SCOPED_TRACE(std::string(which ? "v " : "k ") + tatest::dtype_tag(kd));
      auto p = make_problem(Shape{1, 2, 8, 8, 8, 8}, TA_DTYPE_F64, 1);
      tatest::Rng rng(5);
      tatest::TestTensor &t = which ? p.v : p.k;
      t = tatest::TestTensor(kd, t.shape());
      t.fill_normal(rng, 0.5);
      expect_guard(p, test_config(), TA_REASON_UNSUPPORTED_DTYPE);
    }
  }
}

TEST(Guards, UnsupportedDtypeBool_B1_H1_Nq4_Nk4_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_BOOL, 1);
  expect_guard(p, test_config(), TA_REASON_UNSUPPORTED_DTYPE);
}

// k stored with a negative stride over tokens (data points at the last row).
void make_k_negative_stride(Problem &p) {
  ta_tensor &k = p.k.desc();
  const int64_t rows = p.s.Nk;
  k.data = static_cast<char *>(k.data) + (rows - 1) * k.strides[2] * static_cast<int64_t>(tatest::dtype_bytes(k.dtype));
  k.strides[2] = -k.strides[2];
}

TEST(Guards, UnsupportedLayoutNegativeStride_B2_H2_Nq8_Nk8_d8_dv8) {
  auto p = make_problem(Shape{2, 2, 8, 8, 8, 8}, TA_DTYPE_F64, 1);
  make_k_negative_stride(p);
  expect_guard(p, test_config(), TA_REASON_UNSUPPORTED_LAYOUT);
}

TEST(Guards, UnsupportedLayoutNegativeLastDimStride_B1_H1_Nq4_Nk4_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F32, 1);
  ta_tensor &q = p.q.desc();
  q.data = static_cast<float *>(q.data) + 3;
  q.strides[3] = -1;
  expect_guard(p, test_config(), TA_REASON_UNSUPPORTED_LAYOUT);
}

// Tensors on different devices: the call's device is the CPU (q and out), so the device
// guard passes and the layout guard names the mix.
TEST(Guards, UnsupportedLayoutMixedDevices_B1_H2_Nq8_Nk8_d8_dv8) {
  if (ta_backend_available(TA_DEVICE_CUDA)) GTEST_SKIP() << "CUDA backend compiled in";
  auto p = make_problem(Shape{1, 2, 8, 8, 8, 8}, TA_DTYPE_F32, 1);
  p.v.desc().device = TA_DEVICE_CUDA;
  expect_guard(p, test_config(), TA_REASON_UNSUPPORTED_LAYOUT);
}

TEST(Guards, SubHeadBlockMismatchD_B1_H1_Nq8_Nk8_d6_dv8_G4) {
  auto p = make_problem(Shape{1, 1, 8, 8, 6, 8}, TA_DTYPE_F64, 1);
  expect_guard(p, test_config(3, 4), TA_REASON_SUB_HEAD_BLOCK_MISMATCH);
}

TEST(Guards, SubHeadBlockMismatchDv_B1_H1_Nq8_Nk8_d8_dv6_G4) {
  auto p = make_problem(Shape{1, 1, 8, 8, 8, 6}, TA_DTYPE_F64, 1);
  expect_guard(p, test_config(3, 4), TA_REASON_SUB_HEAD_BLOCK_MISMATCH);
}

TEST(Guards, SubHeadBlocksDividing_B1_H1_Nq8_Nk8_d12_dv6_G3) {
  auto p = make_problem(Shape{1, 1, 8, 8, 12, 6}, TA_DTYPE_F64, 1);
  expect_guard(p, test_config(3, 3), TA_REASON_NONE);
}

TEST(Guards, CrossAttentionDisabled_B1_H1_Nq8_Nk5_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 8, 5, 4, 4}, TA_DTYPE_F64, 1);
  ta_config c = test_config();
  c.allow_cross_attention = 0;
  expect_guard(p, c, TA_REASON_CROSS_ATTENTION_DISABLED);
  c.allow_cross_attention = 1;
  expect_guard(p, c, TA_REASON_NONE);
  auto self = make_problem(Shape{1, 1, 8, 8, 4, 4}, TA_DTYPE_F64, 1);
  c.allow_cross_attention = 0;
  expect_guard(self, c, TA_REASON_NONE);
}

TEST(Guards, BelowMinTokensBoundary_B1_H1_Nq3_Nk8_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 3, 8, 4, 4}, TA_DTYPE_F64, 1);
  ta_config c = test_config();
  c.min_tokens = 9;
  expect_guard(p, c, TA_REASON_BELOW_MIN_TOKENS);
  c.min_tokens = 8;  // max(Nq, Nk) == min_tokens runs
  expect_guard(p, c, TA_REASON_NONE);
  auto q = make_problem(Shape{1, 1, 8, 3, 4, 4}, TA_DTYPE_F64, 2);
  expect_guard(q, c, TA_REASON_NONE);
  c.min_tokens = 9;
  expect_guard(q, c, TA_REASON_BELOW_MIN_TOKENS);
}

TEST(Guards, DefaultMinTokens100_B1_H1_Nq99_Nk99_d16_dv16) {
  auto p = make_problem(Shape{1, 1, 99, 99, 16, 16}, TA_DTYPE_F32, 1);
  ta_config c;
  ta_config_defaults(&c);
  expect_guard(p, c, TA_REASON_BELOW_MIN_TOKENS);
}

TEST(Guards, HeadDimTooLargeUsesSliceDim_B1_H1_Nq4_Nk4_d8_dv8) {
  auto p = make_problem(Shape{1, 1, 4, 4, 8, 8}, TA_DTYPE_F64, 1);
  ta_config c = test_config(3, 2);  // slice dim 4
  c.max_head_dim = 3;
  expect_guard(p, c, TA_REASON_HEAD_DIM_TOO_LARGE);
  c.max_head_dim = 4;
  expect_guard(p, c, TA_REASON_NONE);
  c.sub_head_blocks = 1;  // slice dim 8
  expect_guard(p, c, TA_REASON_HEAD_DIM_TOO_LARGE);
}

TEST(Guards, DefaultMaxHeadDim128_B1_H1_Nq4_Nk4_d256_dv8) {
  auto p = make_problem(Shape{1, 1, 4, 4, 256, 8}, TA_DTYPE_F32, 1);
  ta_config c = test_config(2, 1);
  c.max_feature_dim_R = 1000000;
  expect_guard(p, c, TA_REASON_HEAD_DIM_TOO_LARGE);
  c.sub_head_blocks = 2;  // slice dim 128 == max_head_dim
  expect_guard(p, c, TA_REASON_NONE);
}

TEST(Guards, FeatureDimTooLargeBoundary_B1_H1_Nq4_Nk4_d8_dv8) {
  auto p = make_problem(Shape{1, 1, 4, 4, 8, 8}, TA_DTYPE_F64, 1);
  ta_config c = test_config(3, 1);  // R(8,3) = 45
  c.max_feature_dim_R = 44;
  expect_guard(p, c, TA_REASON_FEATURE_DIM_TOO_LARGE);
  c.max_feature_dim_R = 45;
  expect_guard(p, c, TA_REASON_NONE);
  c.sub_head_blocks = 2;  // R(4,3) = 15 per slice
  c.max_feature_dim_R = 15;
  expect_guard(p, c, TA_REASON_NONE);
  c.max_feature_dim_R = 14;
  expect_guard(p, c, TA_REASON_FEATURE_DIM_TOO_LARGE);
}

// d = 2^20 with P = 16: R overflows int64 and must be reported as too large, not wrapped.
// Inputs broadcast one element through zero strides, so this costs no memory.
TEST(Guards, FeatureDimOverflowIsTooLarge_B1_H1_Nq1_Nk1_d1048576_dv1) {
  double one = 0.5, vv = 1.0;
  tatest::TestTensor out(TA_DTYPE_F64, {1, 1, 1, 1});
  ta_tensor q{}, k{}, v{};
  q.data = &one; q.dtype = TA_DTYPE_F64; q.device = TA_DEVICE_CPU; q.ndim = 4;
  const int64_t shape[4] = {1, 1, 1, 1 << 20};
  for (int i = 0; i < 4; ++i) { q.shape[i] = shape[i]; q.strides[i] = 0; }
  k = q;
  v = q;
  v.data = &vv;
  v.shape[3] = 1;
  ta_attention_args a{&q, &k, &v, nullptr, out.ptr()};
  ta_config c = test_config(16, 1);
  c.max_head_dim = INT_MAX;
  c.max_feature_dim_R = std::numeric_limits<int64_t>::max();
  ta_reason r = TA_REASON_COUNT_;
  ASSERT_EQ(ta_attention_check(&a, &c, &r), TA_OK) << ta_last_error_message();
  EXPECT_EQ(r, TA_REASON_FEATURE_DIM_TOO_LARGE) << rname(r);
  ta_stats st;
  ta_stats_init(&st);
  out.fill_bytes(0xA5);
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_FALLBACK);
  EXPECT_EQ(st.fallback_reason, TA_REASON_FEATURE_DIM_TOO_LARGE);
  EXPECT_TRUE(out.canaries_intact(0xA5));
}

TEST(Guards, UnsupportedMaskPerHead_B1_H2_Nq8_Nk8_d4_dv4) {
  auto p = make_problem(Shape{1, 2, 8, 8, 4, 4}, TA_DTYPE_F64, 1);
  tatest::TestTensor m(TA_DTYPE_BOOL, {1, 2, 1, 8});
  m.for_each([&](const std::array<int64_t, 4> &i, int64_t off) { m.set_at(off, (i[1] == 0 || i[3] < 6) ? 1 : 0); });
  p.mask = std::move(m);
  expect_guard(p, test_config(), TA_REASON_UNSUPPORTED_MASK);
}

// ---- The order of the guards: every combination of ten violations answers the first. ----
enum Violation {
  kDisabled, kDevice, kDtype, kLayout, kMask, kMismatch, kCross, kBelow, kHeadDim, kFeatureDim, kNumViolations
};
const ta_reason kOrder[kNumViolations] = {
    TA_REASON_DISABLED,          TA_REASON_UNSUPPORTED_DEVICE,       TA_REASON_UNSUPPORTED_DTYPE,
    TA_REASON_UNSUPPORTED_LAYOUT, TA_REASON_UNSUPPORTED_MASK,        TA_REASON_SUB_HEAD_BLOCK_MISMATCH,
    TA_REASON_CROSS_ATTENTION_DISABLED, TA_REASON_BELOW_MIN_TOKENS,  TA_REASON_HEAD_DIM_TOO_LARGE,
    TA_REASON_FEATURE_DIM_TOO_LARGE};

// Base: B1 H2 Nq8 Nk8 d8 dv8, G=2 (slice 4), P=3 (R=15), allow_cross=0, min_tokens=8,
// max_head_dim=4, max_R=15: runnable, and each violation flips exactly one guard.
TEST(Guards, OrderAllCombinations_B1_H2_Nq8_Nk8or6_d8_dv8or7_G2) {
  const bool cuda = ta_backend_available(TA_DEVICE_CUDA) != 0;
  int checked = 0;
  for (unsigned bits = 0; bits < (1u << kNumViolations); ++bits) {
    if (cuda && (bits & (1u << kDevice))) continue;
    auto has = [&](Violation v) { return (bits >> v) & 1u; };
    Shape s{1, 2, 8, has(kCross) ? 6 : 8, 8, has(kMismatch) ? 7 : 8};
    auto p = make_problem(s, TA_DTYPE_F64, bits);
    ta_config c = test_config(3, 2);
    c.allow_cross_attention = 0;
    c.min_tokens = has(kBelow) ? 9 : 8;
    c.max_head_dim = has(kHeadDim) ? 3 : 4;
    c.max_feature_dim_R = has(kFeatureDim) ? 14 : 15;
    c.enabled = has(kDisabled) ? 0 : 1;
    if (has(kDtype)) {
      tatest::Rng rng(bits);
      p.k = tatest::TestTensor(TA_DTYPE_F32, p.k.shape());
      p.k.fill_normal(rng, 0.5);
    }
    if (has(kLayout)) make_k_negative_stride(p);
    if (has(kMask)) {
      tatest::TestTensor m(TA_DTYPE_F32, {1, 1, s.Nq, s.Nk});  // varies over queries
      m.for_each([&](const std::array<int64_t, 4> &i, int64_t off) {
        m.set_at(off, i[2] == i[3] ? -std::numeric_limits<double>::infinity() : 0.0);
      });
      p.mask = std::move(m);
    }
    if (has(kDevice)) {
      for (auto *t : {&p.q, &p.k, &p.v, &p.out}) t->desc().device = TA_DEVICE_CUDA;
      if (p.mask) p.mask->desc().device = TA_DEVICE_CUDA;
    }
    ta_reason want = TA_REASON_NONE;
    for (int v = 0; v < kNumViolations; ++v)
      if (has(static_cast<Violation>(v))) { want = kOrder[v]; break; }
    SCOPED_TRACE("violations 0x" + std::to_string(bits));
    const ta_reason got = check_reason(p, c);
    EXPECT_EQ(got, want) << "want " << rname(want) << " got " << rname(got);
    if (got != want) return;  // one clear failure, not a thousand
    if (bits % 7 == 0) expect_guard(p, c, want);  // a spread of runs as well
    ++checked;
  }
  EXPECT_GE(checked, 512);
}

// Guards are answered after argument validation: a malformed call is an error even when
// a guard (here: disabled) would decline it.
TEST(Guards, ArgumentErrorsBeforeGuards_B1_H1_Nq4_Nk4_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F64, 1);
  ta_config c = test_config();
  c.enabled = 0;
  ta_attention_args a = p.args();
  a.q = nullptr;
  ta_reason r = TA_REASON_COUNT_;
  EXPECT_EQ(ta_attention_check(&a, &c, &r), TA_ERR_INVALID_ARGUMENT);
  a = p.args();
  p.out.desc().shape[3] = 5;
  EXPECT_EQ(ta_attention_check(&a, &c, &r), TA_ERR_INVALID_ARGUMENT);
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT);
}

TEST(Guards, CheckNeedsReasonPointer_B1_H1_Nq4_Nk4_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F64, 1);
  const ta_config c = test_config();
  const ta_attention_args a = p.args();
  EXPECT_EQ(ta_attention_check(&a, &c, nullptr), TA_ERR_INVALID_ARGUMENT);
}

}  // namespace
