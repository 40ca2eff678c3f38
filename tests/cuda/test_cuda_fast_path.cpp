// The prefix x block fast path of the CUDA backend (P = 3 on 128-wide slices;
// cuda/prefix_block_plan.h, kernels/pb_*.cuh). Host-only checks of the block list and the
// selection rule run everywhere; the GPU checks (skipped without a GPU) run both kernel
// shapes (the large one, and the one for 99 KB cards through the test cap on shared memory)
// against the CPU engine on awkward sizes, dtypes, views, masks, the hybrid, the probe, the
// guards and unit batches, and assert which kernels ran.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "common/ta_api_helpers.h"
#include "common/ta_cuda_copy.h"
#include "cuda/batch_budget.h"
#include "cuda/prefix_block_plan.h"
#include "fast_path_harness.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using ta::cuda::PassKernels;
using tatest::DeviceCopy;
using tatest::TestTensor;
using namespace tatest::fastpath;  // NOLINT(google-build-using-namespace): the shared harness

// ---- host only: the block list and the selection rule ------------------------------------

// Row i of block d evaluated at x (x[128] = 1, the DEG1 prefix), in fp64.
double feature(uint32_t d, int i, const std::vector<double>& x) {
  using namespace ta::cuda;
  switch (pb_kind(d)) {
    case kPbConst: return i == 0 ? 1.0 : 0.0;
    case kPbDeg1:
    case kPbDeg2: return x[static_cast<size_t>(pb_col(d))] * x[static_cast<size_t>(16 * pb_bb(d) + i)];
    default: return 0.0;
  }
}

// Independent of the compile-time completeness check: the weighted features of the list
// reproduce T_3(x.y) = 1 + x.y + (x.y)^2 / 2 in fp64 for random x, y.
TEST(PrefixBlockPlan, WeightedFeaturesGiveT3_d128) {
  using namespace ta::cuda;
  const PbBlockList list = pb_block_list();
  tatest::Rng rng(31);
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<double> x(129, 1.0), y(129, 1.0);
    double s = 0;
    for (int c = 0; c < 128; ++c) {
      x[static_cast<size_t>(c)] = 0.3 * rng.normal();
      y[static_cast<size_t>(c)] = 0.3 * rng.normal();
      s += x[static_cast<size_t>(c)] * y[static_cast<size_t>(c)];
    }
    double sum = 0;
    for (int blk = 0; blk < kPbListLen; ++blk) {
      for (int i = 0; i < 16; ++i) sum += pb_weight(list.d[blk], i) * feature(list.d[blk], i, x) * feature(list.d[blk], i, y);
    }
    const double want = 1.0 + s + 0.5 * s * s;
    EXPECT_NEAR(sum, want, 1e-12 * std::fabs(want)) << "trial " << trial;
  }
}

