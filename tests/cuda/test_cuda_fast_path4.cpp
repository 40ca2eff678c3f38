// The prefix x block fast path for P = 4 on 32-wide slices (cuda/prefix_block4_plan.h,
// kernels/pb4_*.cuh). Host-only checks of the half list, the selection rule and a host
// emulation of the kernels' bf16 rounding (which derives the GPU tests' tolerances) run
// everywhere; the GPU checks (skipped without a GPU) run the kernels against the CPU engine
// on awkward sizes, dtypes, views, masks, cross attention, the hybrid, the probe, the
// guards and the workspace plan, and assert that the P = 4 kernels ran.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/ta_api_helpers.h"
#include "common/ta_cuda_copy.h"
#include "core/dtype.h"
#include "cuda/batch_budget.h"
#include "cuda/prefix_block4_plan.h"
#include "cuda/prefix_block_plan.h"
#include "fast_path_harness.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using ta::cuda::PassKernels;
using tatest::DeviceCopy;
using tatest::TestTensor;
using namespace tatest::fastpath;  // NOLINT(google-build-using-namespace): the shared harness

// ---- host only: the half list, the selection rule, the rounding model ---------------------

// Row i of half d at x (x[32] = 1, x[33..39] = 0, as the staged tiles), in fp64.
double feature(uint32_t d, int i, const std::vector<double>& x) {
  using namespace ta::cuda;
  return x[static_cast<size_t>(pb4_col_a(d))] * x[static_cast<size_t>(pb4_col_b(d))] *
         x[static_cast<size_t>(8 * pb4_cb(d) + i)];
}

std::vector<double> padded_coords(const std::vector<double>& v) {
  std::vector<double> x(40, 0.0);
  std::copy(v.begin(), v.end(), x.begin());
  x[32] = 1.0;
  return x;
}

// Independent of the compile-time completeness check: the weighted features of the list
// reproduce T_4(x.y) = 1 + s + s^2 / 2 + s^3 / 6 in fp64 for random x, y, up to the fp32
// weights (1/6 is not exact in fp32: 2^-24 relative per term).
TEST(PrefixBlock4Plan, WeightedFeaturesGiveT4_d32) {
  using namespace ta::cuda;
  const Pb4HalfList list = pb4_half_list();
  tatest::Rng rng(41);
  for (int trial = 0; trial < 6; ++trial) {
    std::vector<double> xv(32), yv(32);
    double s = 0;
    for (int c = 0; c < 32; ++c) {
      xv[static_cast<size_t>(c)] = 0.4 * rng.normal();
      yv[static_cast<size_t>(c)] = 0.4 * rng.normal();
      s += xv[static_cast<size_t>(c)] * yv[static_cast<size_t>(c)];
    }
    const std::vector<double> x = padded_coords(xv), y = padded_coords(yv);
    double sum = 0;
    for (int h = 0; h < kPb4ListHalves; ++h) {
      for (int i = 0; i < 8; ++i) sum += pb4_weight(list.d[h], i) * feature(list.d[h], i, x) * feature(list.d[h], i, y);
    }
    const double want = 1.0 + s + s * s / 2.0 + s * s * s / 6.0;
    const double size = 1.0 + std::fabs(s) + s * s / 2.0 + std::fabs(s * s * s) / 6.0;
    EXPECT_NEAR(sum, want, 1e-7 * size) << "trial " << trial;
  }
}

// Real halves first (DEG3, DEG2, DEG1, CONST), null halves after; 6,545 rows with a weight;
// weightless rows only below the diagonal (c < b), in CONST rows 1..7 or in null halves; a
// pair's halves adjacent (561 runs: 528 + 32 pairs and the (1, 1) pair of DEG1 / CONST).
TEST(PrefixBlock4Plan, HalfListLayout) {
  using namespace ta::cuda;
  const Pb4HalfList list = pb4_half_list();
  int weighted = 0, per_kind[5] = {}, runs = 0;
  std::set<uint32_t> pairs_seen;
  for (int h = 0; h < kPb4ListHalves; ++h) {
    const uint32_t d = list.d[h];
    ++per_kind[pb4_kind(d)];
    EXPECT_EQ(h < kPb4RealHalves, pb4_kind(d) != kPb4Null) << "half " << h;
    if (h < kPb4RealHalves && (h == 0 || pb4_pair(d) != pb4_pair(list.d[h - 1]))) {
      ++runs;
      EXPECT_TRUE(pairs_seen.insert(pb4_pair(d)).second) << "pair of half " << h << " split into two runs";
    }
    for (int i = 0; i < 8; ++i) {
      if (pb4_weight(d, i) != 0.0f) {
        ++weighted;
      } else if (pb4_kind(d) == kPb4Deg2 || pb4_kind(d) == kPb4Deg3) {
        EXPECT_LT(8 * pb4_cb(d) + i, pb4_col_b(d)) << "half " << h << " row " << i;
      } else {
        EXPECT_TRUE(pb4_kind(d) == kPb4Const || pb4_kind(d) == kPb4Null) << "half " << h << " row " << i;
      }
    }
  }
  EXPECT_EQ(weighted, kPb4Features);
  EXPECT_EQ(per_kind[kPb4Deg3], 1000);
  EXPECT_EQ(per_kind[kPb4Deg2], 80);
  EXPECT_EQ(per_kind[kPb4Deg1], 4);
  EXPECT_EQ(per_kind[kPb4Const], 1);
  EXPECT_EQ(per_kind[kPb4Null], kPb4ListHalves - kPb4RealHalves);
  EXPECT_EQ(runs, 561);
  EXPECT_EQ(kPb4Rows, 8688);
  EXPECT_EQ(2 * kPb4Blocks, kPb4RealHalves + 1);
  EXPECT_EQ(pb4_state_bytes(), 8704 * 40 * 2);  // 68 whole query-pass stages of 128 rows
  EXPECT_EQ(pb4_key_bytes(65), 2 * (32 * 72 + 32 * 64) * 2);  // 2 tiles of yT (144-byte rows) + yP
  EXPECT_EQ(pb4_value_bytes(64), 64 * 40 * 2);
}