// Real blocks first (the query pass walks kPbBlocks of them), null blocks after, 8,385 rows
// with a weight, every weightless row below a DEG2 diagonal or in CONST.
TEST(PrefixBlockPlan, BlockListLayout) {
  using namespace ta::cuda;
  const PbBlockList list = pb_block_list();
  int weighted = 0;
  for (int blk = 0; blk < kPbListLen; ++blk) {
    const uint32_t d = list.d[blk];
    EXPECT_EQ(blk < kPbBlocks, pb_kind(d) != kPbNull) << "block " << blk;
    for (int i = 0; i < 16; ++i) {
      if (pb_weight(d, i) != 0.0f) {
        ++weighted;
      } else if (pb_kind(d) == kPbDeg2) {
        EXPECT_LT(16 * pb_bb(d) + i, pb_col(d)) << "block " << blk << " row " << i;
      } else {
        EXPECT_TRUE(pb_kind(d) == kPbConst || pb_kind(d) == kPbNull) << "block " << blk << " row " << i;
      }
    }
  }
  EXPECT_EQ(weighted, kPbFeatures);
  EXPECT_EQ(kPbRows, 9360);
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

TEST(PrefixBlockPlan, SelectionRule) {
  using ta::cuda::select_pass_kernels;
  constexpr int64_t kH100 = 232448, kA100 = 166912, kRtx4090 = 101376, kTuring = 65536;
  const int64_t large = ta::cuda::pb_smem(ta::cuda::kPbLarge), small = ta::cuda::pb_smem(ta::cuda::kPbSmall);
  ta_config c = tatest::test_config(3, 1);
  const ta::Problem full = shape_of(128, 128, 1, 3);
  EXPECT_EQ(select_pass_kernels(full, c, kH100), PassKernels::kPrefixBlock);
  EXPECT_EQ(select_pass_kernels(full, c, kA100), PassKernels::kPrefixBlock);
  EXPECT_EQ(select_pass_kernels(full, c, kRtx4090), PassKernels::kPrefixBlockSmall);
  EXPECT_EQ(select_pass_kernels(full, c, kTuring), PassKernels::kGeneric);
  // The thresholds are the kernels' shared memory, to the byte.
  EXPECT_EQ(large, 121856);
  EXPECT_EQ(small, 95744);
  EXPECT_EQ(select_pass_kernels(full, c, large), PassKernels::kPrefixBlock);
  EXPECT_EQ(select_pass_kernels(full, c, large - 1), PassKernels::kPrefixBlockSmall);
  EXPECT_EQ(select_pass_kernels(full, c, small), PassKernels::kPrefixBlockSmall);
  EXPECT_EQ(select_pass_kernels(full, c, small - 1), PassKernels::kGeneric);
  // Slices of 128 from wider heads qualify; anything else keeps the generic kernels.
  EXPECT_EQ(select_pass_kernels(shape_of(256, 256, 2, 3), c, kH100), PassKernels::kPrefixBlock);
  EXPECT_EQ(select_pass_kernels(shape_of(128, 64, 1, 3), c, kH100), PassKernels::kGeneric);   // dv != d
  EXPECT_EQ(select_pass_kernels(shape_of(64, 128, 1, 3), c, kH100), PassKernels::kGeneric);   // d != dv
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 2, 3), c, kH100), PassKernels::kGeneric);  // slices of 64
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 1, 4), c, kH100), PassKernels::kGeneric);
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 1, 2), c, kH100), PassKernels::kGeneric);
  // Hopper with sm_90a code: the wgmma kernels when their 136 KiB fit, else as before.
  const int64_t wg = ta::cuda::pb_wg_smem();
  EXPECT_EQ(wg, 139296);
  EXPECT_EQ(select_pass_kernels(full, c, kH100, true), PassKernels::kPrefixBlockWg);
  EXPECT_EQ(select_pass_kernels(full, c, wg, true), PassKernels::kPrefixBlockWg);
  EXPECT_EQ(select_pass_kernels(full, c, wg - 1, true), PassKernels::kPrefixBlock);
  EXPECT_EQ(select_pass_kernels(full, c, kRtx4090, true), PassKernels::kPrefixBlockSmall);
  EXPECT_EQ(select_pass_kernels(shape_of(256, 256, 2, 3), c, kH100, true), PassKernels::kPrefixBlockWg);
  EXPECT_EQ(select_pass_kernels(shape_of(128, 64, 1, 3), c, kH100, true), PassKernels::kGeneric);
  EXPECT_EQ(select_pass_kernels(shape_of(128, 128, 4, 4), c, kH100, true), PassKernels::kPrefixBlock4Wg);
  c.force_fp32 = 1;
  EXPECT_EQ(select_pass_kernels(full, c, kH100), PassKernels::kGeneric);
  EXPECT_EQ(select_pass_kernels(full, c, kH100, true), PassKernels::kGeneric);
}

// Batches: within min(1 GiB, the call's reference size), at least one unit, evened out.
TEST(BatchBudget, BoundedBalancedAtLeastOne) {
  using ta::cuda::balanced_units_per_batch;
  EXPECT_EQ(balanced_units_per_batch(24, 10, 1000), 24);           // everything fits
  EXPECT_EQ(balanced_units_per_batch(24, 100, 1300), 12);          // cap 13 -> 2 batches of 12, not 13 + 11
  EXPECT_EQ(balanced_units_per_batch(96, 14961408, 83400000), 5);  // P = 4, G = 4, Nk = 66048: cap 5, 20 batches
  EXPECT_EQ(balanced_units_per_batch(7, 1000, 10), 1);             // one unit even when it alone is over
  EXPECT_EQ(balanced_units_per_batch(100000, 1, int64_t{1} << 40), 50000);  // gridDim.y: 2 batches of 50,000
  for (int64_t units = 1; units <= 40; ++units) {
    for (int64_t cap = 1; cap <= 45; ++cap) {
      const int64_t upb = balanced_units_per_batch(units, 1000, cap * 1000);
      const int64_t batches = (units + upb - 1) / upb;
      ASSERT_LE(upb, std::max<int64_t>(1, std::min(cap, units))) << units << " " << cap;
      ASSERT_EQ(batches, (units + std::min(cap, units) - 1) / std::min(cap, units)) << "no extra batch";
      ASSERT_GE(upb * batches - units, 0);
      ASSERT_LT(upb * batches - units, batches) << "the batches differ by at most one unit";
    }
  }
  EXPECT_EQ(ta::cuda::call_reference_bytes(24, 8385, 128, 1, 24, 66048, 128, 2),
            int64_t{24} * 8385 * 129 * 4 + int64_t{24} * 66048 * 128 * 2);
}

// ---- GPU ------------------------------------------------------------------------------------

int64_t device_smem_optin() {
  int bytes = 0;
  EXPECT_EQ(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), cudaSuccess);
  return bytes;
}

// Which kernel shape a test asks for: the device's own choice (wgmma on an H100 / H200 with
// sm_90a code), the large mma.sync shape (below the wgmma kernels' shared memory), or the
// one for 99 KB cards (through the test cap; a card with less shared memory still runs what
// fits).
enum class Shape { kDevice, kMma, kSmall };
const char* shape_name(Shape s) { return s == Shape::kDevice ? "device" : s == Shape::kMma ? "mma" : "small"; }
void PrintTo(Shape s, std::ostream* os) { *os << shape_name(s); }
constexpr int64_t kSmallCap = 101376;
int64_t shape_cap(Shape s) {
  return s == Shape::kSmall ? kSmallCap : s == Shape::kMma ? ta::cuda::pb_smem(ta::cuda::kPbLarge) : -1;
}

// The kernels the selection should pick for this call under the shape's cap.
PassKernels expected_kernels(const ta::Problem& p, const ta_config& c, Shape s) {
  const int64_t optin = device_smem_optin(), cap = shape_cap(s);
  return ta::cuda::select_pass_kernels(p, c, cap >= 0 ? std::min(optin, cap) : optin, ta::cuda::device_has_wgmma(0));
}

ta::Problem problem_of(const Call& c) { return shape_of(c.spec.d, c.spec.dv, c.spec.G, c.spec.P); }

// ---- GPU vs CPU engine over shapes, dtypes, views, masks; both kernel shapes ---------------

class CudaFastPath : public ::testing::TestWithParam<std::tuple<Case, Shape>> {};

TEST_P(CudaFastPath, MatchesCpuEngine) {
  SKIP_WITHOUT_GPU();
  const auto [spec, shape] = GetParam();
  auto call = make_call(spec, 700 + static_cast<uint64_t>(spec.Nq * 3 + spec.Nk + spec.d));
  SmemCap cap(shape_cap(shape));
  const PassKernels want = expected_kernels(problem_of(*call), call->cfg, shape);
  const Outcome g = run_gpu(*call, call->cfg);
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  EXPECT_EQ(g.kernels, want) << "ran " << ta::cuda::pass_kernels_name(g.kernels) << ", expected "
                             << ta::cuda::pass_kernels_name(want);
  const std::vector<double> got = call->out_gpu.dense(), cpu = call->out_cpu.dense();
  expect_finite(got);
  EXPECT_LT(tatest::rel_l2(got, cpu), cpu_tolerance(spec.dtype));
  // Statistics describe the same denominators (z split hi + lo: ~fp32 denominators).
  const double den_tol = want == PassKernels::kGeneric ? 3e-2 : 1e-2;
  EXPECT_EQ(g.stats.denom_count, c.stats.denom_count);
  EXPECT_EQ(g.stats.denom_le_eps, 0);
  EXPECT_EQ(g.stats.denom_non_finite, 0);
  EXPECT_NEAR(g.stats.denom_min, c.stats.denom_min, den_tol * std::fabs(c.stats.denom_min));
  EXPECT_NEAR(g.stats.denom_max, c.stats.denom_max, den_tol * std::fabs(c.stats.denom_max));
  EXPECT_NEAR(g.stats.denom_mean, c.stats.denom_mean, den_tol * std::fabs(c.stats.denom_mean));
  // The probe sampled the same rows; the quality check compared the same rows.
  EXPECT_EQ(g.stats.probe_ran, 1);
  EXPECT_EQ(g.stats.probe_samples, c.stats.probe_samples);
  EXPECT_NEAR(g.stats.probe_denom_min, c.stats.probe_denom_min, den_tol * std::fabs(c.stats.probe_denom_min));
  EXPECT_EQ(g.stats.quality_vs_original.samples, c.stats.quality_vs_original.samples);
  EXPECT_NEAR(g.stats.quality_vs_original.rel_l2, c.stats.quality_vs_original.rel_l2,
              0.05 * c.stats.quality_vs_original.rel_l2 + 0.03);
  EXPECT_NEAR(g.stats.quality_truncation.rel_l2, c.stats.quality_truncation.rel_l2,
              0.05 * c.stats.quality_truncation.rel_l2 + 0.03);
  EXPECT_GT(g.stats.time_key_pass_ms, 0.0);
  EXPECT_GT(g.stats.time_query_pass_ms, 0.0);
}