ta::Problem shape_of(int64_t d, int64_t dv, int32_t G, int32_t P) {
  ta::Problem p;
  p.d = d;
  p.dv = dv;
  p.G = G;
  p.ds = d / G;
  p.dvs = dv / G;
  p.P = P;
  return p;
}

TEST(PrefixBlock4Plan, SelectionRule) {
  using ta::cuda::select_pass_kernels;
  constexpr int64_t kH100 = 232448, kA100 = 166912, kRtx4090 = 101376, kTuring = 65536;
  const int64_t need = ta::cuda::pb4_smem();
  EXPECT_EQ(need, 68096);
  ta_config c = tatest::test_config(4, 4);
  const ta::Problem node = shape_of(128, 128, 4, 4);  // the node's defaults
  for (int64_t optin : {kH100, kA100, kRtx4090, need}) {
    EXPECT_EQ(select_pass_kernels(node, c, optin), PassKernels::kPrefixBlock4) << optin;
  }
  EXPECT_EQ(select_pass_kernels(node, c, kTuring), PassKernels::kGeneric);
  EXPECT_EQ(select_pass_kernels(node, c, need - 1), PassKernels::kGeneric);
  EXPECT_EQ(select_pass_kernels(node, c, 0), PassKernels::kGeneric);
  EXPECT_EQ(select_pass_kernels(shape_of(64, 64, 2, 4), c, kH100), PassKernels::kPrefixBlock4);
  EXPECT_EQ(select_pass_kernels(shape_of(32, 32, 1, 4), c, kH100), PassKernels::kPrefixBlock4);
  EXPECT_EQ(select_pass_kernels(shape_of(256, 256, 8, 4), c, kH100), PassKernels::kPrefixBlock4);
  EXPECT_EQ(select_pass_kernels(shape_of(128, 64, 4, 4), c, kH100), PassKernels::kGeneric);   // dv != d
  EXPECT_EQ(select_pass_kernels(shape_of(64, 32, 1, 4), c, kH100), PassKernels::kGeneric);    // d != dv
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 2, 4), c, kH100), PassKernels::kGeneric);  // slices of 64
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 4, 5), c, kH100), PassKernels::kGeneric);  // P = 5
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 4, 3), c, kH100), PassKernels::kGeneric);  // P = 3, 32-wide
  // The P = 3 rule is untouched.
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 1, 3), c, kH100), PassKernels::kPrefixBlock);
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 1, 3), c, kRtx4090), PassKernels::kPrefixBlockSmall);
  // Hopper with sm_90a code: the wgmma kernels when their 76.5 KiB fit.
  const int64_t wg = ta::cuda::pb4_wg_smem();
  EXPECT_EQ(wg, 78368);
  EXPECT_EQ(select_pass_kernels(node, c, kH100, true), PassKernels::kPrefixBlock4Wg);
  EXPECT_EQ(select_pass_kernels(node, c, wg, true), PassKernels::kPrefixBlock4Wg);
  EXPECT_EQ(select_pass_kernels(node, c, wg - 1, true), PassKernels::kPrefixBlock4);
  EXPECT_EQ(select_pass_kernels(node, c, need - 1, true), PassKernels::kGeneric);
  c.force_fp32 = 1;
  EXPECT_EQ(select_pass_kernels(node, c, kH100), PassKernels::kGeneric);
  EXPECT_EQ(select_pass_kernels(node, c, kH100, true), PassKernels::kGeneric);
  EXPECT_STREQ(ta::cuda::pass_kernels_name(PassKernels::kPrefixBlock4), "prefix_block4");
  EXPECT_STREQ(ta::cuda::pass_kernels_name(PassKernels::kPrefixBlock4Wg), "prefix_block4_wgmma");
}

float bf16(double v) { return ta::bf16_to_float(ta::float_to_bf16(static_cast<float>(v))); }

// One unit through the kernels' arithmetic on the host: coordinates bf16(q * qfac) and
// bf16(k * kfac), prefixes bf16(x_a x_b), features bf16(prefix x_c), values bf16, the state
// rows bf16(w * S) with z = bf16 hi + lo, fp64 sums in place of the fp32 accumulators. The
// fp64 Taylor attention on the same inputs is the reference.
struct EmulatedError {
  double vs_fp64, den_vs_fp64;
};
EmulatedError emulate_unit(int64_t Nq, int64_t Nk, double scale, uint64_t seed) {
  using namespace ta::cuda;
  tatest::Rng rng(seed);
  auto fill = [&](int64_t n, int64_t w) {
    std::vector<float> t(static_cast<size_t>(n * w));
    for (float& e : t) e = bf16(rng.normal());  // bf16 inputs, N(0, 1)
    return t;
  };
  const std::vector<float> q = fill(Nq, 32), k = fill(Nk, 32), v = fill(Nk, 32);
  const double root = std::sqrt(std::fabs(scale));
  const Pb4HalfList list = pb4_half_list();
  auto coords = [](const float* row, double f) {
    std::vector<float> x(40, 0.0f);
    for (int c = 0; c < 32; ++c) x[static_cast<size_t>(c)] = bf16(row[c] * static_cast<float>(f));
    x[32] = 1.0f;
    return x;
  };
  auto feat = [&](uint32_t d, int i, const std::vector<float>& x) {
    const float pre =
        bf16(static_cast<double>(x[static_cast<size_t>(pb4_col_a(d))]) * x[static_cast<size_t>(pb4_col_b(d))]);
    return bf16(static_cast<double>(pre) * x[static_cast<size_t>(8 * pb4_cb(d) + i)]);
  };
  std::vector<double> S(static_cast<size_t>(kPb4Rows) * 33, 0.0);
  for (int64_t j = 0; j < Nk; ++j) {
    const std::vector<float> y = coords(&k[static_cast<size_t>(j * 32)], root);
    for (int r = 0; r < kPb4Rows; ++r) {
      const double f = feat(list.d[r / 8], r % 8, y);
      if (f == 0.0) continue;
      double* row = &S[static_cast<size_t>(r) * 33];
      for (int c = 0; c < 32; ++c) row[c] += f * v[static_cast<size_t>(j * 32 + c)];
      row[32] += f;
    }
  }
  std::vector<float> Sb(static_cast<size_t>(kPb4Rows) * 33);
  for (int r = 0; r < kPb4Rows; ++r) {
    const double w = pb4_weight(list.d[r / 8], r % 8);
    for (int c = 0; c < 32; ++c) Sb[static_cast<size_t>(r) * 33 + c] = bf16(w * S[static_cast<size_t>(r) * 33 + c]);
    const float z = static_cast<float>(w * S[static_cast<size_t>(r) * 33 + 32]);
    const float hi = bf16(z);
    Sb[static_cast<size_t>(r) * 33 + 32] = hi + bf16(z - hi);
  }
  double err2 = 0, ref2 = 0, den_err = 0;
  for (int64_t i = 0; i < Nq; ++i) {
    const std::vector<float> x = coords(&q[static_cast<size_t>(i * 32)], scale < 0 ? -root : root);
    std::vector<double> acc(33, 0.0);
    for (int r = 0; r < kPb4Rows; ++r) {
      const double f = feat(list.d[r / 8], r % 8, x);
      if (f == 0.0) continue;
      for (int c = 0; c < 33; ++c) acc[static_cast<size_t>(c)] += f * Sb[static_cast<size_t>(r) * 33 + c];
    }
    std::vector<double> ref(32, 0.0);
    double den = 0;
    for (int64_t j = 0; j < Nk; ++j) {
      double s = 0;
      for (int c = 0; c < 32; ++c)
        s += static_cast<double>(q[static_cast<size_t>(i * 32 + c)]) * k[static_cast<size_t>(j * 32 + c)];
      s *= scale;
      const double w = 1 + s + s * s / 2 + s * s * s / 6;
      den += w;
      for (int c = 0; c < 32; ++c) ref[static_cast<size_t>(c)] += w * v[static_cast<size_t>(j * 32 + c)];
    }
    den_err = std::max(den_err, std::fabs(acc[32] - den) / std::fabs(den));
    for (int c = 0; c < 32; ++c) {
      const double o = acc[static_cast<size_t>(c)] / acc[32], o_ref = ref[static_cast<size_t>(c)] / den;
      err2 += (o - o_ref) * (o - o_ref);
      ref2 += o_ref * o_ref;
    }
  }
  return {std::sqrt(err2 / ref2), den_err};
}

// The rounding model behind the GPU tolerances below. Per feature the kernels round each
// coordinate once (u = 2^-9 relative), a degree-3 prefix and feature once each: |relative
// error| <= 3u + 2u = 10u ~ 2e-2 per side in the worst case, plus u for the state row; the
// output is a ratio of sums of such terms with independent rounding signs, so its relative
// L2 error is about u (measured here: 1.9e-3 over N = 257 keys for scores of std 0.5, the
// tests' inputs, either sign; the P = 3 path measured 2.9e-3 on the GPU). Denominators: sums
// of terms of one sign mostly, at most 6.6e-4 relative per row. The GPU adds only the fp32
// accumulation order (and the output's rounding).
TEST(PrefixBlock4Plan, EmulatedRoundingWithinTolerance_N257_d32) {
  // d = 32 slices: scale = 32^-1/2 x 0.5 gives scores of std 0.5 for N(0, 1) inputs.
  const double scale = 0.5 / std::sqrt(32.0);
  for (double sgn : {1.0, -1.0}) {
    const EmulatedError e = emulate_unit(64, 257, sgn * scale, 4100);
    std::printf("emulated P = 4 path (scale %+.3f): rel L2 vs fp64 %.3e, max den rel err %.3e\n", sgn * scale,
                e.vs_fp64, e.den_vs_fp64);
    EXPECT_LT(e.vs_fp64, 4e-3);
    EXPECT_LT(e.den_vs_fp64, 2e-3);
  }
}

// ---- GPU ------------------------------------------------------------------------------------

// Denominators: <= 6.6e-4 relative per row in the model; 1e-2 leaves room for the fp32
// accumulation over 10^3 to 10^4 keys.
constexpr double kDenTol = 1e-2;