std::vector<Case> fast_cases() {
  std::vector<Case> v;
  // Token counts that are not multiples of the key tile (64) or the query tile (256).
  for (int64_t n : {1, 63, 97, 1025, 4097}) v.push_back(make_case(1, 1, n, n, TA_DTYPE_BF16));
  Case c = make_case(1, 2, 97, 97, TA_DTYPE_F16);
  v.push_back(c);
  c = make_case(2, 3, 300, 300, TA_DTYPE_F16);  // B, H > 1 with a per-batch key mask, [B,N,H,D] views
  c.masked = true;
  c.view = View::kBNHD;
  v.push_back(c);
  c = make_case(2, 2, 257, 257, TA_DTYPE_F32);  // f32, normalised, padded rows (scalar loads)
  c.normalize = true;
  c.view = View::kPadded;
  v.push_back(c);
  c = make_case(1, 2, 200, 517, TA_DTYPE_BF16);  // cross attention, negative scale (the query side's sign)
  c.scale_mul = -0.5;
  v.push_back(c);
  c = make_case(2, 1, 130, 130, TA_DTYPE_BF16);  // masked, normalised, bf16
  c.masked = true;
  c.normalize = true;
  v.push_back(c);
  c = make_case(1, 2, 130, 130, TA_DTYPE_BF16);  // bf16 with padded rows: value rows prepared, not read directly
  c.view = View::kPadded;
  v.push_back(c);
  c = make_case(1, 2, 130, 130, TA_DTYPE_BF16);  // two slices of 128 per head (s > 0 offsets)
  c.d = c.dv = 256;
  c.G = 2;
  c.view = View::kBNHD;
  v.push_back(c);
  // Not the fast path: dv != d, and P = 2.
  c = make_case(1, 2, 97, 97, TA_DTYPE_BF16);
  c.dv = 64;
  v.push_back(c);
  c = make_case(1, 2, 97, 97, TA_DTYPE_BF16);
  c.P = 2;
  v.push_back(c);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaFastPath,
                         ::testing::Combine(::testing::ValuesIn(fast_cases()),
                                            ::testing::Values(Shape::kDevice, Shape::kMma, Shape::kSmall)),
                         [](const auto& info) {
                           return case_name(std::get<0>(info.param)) + "_" + shape_name(std::get<1>(info.param));
                         });

// ---- accuracy against fp64, and the generic kernels on the same call -----------------------

// Against the fp64 quadratic Taylor reference on the bf16 inputs: the harness's bound (1e-2
// relative L2, 2.9e-3 measured). The generic kernels on the same call land near it, and
// their output is not bitwise the fast path's (another set of kernels ran).
TEST(CudaFastPathAccuracy, Fp64ReferenceAndGenericKernels_B1_H2_N1025_d128_bf16) {
  SKIP_WITHOUT_GPU();
  Case s = make_case(1, 2, 1025, 1025, TA_DTYPE_BF16);
  auto call = make_call(s, 811);
  const Outcome fast = run_gpu(*call, call->cfg);
  ASSERT_EQ(fast.status, TA_OK) << fast.message;
  ASSERT_NE(fast.kernels, PassKernels::kGeneric) << "this device runs no fast path shape";
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
TEST(CudaFastPathProbe, SampledDenominatorsMatchCpu_B2_H2_N700_d128) {
  SKIP_WITHOUT_GPU();
  Case s = make_case(2, 2, 700, 700, TA_DTYPE_F32);
  auto call = make_call(s, 1200);
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
    EXPECT_NE(g.kernels, PassKernels::kGeneric);
    EXPECT_EQ(g.stats.probe_ran, 1);
    EXPECT_EQ(g.stats.probe_samples, 5);
    EXPECT_NEAR(g.stats.probe_denom_min, c.stats.probe_denom_min, 5e-3 * std::fabs(c.stats.probe_denom_min))
        << "seed " << seed;
    EXPECT_GE(g.stats.probe_denom_min, g.stats.denom_min * (1 - 5e-3)) << "the sampled rows are among all rows";
  }
}

// ---- guards: invalid, too small (clamped or declined), non-finite outputs ----------------------

TEST(CudaFastPathGuards, RuntimeFallbacksAndClamp_B2_H1_N200_d128) {
  SKIP_WITHOUT_GPU();
  Case s = make_case(2, 1, 200, 200, TA_DTYPE_F32);
  s.masked = true;
  auto call = make_call(s, 1300);
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
    EXPECT_NE(g.kernels, PassKernels::kGeneric);
    EXPECT_EQ(g.status, TA_FALLBACK);
    EXPECT_EQ(g.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << "probe " << probe;
    EXPECT_EQ(g.stats.probe_ran, probe);
  }
  // Clamped instead: the masked entry's rows are 0 / eps = 0, as on the CPU.
  cfg.fallback_on_negative = 0;
  {
    const Outcome g = run_gpu(*call, cfg);
    const Outcome c = run_cpu(*call, cfg);
    ASSERT_EQ(g.status, TA_OK) << g.message;
    ASSERT_EQ(c.status, TA_OK) << c.message;
    EXPECT_EQ(g.stats.denom_le_eps, 200);
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
    EXPECT_EQ(g.stats.denom_le_eps, 400);
    EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), cpu_tolerance(s.dtype));
  }
  cfg = call->cfg;

  // NaN in one attended key: every denominator of batch entry 0 is NaN.
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
  EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), cpu_tolerance(s.dtype));
}