// The P = 4 kernels the device runs: wgmma on an H100 / H200 with sm_90a code, unless a test
// cap (mma = true: the mma.sync kernels' shared memory) keeps it to mma.sync.
PassKernels device_pb4(bool mma = false) {
  return !mma && ta::cuda::device_has_wgmma(0) ? PassKernels::kPrefixBlock4Wg : PassKernels::kPrefixBlock4;
}
int64_t pb4_cap(bool mma) { return mma ? ta::cuda::pb4_smem() : -1; }
const char* pb4_shape(bool mma) { return mma ? "mma" : "device"; }

void expect_pb4(const Outcome& o, bool mma = false) {
  EXPECT_EQ(o.kernels, device_pb4(mma)) << "ran " << ta::cuda::pass_kernels_name(o.kernels);
}

// ---- GPU vs CPU engine over shapes, dtypes, views, masks -----------------------------------

// Both kernel sets on a wgmma card: the device's choice, and mma.sync through the test cap.
class CudaFastPath4 : public ::testing::TestWithParam<std::tuple<Case, bool>> {};

TEST_P(CudaFastPath4, MatchesCpuEngine) {
  SKIP_WITHOUT_GPU();
  const auto [spec, mma] = GetParam();
  auto call = make_call(spec, 900 + static_cast<uint64_t>(spec.Nq * 3 + spec.Nk + spec.d));
  SmemCap cap(pb4_cap(mma));
  const Outcome g = run_gpu(*call, call->cfg);
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  expect_pb4(g, mma);
  const std::vector<double> got = call->out_gpu.dense(), cpu = call->out_cpu.dense();
  expect_finite(got);
  EXPECT_LT(tatest::rel_l2(got, cpu), cpu_tolerance(spec.dtype));
  EXPECT_EQ(g.stats.denom_count, c.stats.denom_count);
  EXPECT_EQ(g.stats.denom_le_eps, 0);
  EXPECT_EQ(g.stats.denom_non_finite, 0);
  EXPECT_NEAR(g.stats.denom_min, c.stats.denom_min, kDenTol * std::fabs(c.stats.denom_min));
  EXPECT_NEAR(g.stats.denom_max, c.stats.denom_max, kDenTol * std::fabs(c.stats.denom_max));
  EXPECT_NEAR(g.stats.denom_mean, c.stats.denom_mean, kDenTol * std::fabs(c.stats.denom_mean));
  // The probe sampled the same rows; the quality check compared the same rows.
  EXPECT_EQ(g.stats.probe_ran, 1);
  EXPECT_EQ(g.stats.probe_samples, c.stats.probe_samples);
  EXPECT_NEAR(g.stats.probe_denom_min, c.stats.probe_denom_min, kDenTol * std::fabs(c.stats.probe_denom_min));
  EXPECT_EQ(g.stats.quality_vs_original.samples, c.stats.quality_vs_original.samples);
  EXPECT_NEAR(g.stats.quality_vs_original.rel_l2, c.stats.quality_vs_original.rel_l2,
              0.05 * c.stats.quality_vs_original.rel_l2 + 0.03);
  EXPECT_NEAR(g.stats.quality_truncation.rel_l2, c.stats.quality_truncation.rel_l2,
              0.05 * c.stats.quality_truncation.rel_l2 + 0.03);
  EXPECT_GT(g.stats.time_key_pass_ms, 0.0);
  EXPECT_GT(g.stats.time_query_pass_ms, 0.0);
}

// The node's defaults: P = 4 on d = dv = 128 in G = 4 slices of 32.
Case case4(int64_t B, int64_t H, int64_t Nq, int64_t Nk, ta_dtype dt) { return make_case(B, H, Nq, Nk, dt, 4, 4); }

std::vector<Case> fast_cases() {
  std::vector<Case> v;
  // Token counts that are not multiples of the key tile (64) or the query tile (256).
  for (int64_t n : {1, 63, 257, 1025}) v.push_back(case4(1, 1, n, n, TA_DTYPE_BF16));
  Case c = case4(1, 2, 97, 97, TA_DTYPE_F16);
  v.push_back(c);
  c = case4(2, 3, 300, 300, TA_DTYPE_F16);  // B, H > 1 with a per-batch key mask, [B,N,H,D] views
  c.masked = true;
  c.view = View::kBNHD;
  v.push_back(c);
  c = case4(2, 2, 257, 257, TA_DTYPE_F32);  // f32, normalised, padded rows (scalar loads)
  c.normalize = true;
  c.view = View::kPadded;
  v.push_back(c);
  c = case4(1, 2, 200, 517, TA_DTYPE_BF16);  // cross attention, negative scale (the query side's sign)
  c.scale_mul = -0.5;
  v.push_back(c);
  c = case4(1, 1, 600, 70, TA_DTYPE_BF16);  // cross attention, more queries than keys (3 query tiles)
  c.scale_mul = 0.8;
  v.push_back(c);
  c = case4(2, 1, 130, 130, TA_DTYPE_BF16);  // masked, normalised, bf16
  c.masked = true;
  c.normalize = true;
  v.push_back(c);
  c = case4(1, 2, 130, 130, TA_DTYPE_BF16);  // two slices of 32 per head (d = 64, G = 2)
  c.d = c.dv = 64;
  c.G = 2;
  c.view = View::kBNHD;
  v.push_back(c);
  c = case4(2, 2, 129, 129, TA_DTYPE_F32);  // one slice per head (d = 32, G = 1)
  c.d = c.dv = 32;
  c.G = 1;
  v.push_back(c);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaFastPath4,
                         ::testing::Combine(::testing::ValuesIn(fast_cases()), ::testing::Bool()),
                         [](const auto& info) {
                           return case_name(std::get<0>(info.param)) + "_" + pb4_shape(std::get<1>(info.param));
                         });

// ---- accuracy against fp64, and the generic kernels on the same call -----------------------

// Against the fp64 quadratic Taylor reference on the bf16 inputs: the rounding model's
// 1.9e-3 with 5x headroom (the P = 3 path's bound). The generic kernels on the same call (forced through the test cap)
// land near it and near the fast path, and their output is not bitwise the fast path's.
TEST(CudaFastPath4Accuracy, Fp64ReferenceAndGenericKernels_B1_H2_N1025_d128_G4_bf16) {
  SKIP_WITHOUT_GPU();
  Case s = case4(1, 2, 1025, 1025, TA_DTYPE_BF16);
  auto call = make_call(s, 1811);
  const Outcome fast = run_gpu(*call, call->cfg);
  ASSERT_EQ(fast.status, TA_OK) << fast.message;
  expect_pb4(fast);
  const std::vector<double> got_fast = call->out_gpu.dense();
  const std::vector<uint8_t> bits_fast = call->out_gpu.element_bytes();
  Outcome generic;
  {
    SmemCap cap(0);
    generic = run_gpu(*call, call->cfg);
  }
  ASSERT_EQ(generic.status, TA_OK) << generic.message;
  EXPECT_EQ(generic.kernels, PassKernels::kGeneric);
  const std::vector<double> got_generic = call->out_gpu.dense();
  EXPECT_NE(call->out_gpu.element_bytes(), bits_fast);
  EXPECT_LT(tatest::rel_l2(got_fast, got_generic), 2e-2);
  EXPECT_NEAR(fast.stats.denom_mean, generic.stats.denom_mean, kDenTol * std::fabs(generic.stats.denom_mean));

  TestTensor q(TA_DTYPE_F64, {1, 2, 1025, 128}), k(TA_DTYPE_F64, {1, 2, 1025, 128}), v(TA_DTYPE_F64, {1, 2, 1025, 128}),
      out(TA_DTYPE_F64, {1, 2, 1025, 128});
  q.set_dense(call->q.dense());
  k.set_dense(call->k.dense());
  v.set_dense(call->v.dense());
  ta_attention_args a{q.ptr(), k.ptr(), v.ptr(), nullptr, out.ptr(), nullptr};
  ASSERT_EQ(ta_reference_attention(&a, &call->cfg, TA_REFERENCE_TAYLOR_QUADRATIC), TA_OK) << ta_last_error_message();
  const std::vector<double> ref = out.dense();
  EXPECT_LT(tatest::rel_l2(got_fast, ref), 1e-2);
  EXPECT_LT(tatest::rel_l2(got_generic, ref), 2e-2);
}

// ---- early probe -------------------------------------------------------------------------------

// Query rows with very different norms (so very different denominators): the probe's
// minimum depends on which rows of which units it sampled. It must be the CPU engine's,
// computed from the state's z columns after the key pass.
TEST(CudaFastPath4Probe, SampledDenominatorsMatchCpu_B2_H2_N700_d128_G4) {
  SKIP_WITHOUT_GPU();
  Case s = case4(2, 2, 700, 700, TA_DTYPE_F32);
  auto call = make_call(s, 2200);
  std::vector<double> q = call->q.dense();
  for (size_t i = 0; i < q.size(); ++i) {
    const size_t row = i / 128;  // (b, h, n) in row-major order
    q[i] *= 0.5 + 0.35 * static_cast<double>((row * 7) % 11);
  }
  call->q.set_dense(q);
  call->dq->upload(call->q);
  call->cfg.probe_samples = 5;
  for (uint64_t seed : {1u, 2u, 3u}) {
    call->cfg.seed = seed;
    const Outcome g = run_gpu(*call, call->cfg);
    const Outcome c = run_cpu(*call, call->cfg);
    ASSERT_EQ(g.status, TA_OK) << g.message;
    ASSERT_EQ(c.status, TA_OK) << c.message;
    expect_pb4(g);
    EXPECT_EQ(g.stats.probe_ran, 1);
    EXPECT_EQ(g.stats.probe_samples, 5);
    EXPECT_NEAR(g.stats.probe_denom_min, c.stats.probe_denom_min, 5e-3 * std::fabs(c.stats.probe_denom_min))
        << "seed " << seed;
    EXPECT_GE(g.stats.probe_denom_min, g.stats.denom_min * (1 - 5e-3)) << "the sampled rows are among all rows";
  }
}

// ---- guards: invalid, too small (clamped or declined), non-finite outputs ----------------------