// ---- the local-exact hybrid on the fast path --------------------------------------------------

class CudaFastPathHybrid : public ::testing::TestWithParam<std::tuple<ta_dtype, Shape>> {};

// Text + grid layout, radius 2: the query pass leaves num / den and den, the window kernel
// finishes the rows. Tolerance as test_cuda_window's for the tensor-core Taylor part: the
// plain fast path's 2e-2 (measured here: 2.5e-3 to 3.5e-3 on the H100 at 933f9a3), and the
// Taylor numerator passes through a 16-bit output once more (8 unit roundoffs).
TEST_P(CudaFastPathHybrid, MatchesCpuEngine_t40_12x30_r2_B2_H2_d128) {
  SKIP_WITHOUT_GPU();
  const auto [dtype, shape] = GetParam();
  Case s = make_case(2, 2, 40 + 12 * 30, 40 + 12 * 30, dtype);
  s.masked = true;
  auto call = make_call(s, 1400 + static_cast<uint64_t>(dtype));
  ta_token_layout layout{};
  layout.text_tokens = 40;
  layout.num_grids = 1;
  layout.grid_height[0] = 12;
  layout.grid_width[0] = 30;
  call->layout = layout;
  call->cfg.window_radius = 2;
  call->cfg.window_text_keys = 1;
  call->cfg.window_text_queries = 0;
  SmemCap cap(shape_cap(shape));
  const PassKernels want = expected_kernels(problem_of(*call), call->cfg, shape);
  const Outcome g = run_gpu(*call, call->cfg);
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  EXPECT_EQ(g.kernels, want);
  EXPECT_NE(g.kernels, PassKernels::kGeneric) << "this device runs no fast path shape";
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

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaFastPathHybrid,
                         ::testing::Combine(::testing::Values(TA_DTYPE_BF16, TA_DTYPE_F16, TA_DTYPE_F32),
                                            ::testing::Values(Shape::kDevice, Shape::kMma, Shape::kSmall)),
                         [](const auto& info) {
                           return std::string(ta_dtype_name(std::get<0>(info.param))) + "_" +
                                  shape_name(std::get<1>(info.param));
                         });

// ---- workspace, caller stream, determinism -----------------------------------------------------

// Value rows exist in the workspace only when the key pass cannot read v itself: bf16 with
// contiguous rows reads it directly (pb_direct_values), f16 and padded bf16 rows do not.
TEST(CudaFastPathWorkspace, ValueRowsOnlyWithoutDirectValues_B1_H2_N4097_d128) {
  SKIP_WITHOUT_GPU();
  for (auto [dt, view, direct] : {std::tuple{TA_DTYPE_BF16, View::kContiguous, true},
                                  std::tuple{TA_DTYPE_F16, View::kContiguous, false},
                                  std::tuple{TA_DTYPE_BF16, View::kPadded, false}}) {
    Case s = make_case(1, 2, 4097, 4097, dt);
    s.view = view;
    auto call = make_call(s, 1400);
    const ta_attention_args a = call->gpu_args();
    ta_memory_estimate est{};
    ASSERT_EQ(ta_attention_memory_estimate(&a, &call->cfg, &est), TA_OK) << ta_last_error_message();
    EXPECT_GE(est.workspace_bytes, 2 * ta::cuda::pb_unit_bytes(4097, direct)) << case_name(s);
    EXPECT_LT(est.workspace_bytes, 2 * ta::cuda::pb_unit_bytes(4097, direct) + (int64_t{1} << 20)) << case_name(s);
  }
}