TEST(CudaFastPath4Guards, RuntimeFallbacksAndClamp_B2_H1_N200_d128_G4) {
  SKIP_WITHOUT_GPU();
  Case s = case4(2, 1, 200, 200, TA_DTYPE_F32);
  s.masked = true;
  auto call = make_call(s, 2300);
  ta_config cfg = call->cfg;

  // Every key of batch entry 1 masked: its denominators are 0 <= eps.
  std::vector<uint8_t> keep(400, 1);
  for (int j = 200; j < 400; ++j) keep[static_cast<size_t>(j)] = 0;
  tatest::Shape shape;
  shape.B = 2, shape.H = 1, shape.Nq = 200, shape.Nk = 200, shape.d = 128, shape.dv = 128;
  call->mask = tatest::make_mask(tatest::MaskForm::B_Nk, TA_DTYPE_BOOL, shape, keep);
  call->dmask = std::make_unique<DeviceCopy>(*call->mask);
  for (int probe : {1, 0}) {
    cfg.early_probe = probe;
    const Outcome g = run_gpu(*call, cfg);
    expect_pb4(g);
    EXPECT_EQ(g.status, TA_FALLBACK);
    EXPECT_EQ(g.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << "probe " << probe;
    EXPECT_EQ(g.stats.probe_ran, probe);
  }
  // Clamped instead: the masked entry's rows are 0 / eps = 0, as on the CPU (4 slices each).
  cfg.fallback_on_negative = 0;
  {
    const Outcome g = run_gpu(*call, cfg);
    const Outcome c = run_cpu(*call, cfg);
    ASSERT_EQ(g.status, TA_OK) << g.message;
    ASSERT_EQ(c.status, TA_OK) << c.message;
    EXPECT_EQ(g.stats.denom_le_eps, 4 * 200);
    EXPECT_EQ(g.stats.denom_le_eps, c.stats.denom_le_eps);
    EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), cpu_tolerance(s.dtype));
  }
  // A threshold above every denominator: every row clamped (lanes t != 0 included).
  cfg.eps = 1e9;
  {
    const Outcome g = run_gpu(*call, cfg);
    const Outcome c = run_cpu(*call, cfg);
    ASSERT_EQ(g.status, TA_OK) << g.message;
    ASSERT_EQ(c.status, TA_OK) << c.message;
    EXPECT_EQ(g.stats.denom_le_eps, 4 * 400);
    EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), cpu_tolerance(s.dtype));
  }
  cfg = call->cfg;

  // NaN in one attended key: every denominator of that slice of batch entry 0 is NaN.
  call->mask.reset();
  call->dmask.reset();
  std::vector<double> k = call->k.dense();
  k[5 * 128 + 7] = std::numeric_limits<double>::quiet_NaN();
  call->k.set_dense(k);
  call->dk->upload(call->k);
  for (int probe : {1, 0}) {
    cfg.early_probe = probe;
    const Outcome g = run_gpu(*call, cfg);
    EXPECT_EQ(g.status, TA_FALLBACK);
    EXPECT_EQ(g.stats.fallback_reason, TA_REASON_DENOMINATOR_INVALID) << "probe " << probe;
  }
  k[5 * 128 + 7] = 0.25;
  call->k.set_dense(k);
  call->dk->upload(call->k);

  // NaN in one value: the denominators are fine, the outputs are not.
  std::vector<double> v = call->v.dense();
  v[9 * 128 + 3] = std::numeric_limits<double>::quiet_NaN();
  call->v.set_dense(v);
  call->dv->upload(call->v);
  cfg.early_probe = 1;
  {
    const Outcome g = run_gpu(*call, cfg);
    EXPECT_EQ(g.status, TA_FALLBACK);
    EXPECT_EQ(g.stats.fallback_reason, TA_REASON_NON_FINITE_OUTPUT);
  }
  // ... unless that key is masked: masked keys' value rows are zeroed, so it adds nothing.
  std::vector<uint8_t> keep_all_but_9(400, 1);
  keep_all_but_9[9] = 0;
  call->mask = tatest::make_mask(tatest::MaskForm::B_Nk, TA_DTYPE_BOOL, shape, keep_all_but_9);
  call->dmask = std::make_unique<DeviceCopy>(*call->mask);
  {
    const Outcome g = run_gpu(*call, cfg);
    ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
    expect_pb4(g);
    expect_finite(call->out_gpu.dense());
  }
  // The GPU stays usable: a clean call works and matches the CPU.
  v[9 * 128 + 3] = 0.5;
  call->v.set_dense(v);
  call->dv->upload(call->v);
  const Outcome g = run_gpu(*call, cfg);
  const Outcome c = run_cpu(*call, cfg);
  ASSERT_EQ(g.status, TA_OK) << g.message;
  ASSERT_EQ(c.status, TA_OK) << c.message;
  expect_pb4(g);
  EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), cpu_tolerance(s.dtype));
}

// ---- the local-exact hybrid on the fast path --------------------------------------------------

class CudaFastPath4Hybrid : public ::testing::TestWithParam<std::tuple<ta_dtype, bool>> {};