// The key split rule on an H100-like table of concurrent clusters (132 SMs in GPCs of 16-18:
// clusters of s CTAs per wave for s = 1 .. 8).
TEST(PrefixBlockPlan, KeySplitRule) {
  using ta::cuda::pb_key_split;
  const int64_t h100[ta::cuda::kPbMaxKeySplit + 1] = {0, 132, 66, 42, 32, 24, 20, 16, 16};
  EXPECT_EQ(ta::cuda::kPbKeyCtas, 37);
  // 1 unit: 37 CTAs on 132 SMs; clusters of 3 (111 CTAs) are one wave at a third of the work.
  EXPECT_EQ(pb_key_split(1, 66048, h100), 3);
  EXPECT_EQ(pb_key_split(2, 66048, h100), 3);  // 74 clusters of 3: 2 waves, 2/3 of the time
  EXPECT_EQ(pb_key_split(3, 66048, h100), 1);  // 111 CTAs in one wave; 8 ways would gain 12.5% (< 20%)
  EXPECT_EQ(pb_key_split(4, 66048, h100), 2);  // 148 CTAs: 2 waves; 148 pairs: 3 waves of half the work
  EXPECT_EQ(pb_key_split(24, 66048, h100), 1);  // Flux: 888 CTAs
  // At least one token tile per share: 97 tokens are 2 tiles.
  EXPECT_EQ(pb_key_split(1, 97, h100), 2);
  EXPECT_EQ(pb_key_split(1, 64, h100), 1);
  // Sizes the device cannot run (0 clusters) are skipped; no SMs or no units: no split.
  const int64_t only2[ta::cuda::kPbMaxKeySplit + 1] = {0, 132, 66, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(pb_key_split(1, 66048, only2), 2);
  const int64_t none[ta::cuda::kPbMaxKeySplit + 1] = {};
  EXPECT_EQ(pb_key_split(1, 66048, none), 1);
  EXPECT_EQ(pb_key_split(0, 66048, h100), 1);
}

// The key split (clusters sharing a CTA's state rows, rank 0 summing through distributed
// shared memory) against the same call unsplit: the same sums in another order, so the
// state may differ in the last bf16 bit of a few entries; and run to run the same bits
// (the reduction is in rank order, no atomics).
TEST(CudaFastPathKeySplit, MatchesUnsplitAndIsDeterministic_B1_H1_N4097_d128) {
  SKIP_WITHOUT_GPU();
  if (!ta::cuda::device_has_wgmma(0)) GTEST_SKIP() << "the key split is on the wgmma key pass";
  Case s = make_case(1, 1, 4097, 4097, TA_DTYPE_BF16);
  auto call = make_call(s, 1600);
  const Outcome split = run_gpu(*call, call->cfg);
  ASSERT_EQ(split.status, TA_OK) << split.message;
  ASSERT_EQ(ta::cuda::last_pass_kernels(), PassKernels::kPrefixBlockWg);
  EXPECT_GT(ta::cuda::last_key_split(), 1);
  EXPECT_TRUE(ta::cuda::last_key_pass_tma());
  const std::vector<uint8_t> first = call->out_gpu.element_bytes();
  const std::vector<double> got_split = call->out_gpu.dense();
  ASSERT_EQ(run_gpu(*call, call->cfg).status, TA_OK);
  EXPECT_EQ(call->out_gpu.element_bytes(), first) << "run to run";
  {
    // The cp.async kernel splits the same way: the same sums in the same order.
    KeyTma no_tma(false);
    ASSERT_EQ(run_gpu(*call, call->cfg).status, TA_OK);
    EXPECT_FALSE(ta::cuda::last_key_pass_tma());
    EXPECT_GT(ta::cuda::last_key_split(), 1);
    EXPECT_EQ(call->out_gpu.element_bytes(), first) << "TMA against cp.async staging";
  }
  const Outcome whole = [&] {
    KeySplitCap no_split(1);
    Outcome o = run_gpu(*call, call->cfg);
    EXPECT_EQ(ta::cuda::last_key_split(), 1);
    return o;
  }();
  ASSERT_EQ(whole.status, TA_OK) << whole.message;
  EXPECT_LT(tatest::rel_l2(got_split, call->out_gpu.dense()), 2e-3);
  EXPECT_NEAR(split.stats.denom_min, whole.stats.denom_min, 1e-3 * std::fabs(whole.stats.denom_min));
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  EXPECT_LT(tatest::rel_l2(got_split, call->out_cpu.dense()), cpu_tolerance(s.dtype));
}

// The TMA key pass (pb_wg_key_pass_tma: a bulk copy of each y tile, tensor copies of v) builds
// the same A fragments and runs the same wgmmas in the same order as the cp.async kernel, so
// every output bit must match it: with a partial last tile (rows past the last token arrive
// as zeros), several batches and heads, ComfyUI's [B, N, H, D] view (the map's dims
// reordered by stride), and cross attention; unsplit here (the key split test covers the
// split). Masked calls and padded views (no direct values) keep the cp.async kernel.
struct TmaCase {
  Case c;
  bool want;  // last_key_pass_tma() when allowed
};

class CudaFastPathKeyTma : public ::testing::TestWithParam<TmaCase> {};

TEST_P(CudaFastPathKeyTma, SameBitsAsCpAsyncKernel) {
  SKIP_WITHOUT_GPU();
  if (!ta::cuda::device_has_wgmma(0)) GTEST_SKIP() << "the TMA key pass is a wgmma kernel";
  const TmaCase& tc = GetParam();
  auto call = make_call(tc.c, 2300 + static_cast<uint64_t>(tc.c.Nk));
  KeySplitCap no_split(1);
  auto run = [&](bool allowed, bool want_tma) {
    KeyTma tma(allowed);
    const Outcome o = run_gpu(*call, call->cfg);
    EXPECT_EQ(o.status, TA_OK) << o.message;
    EXPECT_EQ(o.kernels, PassKernels::kPrefixBlockWg);
    EXPECT_EQ(ta::cuda::last_key_pass_tma(), want_tma) << "allowed " << allowed;
    return call->out_gpu.element_bytes();
  };
  const std::vector<uint8_t> plain = run(false, false);
  const std::vector<double> got = call->out_gpu.dense();
  expect_finite(got);
  EXPECT_EQ(run(true, tc.want), plain);
  EXPECT_EQ(run(true, tc.want), plain) << "again";
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  EXPECT_LT(tatest::rel_l2(got, call->out_cpu.dense()), cpu_tolerance(tc.c.dtype));
}

TmaCase tma_case(int64_t B, int64_t H, int64_t Nq, int64_t Nk, View view, bool masked, bool want) {
  Case c = make_case(B, H, Nq, Nk, TA_DTYPE_BF16);
  c.view = view;
  c.masked = masked;
  return TmaCase{c, want};
}

INSTANTIATE_TEST_SUITE_P(Layouts, CudaFastPathKeyTma,
                         ::testing::Values(tma_case(1, 1, 300, 4097, View::kContiguous, false, true),
                                           tma_case(2, 3, 129, 640, View::kContiguous, false, true),
                                           tma_case(1, 5, 200, 1000, View::kBNHD, false, true),
                                           tma_case(2, 2, 70, 33, View::kBNHD, false, true),
                                           tma_case(1, 1, 64, 7000, View::kContiguous, false, true),
                                           tma_case(2, 2, 100, 700, View::kContiguous, true, false),
                                           tma_case(1, 2, 100, 700, View::kPadded, false, false)),
                         [](const ::testing::TestParamInfo<TmaCase>& i) { return case_name(i.param.c); });

// The plan: S_pad (bf16) per unit instead of the generic fp32 S and its bf16 copy, plus the
// prepared keys and value rows; a caller workspace of exactly that size works, one byte less
// is refused; two runs give the same bits (no atomics on this path).
TEST(CudaFastPathWorkspace, PlanCallerWorkspaceDeterminism_B1_H2_N4097_d128) {
  SKIP_WITHOUT_GPU();
  Case s = make_case(1, 2, 4097, 4097, TA_DTYPE_BF16);
  auto call = make_call(s, 1500);
  const ta_attention_args a = call->gpu_args();
  ta_memory_estimate est{};
  ASSERT_EQ(ta_attention_memory_estimate(&a, &call->cfg, &est), TA_OK) << ta_last_error_message();
  EXPECT_EQ(est.state_bytes, 2 * ta::cuda::pb_state_bytes());
  // bf16, contiguous v: the key pass reads it directly, no value rows in the workspace.
  EXPECT_GE(est.workspace_bytes, 2 * ta::cuda::pb_unit_bytes(4097, true));
  EXPECT_LT(est.workspace_bytes, 2 * ta::cuda::pb_unit_bytes(4097, true) + (int64_t{1} << 20));
  {
    SmemCap cap(0);
    ta_memory_estimate generic{};
    ASSERT_EQ(ta_attention_memory_estimate(&a, &call->cfg, &generic), TA_OK);
    EXPECT_EQ(generic.state_bytes, 2 * int64_t{8385} * 136 * 4);
  }
  size_t bytes = 0;
  ASSERT_EQ(ta_attention_workspace_size(&a, &call->cfg, &bytes), TA_OK);
  EXPECT_EQ(static_cast<int64_t>(bytes), est.workspace_bytes);
  void* ws = nullptr;
  ASSERT_EQ(cudaMalloc(&ws, bytes), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(ta_attention_run(&a, &call->cfg, ws, bytes, stream, nullptr), TA_OK) << ta_last_error_message();
  EXPECT_NE(ta::cuda::last_pass_kernels(), PassKernels::kGeneric);
  call->dout->download(call->out_gpu);
  const std::vector<uint8_t> first = call->out_gpu.element_bytes();
  const Outcome again = run_gpu(*call, call->cfg);
  ASSERT_EQ(again.status, TA_OK) << again.message;
  EXPECT_EQ(call->out_gpu.element_bytes(), first) << "library workspace vs caller workspace, or run to run";
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &call->cfg, ws, bytes - 1, stream, &st), TA_ERR_WORKSPACE_TOO_SMALL);
  cudaStreamDestroy(stream);
  cudaFree(ws);
}