// Text + grid layout, radius 2: the query pass leaves num / den and den, the window kernel
// finishes the rows. Tolerance as the P = 3 path's hybrid test: the plain fast path's 2e-2
// (measured here: 2.5e-3 to 3.4e-3 on the H100 at 933f9a3), and the Taylor numerator passes
// through a 16-bit output once more (8 unit roundoffs).
TEST_P(CudaFastPath4Hybrid, MatchesCpuEngine_t40_12x30_r2_B2_H2_d128_G4) {
  SKIP_WITHOUT_GPU();
  const auto [dtype, mma] = GetParam();
  SmemCap cap(pb4_cap(mma));
  Case s = case4(2, 2, 40 + 12 * 30, 40 + 12 * 30, dtype);
  s.masked = true;
  auto call = make_call(s, 2400 + static_cast<uint64_t>(dtype));
  ta_token_layout layout{};
  layout.text_tokens = 40;
  layout.num_grids = 1;
  layout.grid_height[0] = 12;
  layout.grid_width[0] = 30;
  call->layout = layout;
  call->cfg.window_radius = 2;
  call->cfg.window_text_keys = 1;
  call->cfg.window_text_queries = 0;
  const Outcome g = run_gpu(*call, call->cfg);
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  expect_pb4(g, mma);
  const std::vector<double> got = call->out_gpu.dense(), cpu = call->out_cpu.dense();
  expect_finite(got);
  const double u = dtype == TA_DTYPE_BF16 ? std::ldexp(1.0, -9) : dtype == TA_DTYPE_F16 ? std::ldexp(1.0, -12) : 0.0;
  EXPECT_LT(tatest::rel_l2(got, cpu), 2e-2 + 8 * u);
  EXPECT_EQ(g.stats.window_active, 1);
  EXPECT_EQ(g.stats.window_exact_pairs, c.stats.window_exact_pairs);
  EXPECT_EQ(g.stats.denom_count, c.stats.denom_count);
  EXPECT_NEAR(g.stats.denom_min, c.stats.denom_min, 3e-2 * std::fabs(c.stats.denom_min));
  EXPECT_NEAR(g.stats.denom_max, c.stats.denom_max, 3e-2 * std::fabs(c.stats.denom_max));
  EXPECT_NEAR(g.stats.denom_mean, c.stats.denom_mean, 3e-2 * std::fabs(c.stats.denom_mean));
  EXPECT_EQ(g.stats.probe_ran, 1);
  EXPECT_NEAR(g.stats.probe_denom_min, c.stats.probe_denom_min, 3e-2 * std::fabs(c.stats.probe_denom_min));
  EXPECT_GT(g.stats.time_window_ms, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaFastPath4Hybrid,
                         ::testing::Combine(::testing::Values(TA_DTYPE_BF16, TA_DTYPE_F16, TA_DTYPE_F32),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(ta_dtype_name(std::get<0>(info.param))) + "_" +
                                  pb4_shape(std::get<1>(info.param));
                         });

// ---- workspace, caller stream, determinism -----------------------------------------------------

// The plan: S_pad (bf16, 8,688 x 40) per unit plus the prepared keys and value rows; a
// caller workspace of exactly that size works, one byte less is refused; two runs give the
// same bits (no atomics on this path).
TEST(CudaFastPath4Workspace, PlanCallerWorkspaceDeterminism_B1_H2_N4097_d128_G4) {
  SKIP_WITHOUT_GPU();
  Case s = case4(1, 2, 4097, 4097, TA_DTYPE_BF16);
  auto call = make_call(s, 2500);
  const ta_attention_args a = call->gpu_args();
  constexpr int64_t kUnits = 2 * 4;  // H x G
  // The call-size bound (batch_budget.h): 8 fp32 states of 6,545 x 33 plus the output, 9.0
  // MB, hold 5 units of 1.56 MB: two batches of 4.
  const int64_t upb = ta::cuda::balanced_units_per_batch(
      kUnits, ta::cuda::pb4_unit_bytes(4097), ta::cuda::call_reference_bytes(kUnits, 6545, 32, 1, 2, 4097, 128, 2));
  ASSERT_EQ(upb, 4);
  ta_memory_estimate est{};
  ASSERT_EQ(ta_attention_memory_estimate(&a, &call->cfg, &est), TA_OK) << ta_last_error_message();
  EXPECT_EQ(est.state_bytes, upb * ta::cuda::pb4_state_bytes());
  EXPECT_GE(est.workspace_bytes, upb * ta::cuda::pb4_unit_bytes(4097));
  EXPECT_LT(est.workspace_bytes, upb * ta::cuda::pb4_unit_bytes(4097) + (int64_t{1} << 20));
  {
    SmemCap cap(0);
    ta_memory_estimate generic{};
    ASSERT_EQ(ta_attention_memory_estimate(&a, &call->cfg, &generic), TA_OK);
    EXPECT_EQ(generic.state_bytes, kUnits * int64_t{6545} * 40 * 4);
  }
  size_t bytes = 0;
  ASSERT_EQ(ta_attention_workspace_size(&a, &call->cfg, &bytes), TA_OK);
  EXPECT_EQ(static_cast<int64_t>(bytes), est.workspace_bytes);
  void* ws = nullptr;
  ASSERT_EQ(cudaMalloc(&ws, bytes), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(ta_attention_run(&a, &call->cfg, ws, bytes, stream, nullptr), TA_OK) << ta_last_error_message();
  EXPECT_EQ(ta::cuda::last_pass_kernels(), device_pb4());
  call->dout->download(call->out_gpu);
  const std::vector<uint8_t> first = call->out_gpu.element_bytes();
  const Outcome again = run_gpu(*call, call->cfg);
  ASSERT_EQ(again.status, TA_OK) << again.message;
  expect_pb4(again);
  EXPECT_EQ(call->out_gpu.element_bytes(), first) << "library workspace vs caller workspace, or run to run";
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), cpu_tolerance(s.dtype));
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &call->cfg, ws, bytes - 1, stream, &st), TA_ERR_WORKSPACE_TOO_SMALL);
  cudaStreamDestroy(stream);
  cudaFree(ws);
}

// ---- the key pass staged by bulk copies -------------------------------------------------------

// pb4_key_pass_bulk (the wgmma path's key pass: thread 0 stages each prepared tile by bulk
// copies, mbarriers instead of the block barrier) runs pb4_key_tile, the cp.async kernel's
// mma in its order, on the same prepared tiles, so every output bit must match it: a partial
// last tile, one tile, more tiles than ring stages (the ring wraps and refills), masks,
// [B, N, H, D] views, cross attention, f16.
class CudaFastPath4KeyBulk : public ::testing::TestWithParam<Case> {};