// ---- unit batches ------------------------------------------------------------------------------

// 32 heads sharing one set of q, k, v (zero head strides) over Nk = 66,048 keys, in batches
// (the call-size bound below). Every head must give the same bits (the batches differ only
// in unit offsets), and head 0 must match the generic kernels.
TEST(CudaFastPathBatches, UnitsInBatches_B1_H32_Nq80_Nk66048_d128) {
  SKIP_WITHOUT_GPU();
  constexpr int64_t H = 32, Nq = 80, Nk = 66048;
  TestTensor q1(TA_DTYPE_BF16, {1, 1, Nq, 128}), k1(TA_DTYPE_BF16, {1, 1, Nk, 128}), v1(TA_DTYPE_BF16, {1, 1, Nk, 128});
  tatest::Rng rng(1600);
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
  ta_config cfg = tatest::test_config(3, 1);
  cfg.scale_mul = 0.5;
  const ta_attention_args a{dq.ptr(), dk.ptr(), dv.ptr(), nullptr, dout.ptr(), nullptr};
  ta_memory_estimate est{};
  ASSERT_EQ(ta_attention_memory_estimate(&a, &cfg, &est), TA_OK) << ta_last_error_message();
  // The call-size bound (batch_budget.h): 32 fp32 states of 8,385 x 129 plus the output,
  // 139 MB, hold 6 units of 20.5 MB (state and prepared key tiles; v is read directly): 6
  // batches of 6, 6, 6, 6, 6 and 2.
  const int64_t reference = ta::cuda::call_reference_bytes(H, 8385, 128, 1, H, Nq, 128, 2);
  const int64_t expected_upb = ta::cuda::balanced_units_per_batch(H, ta::cuda::pb_unit_bytes(Nk, true), reference);
  ASSERT_EQ(expected_upb, 6);
  const int64_t last_batch = (H - 1) / expected_upb * expected_upb;  // its first head
  EXPECT_EQ(est.state_bytes, expected_upb * ta::cuda::pb_state_bytes());
  const size_t per_head = static_cast<size_t>(Nq * 128);
  auto same_heads = [&](const std::vector<double>& o, int64_t h0, int64_t h1) {
    return std::equal(o.begin() + static_cast<std::ptrdiff_t>(h0 * static_cast<int64_t>(per_head)),
                      o.begin() + static_cast<std::ptrdiff_t>((h0 + 1) * static_cast<int64_t>(per_head)),
                      o.begin() + static_cast<std::ptrdiff_t>(h1 * static_cast<int64_t>(per_head)));
  };
  std::vector<double> fast;
  {
    // Unsplit, so that every batch sums in the same order.
    KeySplitCap no_split(1);
    ta_stats st;
    ta_stats_init(&st);
    ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
    EXPECT_NE(ta::cuda::last_pass_kernels(), PassKernels::kGeneric);
    EXPECT_EQ(st.denom_count, H * Nq);
    dout.download(out);
    fast = out.dense();
    for (int64_t h = 1; h < H; ++h) ASSERT_TRUE(same_heads(fast, 0, h)) << "head " << h << " differs from head 0";
  }
  // With the key split rule, the wgmma key pass splits the last batch (2 units, 74 CTAs) in
  // threes on an H100: its heads agree with each other bit for bit and with head 0 within bf16.
  if (ta::cuda::last_pass_kernels() == PassKernels::kPrefixBlockWg) {
    ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, nullptr), TA_OK) << ta_last_error_message();
    std::cout << "key split of the last batch: " << ta::cuda::last_key_split() << "\n";
    dout.download(out);
    const std::vector<double> split = out.dense();
    EXPECT_GT(ta::cuda::last_key_split(), 1);
    for (int64_t h = 1; h < last_batch; ++h) ASSERT_TRUE(same_heads(split, 0, h)) << "head " << h << " differs from head 0";
    for (int64_t h = last_batch + 1; h < H; ++h) {
      ASSERT_TRUE(same_heads(split, last_batch, h)) << "head " << h << " differs from head " << last_batch;
    }
    const std::vector<double> head0(fast.begin(), fast.begin() + static_cast<std::ptrdiff_t>(per_head));
    const std::vector<double> head_last(split.begin() + static_cast<std::ptrdiff_t>(last_batch * per_head),
                                        split.begin() + static_cast<std::ptrdiff_t>((last_batch + 1) * per_head));
    EXPECT_LT(tatest::rel_l2(head_last, head0), 2e-3);
  }
  SmemCap cap(0);
  ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, nullptr), TA_OK) << ta_last_error_message();
  EXPECT_EQ(ta::cuda::last_pass_kernels(), PassKernels::kGeneric);
  dout.download(out);
  const std::vector<double> generic = out.dense();
  const std::vector<double> head0_fast(fast.begin(), fast.begin() + static_cast<std::ptrdiff_t>(per_head));
  const std::vector<double> head0_generic(generic.begin(), generic.begin() + static_cast<std::ptrdiff_t>(per_head));
  expect_finite(head0_fast);
  EXPECT_LT(tatest::rel_l2(head0_fast, head0_generic), 2e-2);
}

}  // namespace