TEST_P(CudaFastPath4KeyBulk, SameBitsAsCpAsyncKernel) {
  SKIP_WITHOUT_GPU();
  if (!ta::cuda::device_has_wgmma(0)) GTEST_SKIP() << "the bulk-copy key pass runs on the wgmma path";
  const Case& spec = GetParam();
  auto call = make_call(spec, 2700 + static_cast<uint64_t>(spec.Nk));
  auto run = [&](bool allowed) {
    KeyTma bulk(allowed);
    const Outcome o = run_gpu(*call, call->cfg);
    EXPECT_EQ(o.status, TA_OK) << o.message;
    EXPECT_EQ(o.kernels, PassKernels::kPrefixBlock4Wg);
    EXPECT_EQ(ta::cuda::last_key_pass_tma(), allowed);
    return call->out_gpu.element_bytes();
  };
  const std::vector<uint8_t> plain = run(false);
  const std::vector<double> got = call->out_gpu.dense();
  expect_finite(got);
  EXPECT_EQ(run(true), plain);
  EXPECT_EQ(run(true), plain) << "again";
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  EXPECT_LT(tatest::rel_l2(got, call->out_cpu.dense()), cpu_tolerance(spec.dtype));
}

std::vector<Case> bulk_cases() {
  std::vector<Case> v{case4(1, 1, 300, 4097, TA_DTYPE_BF16), case4(2, 3, 129, 640, TA_DTYPE_BF16),
                      case4(1, 2, 64, 7000, TA_DTYPE_BF16)};
  Case c = case4(1, 2, 70, 33, TA_DTYPE_BF16);  // one partial tile
  c.view = View::kBNHD;
  v.push_back(c);
  c = case4(2, 2, 100, 700, TA_DTYPE_F16);  // masked, f16
  c.masked = true;
  v.push_back(c);
  c = case4(1, 2, 200, 1000, TA_DTYPE_BF16);  // [B, N, H, D], cross attention
  c.view = View::kBNHD;
  c.scale_mul = 0.7;
  v.push_back(c);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CudaFastPath4KeyBulk, ::testing::ValuesIn(bulk_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return case_name(i.param); });

// ---- unit batches ------------------------------------------------------------------------------

// 24 heads x 4 slices (Flux 4096^2's shape) sharing one set of q, k, v (zero head strides)
// over Nk = 66,048 keys: 15.0 MB of state and prepared keys per unit, so the batches hold 5
// units (batch_budget.h). Every head must give the same bits (the batches differ only in
// unit offsets).
TEST(CudaFastPath4Batches, UnitsInBatches_B1_H24_Nq80_Nk66048_d128_G4) {
  SKIP_WITHOUT_GPU();
  constexpr int64_t H = 24, Nq = 80, Nk = 66048;
  TestTensor q1(TA_DTYPE_BF16, {1, 1, Nq, 128}), k1(TA_DTYPE_BF16, {1, 1, Nk, 128}), v1(TA_DTYPE_BF16, {1, 1, Nk, 128});
  tatest::Rng rng(2600);
  q1.fill_normal(rng, 1.0);
  k1.fill_normal(rng, 1.0);
  v1.fill_normal(rng, 1.0);
  DeviceCopy dq(q1), dk(k1), dv(v1);
  for (DeviceCopy* t : {&dq, &dk, &dv}) {
    t->desc().shape[1] = H;
    t->desc().strides[1] = 0;
  }
  TestTensor out(TA_DTYPE_BF16, {1, H, Nq, 128});
  DeviceCopy dout(out);
  ta_config cfg = tatest::test_config(4, 4);
  cfg.scale_mul = 0.5;
  const ta_attention_args a{dq.ptr(), dk.ptr(), dv.ptr(), nullptr, dout.ptr(), nullptr};
  ta_memory_estimate est{};
  ASSERT_EQ(ta_attention_memory_estimate(&a, &cfg, &est), TA_OK) << ta_last_error_message();
  // The call-size bound (batch_budget.h): 96 fp32 states of 6,545 x 33 plus the output,
  // 83 MB, hold 5 units of 15.0 MB: 20 batches of at most 5.
  const int64_t reference = ta::cuda::call_reference_bytes(H * 4, 6545, 32, 1, H, Nq, 128, 2);
  const int64_t expected_upb = ta::cuda::balanced_units_per_batch(H * 4, ta::cuda::pb4_unit_bytes(Nk), reference);
  ASSERT_EQ(expected_upb, 5);
  EXPECT_EQ(est.state_bytes, expected_upb * ta::cuda::pb4_state_bytes());
  ta_stats st;
  ta_stats_init(&st);
  ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  EXPECT_EQ(ta::cuda::last_pass_kernels(), device_pb4());
  EXPECT_EQ(st.denom_count, H * 4 * Nq);
  dout.download(out);
  const std::vector<double> fast = out.dense();
  const size_t per_head = static_cast<size_t>(Nq * 128);
  for (int64_t h = 1; h < H; ++h) {
    ASSERT_TRUE(std::equal(fast.begin(), fast.begin() + static_cast<std::ptrdiff_t>(per_head),
                           fast.begin() + static_cast<std::ptrdiff_t>(h * static_cast<int64_t>(per_head))))
        << "head " << h << " differs from head 0";
  }
  const std::vector<double> head0(fast.begin(), fast.begin() + static_cast<std::ptrdiff_t>(per_head));
  expect_finite(head0);
}

}  // namespace
