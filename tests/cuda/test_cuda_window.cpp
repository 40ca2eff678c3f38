// The local-exact hybrid on the CUDA backend (tensor-core window kernel for f16/bf16,
// fp32 SIMT kernel for f32 and force_fp32) against the CPU engine on the same inputs and
// against the library's fp64 hybrid reference, on awkward layouts; the denominator
// guards, the early probe and the statistics on hybrid denominators; and the calls the
// window does not apply to. Compiled with the CUDA backend, skipped without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "common/ta_token_layout.h"
#include "common/ta_api_helpers.h"
#include "common/ta_cuda_copy.h"
#include "cuda/prefix_block_plan.h"
#include "cuda/window_plan.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::DeviceCopy;
using tatest::TestTensor;

bool gpu_present() { return ta_backend_available(TA_DEVICE_CUDA) == 1; }

#define SKIP_WITHOUT_GPU() \
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device"

using Layout = tatest::TokenLayout;

// One call's shape and window.
struct Spec {
  Layout layout;
  int radius = 1;
  bool text_keys = true, text_queries = true;
  int G = 1;
  bool normalize = false, mask = false, strided = false;
  bool permuted = false;  // [B, N, H, D] buffers viewed as [B, H, N, D] (ComfyUI's Flux layout, aligned rows)
  int64_t d = 64, dv = 64;
  int P = 3;
  int64_t B = 2, H = 2;
  double scale_mul = 0.5;  // score spread ~0.5 for N(0,1) inputs without normalisation
};

std::string spec_name(const Spec& s) {
  return s.layout.name() + "_r" + std::to_string(s.radius) + (s.text_keys ? "_tk" : "") +
         (s.text_queries ? "_tq" : "") + "_B" + std::to_string(s.B) + "_H" + std::to_string(s.H) + "_d" +
         std::to_string(s.d) + "_dv" + std::to_string(s.dv) + "_P" + std::to_string(s.P) + "_G" +
         std::to_string(s.G) + (s.normalize ? "_norm" : "") + (s.mask ? "_mask" : "") +
         (s.strided ? "_strided" : "") + (s.permuted ? "_bnhd" : "");
}

// Which kernels run: the input dtype, and force_fp32. The plain passes use tensor cores
// (bf16 features) unless force_fp32; the window kernel uses tensor cores for f16/bf16
// unless force_fp32, the fp32 SIMT kernel otherwise. On a wgmma card (compute capability
// 9.0, sm_90a build) the tensor-core kernel runs its text stages on wgmma for 64- and
// 128-wide slices unless mma_sync asks for the mma.sync kernel (a test seam).
struct Path {
  ta_dtype dtype;
  bool force_fp32;
  bool mma_sync = false;
};

std::string path_name(const Path& p) {
  return std::string(ta_dtype_name(p.dtype)) + (p.force_fp32 ? "_fp32" : "") + (p.mma_sync ? "_mma" : "");
}

// Test name of a (Spec, Path) parameter.
std::string spec_path_name(const ::testing::TestParamInfo<std::tuple<Spec, Path>>& info) {
  return spec_name(std::get<0>(info.param)) + "_" + path_name(std::get<1>(info.param));
}

void PrintTo(const Spec& s, std::ostream* os) { *os << spec_name(s); }
void PrintTo(const Path& p, std::ostream* os) { *os << path_name(p); }

// The window kernel is the SIMT one.
bool simt(const Path& p) { return p.force_fp32 || p.dtype == TA_DTYPE_F32; }

// Unit roundoff of a storage dtype.
double unit_roundoff(ta_dtype dt) {
  return dt == TA_DTYPE_BF16 ? std::ldexp(1.0, -9) : dt == TA_DTYPE_F16 ? std::ldexp(1.0, -12) : std::ldexp(1.0, -24);
}

// q, k, v, the CPU and GPU outputs and an optional key mask, on the host and the device.
struct Call {
  Spec spec;
  ta_dtype dtype;
  bool mma_sync = false;  // Path::mma_sync
  TestTensor q, k, v, out_cpu, out_gpu;
  std::optional<TestTensor> mask;
  std::vector<uint8_t> keep;
  ta_token_layout layout{};
  std::unique_ptr<DeviceCopy> dq, dk, dv, dout, dmask;
  ta_config cfg{};

  ta_attention_args cpu_args(bool with_layout = true) const {
    ta_attention_args a{};
    a.q = q.ptr();
    a.k = k.ptr();
    a.v = v.ptr();
    a.mask = mask ? mask->ptr() : nullptr;
    a.out = out_cpu.ptr();
    a.layout = with_layout ? &layout : nullptr;
    return a;
  }
  ta_attention_args gpu_args(bool with_layout = true) const {
    ta_attention_args a{};
    a.q = dq->ptr();
    a.k = dk->ptr();
    a.v = dv->ptr();
    a.mask = dmask ? dmask->ptr() : nullptr;
    a.out = dout->ptr();
    a.layout = with_layout ? &layout : nullptr;
    return a;
  }
};

// [B,H,N,D] tensors; strided ones are views of a [B,N,H,D+3] buffer (ComfyUI's layout
// with padded rows: no 16-byte vector loads, so the kernels' scalar staging runs), permuted
// ones views of a [B,N,H,D] buffer (aligned rows, heads innermost).
TestTensor make_tensor(ta_dtype dt, int64_t B, int64_t H, int64_t N, int64_t D, bool strided, bool permuted = false) {
  if (!strided && !permuted) return TestTensor(dt, {B, H, N, D});
  const int64_t row = strided ? D + 3 : D;
  return TestTensor(dt, {B, H, N, D}, {N * H * row, row, H * row, 1});
}

std::unique_ptr<Call> make_call(const Spec& s, const Path& path, uint64_t seed, double qk_std = 1.0) {
  auto c = std::make_unique<Call>();
  c->spec = s;
  c->dtype = path.dtype;
  c->mma_sync = path.mma_sync;
  const int64_t N = s.layout.tokens();
  c->q = make_tensor(path.dtype, s.B, s.H, N, s.d, s.strided, s.permuted);
  c->k = make_tensor(path.dtype, s.B, s.H, N, s.d, s.strided, s.permuted);
  c->v = make_tensor(path.dtype, s.B, s.H, N, s.dv, s.strided, s.permuted);
  c->out_cpu = make_tensor(path.dtype, s.B, s.H, N, s.dv, s.strided, s.permuted);
  c->out_gpu = make_tensor(path.dtype, s.B, s.H, N, s.dv, s.strided, s.permuted);
  tatest::Rng rng(seed);
  c->q.fill_normal(rng, qk_std);
  c->k.fill_normal(rng, qk_std);
  c->v.fill_normal(rng, 1.0);
  c->layout = s.layout.c_layout();
  if (s.mask) {
    // Every third key of batch entry 1 blocked (text and grid keys alike), entry 0 complete.
    c->keep.assign(static_cast<size_t>(s.B * N), 1);
    for (int64_t j = 0; j < N; j += 3) c->keep[static_cast<size_t>((s.B - 1) * N + j)] = 0;
    tatest::Shape shape;
    shape.B = s.B, shape.H = s.H, shape.Nq = N, shape.Nk = N, shape.d = s.d, shape.dv = s.dv;
    c->mask = tatest::make_mask(tatest::MaskForm::B_Nk, TA_DTYPE_BOOL, shape, c->keep);
  }
  c->dq = std::make_unique<DeviceCopy>(c->q);
  c->dk = std::make_unique<DeviceCopy>(c->k);
  c->dv = std::make_unique<DeviceCopy>(c->v);
  c->dout = std::make_unique<DeviceCopy>(c->out_gpu);
  if (c->mask) c->dmask = std::make_unique<DeviceCopy>(*c->mask);
  ta_config& cfg = c->cfg;
  ta_config_defaults(&cfg);
  cfg.P = s.P;
  cfg.sub_head_blocks = s.G;
  cfg.qk_normalize = s.normalize;
  cfg.force_fp32 = path.force_fp32;
  cfg.min_tokens = 0;
  cfg.max_feature_dim_R = 1 << 24;
  cfg.scale_mul = s.normalize ? 1.0 : s.scale_mul;
  cfg.seed = 77;
  cfg.window_radius = s.radius;
  cfg.window_text_keys = s.text_keys;
  cfg.window_text_queries = s.text_queries;
  cfg.max_head_dim = static_cast<int32_t>(std::max<int64_t>(128, std::max(s.d, s.dv)));
  return c;
}

struct Outcome {
  ta_status status;
  ta_stats stats;
  std::string message;
};

// The window kernel the backend should select for the call (ta::cuda::WindowKernel).
ta::cuda::WindowKernel expected_window_kernel(const Spec& s, const Path& p) {
  const int64_t dim = std::max(s.d, s.dv) / s.G;
  if (simt(p) || dim > 128) return ta::cuda::WindowKernel::kSimt;
  if (!p.mma_sync && dim > 32 && ta::cuda::device_has_wgmma(0)) return ta::cuda::WindowKernel::kMmaWg;
  return ta::cuda::WindowKernel::kMma;
}

// Whether the wgmma kernel should leave the call's grid queries to the 2-D kernel: TMA
// staging (unmasked, aligned rows, slices of exactly 64 or 128 columns for q, k and v) and a
// radius of 1..4 after clamping to the largest grid extent.
bool expected_grid_kernel(const Spec& s, const Path& p) {
  if (expected_window_kernel(s, p) != ta::cuda::WindowKernel::kMmaWg || s.mask || s.strided) return false;
  const int64_t ds = s.d / s.G, dvs = s.dv / s.G;
  if (ds != dvs || (ds != 64 && ds != 128) || s.layout.grids.empty()) return false;
  int64_t extent = 1;
  for (auto [gh, gw] : s.layout.grids) extent = std::max({extent, gh, gw});
  const int64_t r = std::min<int64_t>(s.radius, extent);
  return r >= 1 && r <= ta::cuda::kGridMaxRadius;
}

// Runs the call on the GPU (output canaries checked after the download), with the window
// kernel's wgmma text stages allowed unless the call asks for mma.sync.
Outcome run_gpu(Call& c, const ta_config& cfg, bool with_layout = true) {
  Outcome o{};
  c.out_gpu.fill_bytes(0xA5);
  c.dout->upload(c.out_gpu);
  const ta_attention_args a = c.gpu_args(with_layout);
  ta_stats_init(&o.stats);
  ta::cuda::set_window_wgmma_for_testing(!c.mma_sync);
  o.status = ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &o.stats);
  ta::cuda::set_window_wgmma_for_testing(true);
  o.message = ta_last_error_message();
  c.dout->download(c.out_gpu);
  std::string where;
  EXPECT_TRUE(c.out_gpu.canaries_intact(0xA5, &where)) << "GPU wrote outside out: " << where;
  if (o.status == TA_OK) EXPECT_EQ(o.stats.backend, TA_BACKEND_CUDA);
  return o;
}

Outcome run_cpu(Call& c, const ta_config& cfg, bool with_layout = true) {
  Outcome o{};
  const ta_attention_args a = c.cpu_args(with_layout);
  ta_stats_init(&o.stats);
  o.status = ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &o.stats);
  o.message = ta_last_error_message();
  return o;
}

// The library's fp64 reference of `kind` on fp64 copies of the inputs (no rounding of
// the reference's output to the call's dtype).
std::vector<double> reference(const Call& c, const ta_config& cfg, ta_reference_kind kind) {
  const Spec& s = c.spec;
  const int64_t N = s.layout.tokens();
  TestTensor q(TA_DTYPE_F64, {s.B, s.H, N, s.d}), k(TA_DTYPE_F64, {s.B, s.H, N, s.d}),
      v(TA_DTYPE_F64, {s.B, s.H, N, s.dv}), out(TA_DTYPE_F64, {s.B, s.H, N, s.dv});
  q.set_dense(c.q.dense());
  k.set_dense(c.k.dense());
  v.set_dense(c.v.dense());
  ta_attention_args a{};
  a.q = q.ptr();
  a.k = k.ptr();
  a.v = v.ptr();
  a.mask = c.mask ? c.mask->ptr() : nullptr;
  a.out = out.ptr();
  a.layout = &c.layout;
  EXPECT_EQ(ta_reference_attention(&a, &cfg, kind), TA_OK) << ta_last_error_message();
  return out.dense();
}

// Largest per-row relative error ||got_i - want_i|| / ||want_i|| over the output rows.
double worst_row(const std::vector<double>& got, const std::vector<double>& want, int64_t dv) {
  double worst = 0;
  for (size_t r = 0; r + static_cast<size_t>(dv) <= want.size(); r += static_cast<size_t>(dv)) {
    double num = 0, den = 0;
    for (size_t c = r; c < r + static_cast<size_t>(dv); ++c) {
      num += (got[c] - want[c]) * (got[c] - want[c]);
      den += want[c] * want[c];
    }
    worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
  }
  return worst;
}

// ---- GPU hybrid vs CPU engine and fp64 reference ---------------------------------------

class CudaWindow : public ::testing::TestWithParam<std::tuple<Spec, Path>> {};

// Tolerances, relative L2 of the GPU output against the CPU engine's:
//  - force_fp32: both backends compute in fp32 in another order; plain Taylor agrees to
//    1e-5 (test_cuda_vs_cpu), the completion e^{-m} (Taylor over all keys) - Taylor terms of
//    E(i) can amplify that by the ratio of the Taylor sum to the hybrid's (up to ~10 on
//    these small sets): 1e-4.
//  - Otherwise the plain part carries the bf16 features' error (2e-2 bound for plain
//    Taylor, ~3e-3 observed). The amplification above was budgeted at 2.5x (5e-2) until it
//    was measured: every hybrid test here and in test_cuda_fast_path*.cpp came out at
//    2.5e-3 to 3.5e-3 against the CPU engine (H100, 933f9a3), i.e. not amplified on these
//    sets, so the plain fast path's own bound: 2e-2 (6x the largest seen).
//  - f16/bf16 outputs: the Taylor numerator passes through the output dtype once more
//    (the query pass stores num / den there), amplified as above, plus the final
//    rounding: 8 unit roundoffs.
double gpu_cpu_tolerance(const Path& p) {
  const double base = p.force_fp32 ? 1e-4 : 2e-2;
  return base + (p.dtype == TA_DTYPE_F32 ? 0.0 : 8 * unit_roundoff(p.dtype));
}

TEST_P(CudaWindow, MatchesCpuEngineAndReference) {
  SKIP_WITHOUT_GPU();
  const auto [spec, path] = GetParam();
  auto call = make_call(spec, path, 4100 + static_cast<uint64_t>(spec.layout.tokens() * 7 + spec.radius + spec.d));
  const Outcome g = run_gpu(*call, call->cfg);
  EXPECT_EQ(ta::cuda::last_window_kernel(), expected_window_kernel(spec, path));
  EXPECT_EQ(ta::cuda::last_window_grid_kernel(), expected_grid_kernel(spec, path));
  const Outcome c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  const std::vector<double> got = call->out_gpu.dense(), cpu = call->out_cpu.dense();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(std::isfinite(got[i])) << "non-finite GPU output at " << i;
  const double e_gc = tatest::rel_l2(got, cpu);
  EXPECT_LT(e_gc, gpu_cpu_tolerance(path)) << "GPU vs CPU";
  // Against the fp64 hybrid: no worse than twice the CPU engine's own error plus the
  // GPU-CPU tolerance (FlashAttention's rule with the CPU engine as the same-math baseline).
  const std::vector<double> ref = reference(*call, call->cfg, TA_REFERENCE_HYBRID_QUADRATIC);
  const double e_cpu = tatest::rel_l2(cpu, ref), e_gpu = tatest::rel_l2(got, ref);
  EXPECT_LT(e_gpu, 2 * e_cpu + gpu_cpu_tolerance(path)) << "GPU vs fp64 hybrid (CPU engine: " << e_cpu << ")";

  // Statistics: the hybrid ran, over the same pairs, with the same denominators.
  EXPECT_EQ(g.stats.window_active, 1);
  EXPECT_EQ(g.stats.window_reason, TA_REASON_NONE);
  EXPECT_EQ(g.stats.window_exact_pairs, c.stats.window_exact_pairs);
  EXPECT_GT(g.stats.window_exact_pairs, 0);
  EXPECT_GT(g.stats.time_window_ms, 0.0);
  EXPECT_EQ(g.stats.denom_count, c.stats.denom_count);
  EXPECT_EQ(g.stats.denom_non_finite, 0);
  EXPECT_EQ(g.stats.denom_le_eps, c.stats.denom_le_eps);
  EXPECT_NEAR(g.stats.denom_min, c.stats.denom_min, 3e-2 * std::fabs(c.stats.denom_min));
  EXPECT_NEAR(g.stats.denom_max, c.stats.denom_max, 3e-2 * std::fabs(c.stats.denom_max));
  EXPECT_NEAR(g.stats.denom_mean, c.stats.denom_mean, 3e-2 * std::fabs(c.stats.denom_mean));
  // The probe sampled the same rows and judged their hybrid denominators.
  EXPECT_EQ(g.stats.probe_ran, 1);
  EXPECT_EQ(g.stats.probe_samples, c.stats.probe_samples);
  EXPECT_NEAR(g.stats.probe_denom_min, c.stats.probe_denom_min, 3e-2 * std::fabs(c.stats.probe_denom_min));
  // The quality check compared the hybrid output (the same rows on both backends).
  EXPECT_EQ(g.stats.quality_vs_original.samples, c.stats.quality_vs_original.samples);
  EXPECT_NEAR(g.stats.quality_vs_original.rel_l2, c.stats.quality_vs_original.rel_l2,
              0.05 * c.stats.quality_vs_original.rel_l2 + 0.03);
  EXPECT_NEAR(g.stats.quality_truncation.rel_l2, c.stats.quality_truncation.rel_l2,
              0.05 * c.stats.quality_truncation.rel_l2 + 0.03);
}

Spec spec(Layout layout, int radius, bool tk, bool tq) {
  Spec s;
  s.layout = std::move(layout);
  s.radius = radius;
  s.text_keys = tk;
  s.text_queries = tq;
  return s;
}

std::vector<Spec> layout_specs() {
  std::vector<Spec> v;
  v.push_back(spec({5, {{7, 9}, {3, 4}}}, 1, true, true));
  v.push_back(spec({5, {{7, 9}, {3, 4}}}, 2, true, false));
  v.push_back(spec({5, {{7, 9}, {3, 4}}}, 1, false, false));
  v.push_back(spec({5, {{7, 9}, {3, 4}}}, 1, false, true));
  v.push_back(spec({0, {{6, 6}}}, 1, true, true));             // no text
  v.push_back(spec({20, {}}, 3, true, false));                 // only text: text keys exact
  v.push_back(spec({97, {}}, 2, true, true));                  // only text, every row exact: two text tiles
  v.push_back(spec({3, {{1, 1}, {4, 1}, {1, 5}}}, 1, true, true));  // degenerate grids
  v.push_back(spec({4, {{5, 7}}}, 12, true, true));            // radius larger than the grid
  v.push_back(spec({70, {{3, 130}}}, 4, true, true));          // rows of 3 tiles, text of 2 tiles
  v.push_back(spec({6, {{4, 70}, {2, 3}}}, 2, false, false));  // windows only, tile edges inside a row
  Spec s = spec({4, {{5, 7}}}, 2, true, true);
  s.G = 2;  // two slices of 32
  v.push_back(s);
  s = spec({4, {{5, 7}}}, 1, true, true);
  s.normalize = true;
  v.push_back(s);
  s = spec({6, {{5, 5}, {2, 3}}}, 1, true, true);
  s.mask = true;
  v.push_back(s);
  s = spec({6, {{5, 5}, {2, 3}}}, 1, true, false);
  s.mask = true;
  s.strided = true;
  v.push_back(s);
  s = spec({2, {{4, 6}}}, 2, true, false);
  s.d = 40;  // neither slice dim a multiple of 16
  s.dv = 24;
  v.push_back(s);
  s = spec({3, {{5, 5}}}, 1, true, true);
  s.d = 16;  // the 32-wide instantiation
  s.dv = 16;
  v.push_back(s);
  s = spec({8, {{6, 10}}}, 1, true, true);
  s.d = 128;  // the 128-wide instantiation, P=3 on full heads
  s.dv = 128;
  s.B = 1;
  v.push_back(s);
  s = spec({3, {{4, 5}}}, 1, true, true);
  s.d = 32;  // value slices wider than 128: the SIMT kernel for every dtype
  s.dv = 134;
  s.B = 1;
  v.push_back(s);
  s = spec({70, {{9, 150}, {4, 20}}}, 4, true, true);
  s.d = 128;  // Flux-like proportions, several tiles per row and text longer than a tile
  s.dv = 128;
  s.B = 1;
  v.push_back(s);
  s = spec({64, {{17, 9}}}, 4, true, true);
  s.d = s.dv = 128;  // ComfyUI's [B, N, H, D] buffers; 16 x 8 tiles cut at the grid's bottom and right
  s.permuted = true;
  s.B = 1;
  s.H = 3;
  v.push_back(s);
  s = spec({65, {{20, 13}, {1, 12}, {12, 1}}}, 3, true, false);
  s.d = s.dv = 256;  // two 128-wide slices; a 1-row and a 1-column grid; a text stage of one key
  s.G = 2;
  s.B = 1;
  v.push_back(s);
  v.push_back(spec({3, {{4, 40}}}, 20, true, false));  // r = 20: window stages of whole 72-column pieces
  v.push_back(spec({3, {{7, 150}}}, 5, false, true));  // r = 5: 6 n-tiles per warp; 1053 keys per text row
  s = spec({40, {{20, 52}}}, 2, true, true);
  s.mask = true;  // text rows over 1080 keys with masked keys (split into key ranges when the workspace allows)
  v.push_back(s);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CudaWindow,
                         ::testing::Combine(::testing::ValuesIn(layout_specs()),
                                            ::testing::Values(Path{TA_DTYPE_F32, true}, Path{TA_DTYPE_F32, false},
                                                              Path{TA_DTYPE_F16, false}, Path{TA_DTYPE_BF16, false},
                                                              Path{TA_DTYPE_BF16, true}, Path{TA_DTYPE_F16, false, true},
                                                              Path{TA_DTYPE_BF16, false, true})),
                         spec_path_name);

// ---- Exact sets, sharply --------------------------------------------------------------
// Image-like inputs: q = k = smooth unit vectors over each grid (white noise blurred twice
// by a 3x3 box), random unit vectors for text tokens, scaled so a token's score with
// itself is 6: the largest scores sit next to each query on its grid, neighbours at
// distance 1-2 score 2-4 (their exact weights e^{s-m} are several percent of the row's),
// far keys score ~N(0, 0.75). With P=1 the Taylor part is a plain sum scaled by
// e^{-m} ~ e^{-6}: a key wrongly in or out of an exact set moves its row by a percent or
// more, while the kernels' own error stays near the dtype's rounding. Checked row by row.

void fill_smooth(Call& c, double self_score, uint64_t seed) {
  const Spec& s = c.spec;
  const int64_t N = s.layout.tokens(), d = s.d;
  tatest::Rng rng(seed);
  // Slices of a unit vector hold 1/G of its square norm; slice scale sqrt(G / d) * scale_mul.
  const double alpha = std::sqrt(self_score * std::sqrt(static_cast<double>(s.G * d)) / c.cfg.scale_mul);
  std::vector<double> x(static_cast<size_t>(s.B * s.H * N * d));
  auto at = [&](int64_t b, int64_t h, int64_t n, int64_t col) -> double& {
    return x[static_cast<size_t>(((b * s.H + h) * N + n) * d + col)];
  };
  for (double& e : x) e = rng.normal();
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      int64_t start = s.layout.text;
      for (auto [gh, gw] : s.layout.grids) {
        for (int pass = 0; pass < 2; ++pass) {
          std::vector<double> blurred(static_cast<size_t>(gh * gw * d), 0.0);
          for (int64_t y = 0; y < gh; ++y)
            for (int64_t xx = 0; xx < gw; ++xx)
              for (int64_t dy = -1; dy <= 1; ++dy)
                for (int64_t dx = -1; dx <= 1; ++dx) {
                  const int64_t yy = std::clamp<int64_t>(y + dy, 0, gh - 1), xs = std::clamp<int64_t>(xx + dx, 0, gw - 1);
                  for (int64_t col = 0; col < d; ++col) {
                    blurred[static_cast<size_t>((y * gw + xx) * d + col)] += at(b, h, start + yy * gw + xs, col);
                  }
                }
          for (int64_t t = 0; t < gh * gw; ++t)
            for (int64_t col = 0; col < d; ++col) at(b, h, start + t, col) = blurred[static_cast<size_t>(t * d + col)];
        }
        start += gh * gw;
      }
      for (int64_t n = 0; n < N; ++n) {
        double sq = 0;
        for (int64_t col = 0; col < d; ++col) sq += at(b, h, n, col) * at(b, h, n, col);
        const double f = alpha / std::sqrt(sq);
        for (int64_t col = 0; col < d; ++col) at(b, h, n, col) *= f;
      }
    }
  }
  c.q.set_dense(x);
  c.k.set_dense(x);
  c.dq->upload(c.q);
  c.dk->upload(c.k);
}

class CudaWindowExactSets : public ::testing::TestWithParam<std::tuple<Spec, Path>> {};

TEST_P(CudaWindowExactSets, RowsMatchCpuEngine) {
  SKIP_WITHOUT_GPU();
  const auto [s, path] = GetParam();
  const uint64_t seed = 5200 + static_cast<uint64_t>(s.layout.tokens() * 5 + s.radius);
  auto call = make_call(s, path, seed);
  fill_smooth(*call, 6.0, seed + 1);
  ta_config cfg = call->cfg;
  cfg.quality_check = 0;
  const Outcome g = run_gpu(*call, cfg);
  EXPECT_EQ(ta::cuda::last_window_kernel(), expected_window_kernel(s, path));
  EXPECT_EQ(ta::cuda::last_window_grid_kernel(), expected_grid_kernel(s, path));
  const Outcome c = run_cpu(*call, cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  // Per row: the output's rounding, the Taylor numerator's extra pass through the output
  // dtype and the P weights' rounding (tensor cores), a few unit roundoffs of the dtype
  // (16 allowed); plus, unless force_fp32, the values' and the state's bf16 roundings under
  // the Taylor part (the whole row where the exact set is empty: 2 bf16 roundoffs), else
  // fp32 sums in another order: 1e-4.
  const double tol = 16 * unit_roundoff(path.dtype) + (path.force_fp32 ? 1e-4 : 2 * unit_roundoff(TA_DTYPE_BF16));
  EXPECT_LT(worst_row(call->out_gpu.dense(), call->out_cpu.dense(), s.dv), tol);
  EXPECT_EQ(g.stats.window_exact_pairs, c.stats.window_exact_pairs);
}

std::vector<Spec> exact_set_specs() {
  std::vector<Spec> v = layout_specs();
  for (Spec& s : v) {
    s.P = 1;
    s.scale_mul = 1.0;
  }
  return v;
}

// f32 with force_fp32 checks the SIMT kernel to fp32 precision, f16 the tensor-core kernel
// to f16's (on a wgmma card both its kernels); bf16 and plain f32 run the same kernels with
// coarser roundings.
INSTANTIATE_TEST_SUITE_P(Layouts, CudaWindowExactSets,
                         ::testing::Combine(::testing::ValuesIn(exact_set_specs()),
                                            ::testing::Values(Path{TA_DTYPE_F32, true}, Path{TA_DTYPE_F32, false},
                                                              Path{TA_DTYPE_F16, false}, Path{TA_DTYPE_BF16, false},
                                                              Path{TA_DTYPE_F16, false, true})),
                         spec_path_name);

// ---- The wgmma text stages against their mma.sync twin -----------------------------------
// On a wgmma card the same call runs twice, with the window kernel's text stages on wgmma and
// on mma.sync: the same scores (fp32 accumulation in another order), the same weights rounded
// to the input type, the same finish. Outputs may differ where a score's last fp32 bits flip
// a weight's or an output element's rounding: a few unit roundoffs of the dtype per row.

class CudaWindowWgmmaTwin : public ::testing::TestWithParam<std::tuple<Spec, Path>> {};

TEST_P(CudaWindowWgmmaTwin, MatchesMmaSyncKernel) {
  SKIP_WITHOUT_GPU();
  if (!ta::cuda::device_has_wgmma(0)) GTEST_SKIP() << "no wgmma on this device or build";
  const auto [s, path] = GetParam();
  auto call = make_call(s, path, 7300 + static_cast<uint64_t>(s.layout.tokens() + s.radius));
  ta_config cfg = call->cfg;
  cfg.quality_check = 0;
  // The text stages are under test: the grid queries stay in this kernel (the 2-D kernel,
  // with its own stage order, has its own twin test below).
  ta::cuda::set_window_grid_kernel_for_testing(false);
  const Outcome g = run_gpu(*call, cfg);
  ta::cuda::set_window_grid_kernel_for_testing(true);
  ASSERT_EQ(g.status, TA_OK) << g.message;
  ASSERT_EQ(ta::cuda::last_window_kernel(), ta::cuda::WindowKernel::kMmaWg);
  const std::vector<double> wg = call->out_gpu.dense();
  call->mma_sync = true;
  const Outcome m = run_gpu(*call, cfg);
  ASSERT_EQ(m.status, TA_OK) << m.message;
  ASSERT_EQ(ta::cuda::last_window_kernel(), ta::cuda::WindowKernel::kMma);
  EXPECT_LT(worst_row(wg, call->out_gpu.dense(), s.dv), 4 * unit_roundoff(path.dtype));
  EXPECT_EQ(g.stats.denom_le_eps, m.stats.denom_le_eps);
  EXPECT_NEAR(g.stats.denom_min, m.stats.denom_min, 1e-3 * std::fabs(m.stats.denom_min));
  EXPECT_NEAR(g.stats.denom_max, m.stats.denom_max, 1e-3 * std::fabs(m.stats.denom_max));
}

std::vector<Spec> twin_specs() {
  std::vector<Spec> v;
  v.push_back(spec({5, {{7, 9}, {3, 4}}}, 1, true, true));
  v.push_back(spec({97, {}}, 2, true, true));  // only text, two text tiles
  Spec s = spec({70, {{9, 150}, {4, 20}}}, 4, true, true);
  s.d = s.dv = 128;  // Flux-like proportions, the 128-wide kernel
  s.B = 1;
  v.push_back(s);
  s = spec({40, {{20, 52}}}, 2, true, true);
  s.mask = true;
  v.push_back(s);
  s = spec({70, {{3, 130}}}, 4, true, false);
  s.normalize = true;
  v.push_back(s);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CudaWindowWgmmaTwin,
                         ::testing::Combine(::testing::ValuesIn(twin_specs()),
                                            ::testing::Values(Path{TA_DTYPE_F16, false}, Path{TA_DTYPE_BF16, false})),
                         spec_path_name);

// ---- TMA staging of the wgmma kernel --------------------------------------------------
// With the TMA, a stage's rows outside its keys hold neighbouring tokens instead of zeros;
// their scale factor 0 makes their scores and weights exact zeros either way, so the output
// must match the cp.async staging bit for bit where the plain passes are deterministic (the
// 128-wide prefix x block kernels). Masked calls, rows that are not 16-byte aligned (the
// strided views) and 32-wide slices keep cp.async.

struct TmaSpec {
  Spec s;
  bool want;  // last_window_tma() on a wgmma card
};

class CudaWindowTma : public ::testing::TestWithParam<std::tuple<TmaSpec, Path>> {};

TEST_P(CudaWindowTma, SameBitsAsCpAsyncStaging) {
  SKIP_WITHOUT_GPU();
  if (!ta::cuda::device_has_wgmma(0)) GTEST_SKIP() << "no wgmma on this device or build";
  const auto [ts, path] = GetParam();
  auto call = make_call(ts.s, path, 7700 + static_cast<uint64_t>(ts.s.layout.tokens() + ts.s.radius));
  // The staging of this kernel is under test: the grid queries stay in it.
  ta::cuda::set_window_grid_kernel_for_testing(false);
  const Outcome t = run_gpu(*call, call->cfg);
  ASSERT_EQ(t.status, TA_OK) << t.message;
  ASSERT_EQ(ta::cuda::last_window_kernel(), ta::cuda::WindowKernel::kMmaWg);
  EXPECT_EQ(ta::cuda::last_window_tma(), ts.want);
  const std::vector<uint8_t> with_tma = call->out_gpu.element_bytes();
  const std::vector<double> with_tma_values = call->out_gpu.dense();
  for (double x : with_tma_values) ASSERT_TRUE(std::isfinite(x));
  ta::cuda::set_window_tma_for_testing(false);
  const Outcome c = run_gpu(*call, call->cfg);
  ta::cuda::set_window_tma_for_testing(true);
  ta::cuda::set_window_grid_kernel_for_testing(true);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  EXPECT_FALSE(ta::cuda::last_window_tma());
  if (ts.s.d == 128) {
    // The plain passes are the deterministic prefix x block kernels: every bit must match.
    EXPECT_EQ(call->out_gpu.element_bytes(), with_tma);
    EXPECT_EQ(t.stats.denom_min, c.stats.denom_min);
  } else {
    // The generic key pass splits its sums over atomics (run-to-run rounding): the window's
    // part is the same, the Taylor part within a few unit roundoffs.
    EXPECT_LT(worst_row(with_tma_values, call->out_gpu.dense(), ts.s.dv), 4 * unit_roundoff(path.dtype));
  }
  EXPECT_EQ(t.stats.denom_le_eps, c.stats.denom_le_eps);
}

std::vector<TmaSpec> tma_specs() {
  std::vector<TmaSpec> v;
  v.push_back({spec({5, {{7, 9}, {3, 4}}}, 1, true, true), true});  // two grids, odd sizes, d = 64
  v.push_back({spec({97, {}}, 2, true, true), true});               // only text
  Spec s = spec({70, {{9, 150}, {4, 20}}}, 4, true, true);
  s.d = s.dv = 128;  // Flux-like proportions, the 128-wide kernel
  s.B = 1;
  v.push_back({s, true});
  s = spec({0, {{5, 40}}}, 9, false, false);  // no text, r beyond the grid's height
  s.d = s.dv = 128;
  v.push_back({s, true});
  s = spec({40, {{20, 52}}}, 2, true, true);
  s.mask = true;
  v.push_back({s, false});
  s = spec({6, {{10, 11}}}, 2, true, false);
  s.strided = true;
  v.push_back({s, false});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CudaWindowTma,
                         ::testing::Combine(::testing::ValuesIn(tma_specs()),
                                            ::testing::Values(Path{TA_DTYPE_F16, false}, Path{TA_DTYPE_BF16, false})),
                         [](const auto& info) {
                           return spec_name(std::get<0>(info.param).s) + "_" + path_name(std::get<1>(info.param));
                         });

// ---- The 2-D grid kernel ----------------------------------------------------------------
// On a wgmma card, calls the TMA staging covers with radius 1..4 leave their grid queries to
// window_grid_wg. The same call runs three ways: with one persistent CTA per SM; with 3 CTAs
// (each walks several tiles and its stage ring wraps: the same bits wherever the plain passes
// are deterministic, the 128-wide prefix x block kernels with P = 3, else within the generic
// key pass's run-to-run rounding); and with the grid tiles in the wgmma kernel, whose stage
// order and stabiliser history differ (so do the weights' roundings to the input type: a few
// unit roundoffs). P = 1 specs get sharp exact sets (fill_smooth): a key wrongly in or out of
// a window moves its row by a percent or more, 40 f16 unit roundoffs.

class CudaWindowGrid : public ::testing::TestWithParam<std::tuple<Spec, Path>> {};

TEST_P(CudaWindowGrid, MatchesWgmmaKernelAndCpuEngine) {
  SKIP_WITHOUT_GPU();
  if (!ta::cuda::device_has_wgmma(0)) GTEST_SKIP() << "no wgmma on this device or build";
  const auto [s, path] = GetParam();
  const uint64_t seed = 8100 + static_cast<uint64_t>(s.layout.tokens() * 3 + s.radius);
  auto call = make_call(s, path, seed);
  if (s.P == 1) fill_smooth(*call, 6.0, seed + 1);
  ta_config cfg = call->cfg;
  cfg.quality_check = 0;
  const double u = unit_roundoff(path.dtype);

  const Outcome g = run_gpu(*call, cfg);
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  ASSERT_TRUE(ta::cuda::last_window_grid_kernel());
  const std::vector<double> grid = call->out_gpu.dense();
  const std::vector<uint8_t> grid_bytes = call->out_gpu.element_bytes();
  for (double x : grid) ASSERT_TRUE(std::isfinite(x));

  ta::cuda::set_window_grid_ctas_for_testing(3);
  const Outcome few = run_gpu(*call, cfg);
  ta::cuda::set_window_grid_ctas_for_testing(0);
  ASSERT_EQ(few.status, TA_OK) << few.message;
  ASSERT_TRUE(ta::cuda::last_window_grid_kernel());
  if (s.d / s.G == 128 && s.P == 3) {
    EXPECT_EQ(call->out_gpu.element_bytes(), grid_bytes);
    EXPECT_EQ(few.stats.denom_min, g.stats.denom_min);
    EXPECT_EQ(few.stats.denom_max, g.stats.denom_max);
  } else {
    EXPECT_LT(worst_row(call->out_gpu.dense(), grid, s.dv), 4 * u);
  }
  EXPECT_EQ(few.stats.denom_le_eps, g.stats.denom_le_eps);

  ta::cuda::set_window_grid_kernel_for_testing(false);
  const Outcome m = run_gpu(*call, cfg);
  ta::cuda::set_window_grid_kernel_for_testing(true);
  ASSERT_EQ(m.status, TA_OK) << m.message;
  ASSERT_FALSE(ta::cuda::last_window_grid_kernel());
  const std::vector<double> mma = call->out_gpu.dense();
  EXPECT_LT(tatest::rel_l2(grid, mma), 2 * u);
  EXPECT_LT(worst_row(grid, mma, s.dv), 16 * u);
  EXPECT_EQ(g.stats.window_exact_pairs, m.stats.window_exact_pairs);
  EXPECT_EQ(g.stats.denom_count, m.stats.denom_count);
  EXPECT_EQ(g.stats.denom_le_eps, m.stats.denom_le_eps);
  EXPECT_NEAR(g.stats.denom_min, m.stats.denom_min, 1e-3 * std::fabs(m.stats.denom_min));
  EXPECT_NEAR(g.stats.denom_max, m.stats.denom_max, 1e-3 * std::fabs(m.stats.denom_max));

  // The CPU engine, row by row (CudaWindowExactSets' tolerance).
  const Outcome c = run_cpu(*call, cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  EXPECT_LT(worst_row(grid, call->out_cpu.dense(), s.dv), 16 * u + 2 * unit_roundoff(TA_DTYPE_BF16));
}

std::vector<Spec> grid_specs() {
  std::vector<Spec> v;
  auto add = [&](Spec s, int P, int64_t d, int64_t B, int64_t H) {
    s.P = P;
    s.scale_mul = P == 1 ? 1.0 : s.scale_mul;
    s.d = s.dv = d;
    s.B = B;
    s.H = H;
    v.push_back(s);
  };
  add(spec({70, {{9, 150}, {4, 20}}}, 4, true, true), 3, 128, 1, 1);  // Flux-like proportions
  add(spec({256, {{32, 32}}}, 4, true, true), 3, 128, 1, 2);           // 4 full text stages, 16 tiles
  add(spec({0, {{17, 9}}}, 1, true, true), 1, 64, 2, 2);               // no text; tiles cut at both edges
  add(spec({65, {{20, 33}, {7, 5}}}, 3, true, true), 1, 64, 2, 3);     // text stage of one key, two grids
  add(spec({10, {{12, 12}}}, 2, false, true), 1, 128, 1, 2);           // no text keys for grid rows
  Spec s = spec({64, {{16, 24}}}, 4, true, false);
  s.permuted = true;
  add(s, 3, 128, 1, 2);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CudaWindowGrid,
                         ::testing::Combine(::testing::ValuesIn(grid_specs()),
                                            ::testing::Values(Path{TA_DTYPE_F16, false}, Path{TA_DTYPE_BF16, false})),
                         spec_path_name);

// ---- Rows whose exact set is every key are exact softmax -------------------------------
// All text, text queries exact: the hybrid is the modified function's softmax, even
// with P=2 and a spread that makes plain Taylor's denominators negative (plain Taylor
// falls back, the hybrid's probe and guards see denominators >= 1).

class CudaWindowAllExact : public ::testing::TestWithParam<Path> {};

TEST_P(CudaWindowAllExact, IsSoftmaxWherePlainTaylorFallsBack_t100_B2_H2_d32) {
  SKIP_WITHOUT_GPU();
  const Path path = GetParam();
  Spec s = spec({100, {}}, 1, false, true);
  s.d = s.dv = 32;
  s.P = 2;
  s.scale_mul = 20.0;  // scores ~N(0, 20^2): plain P=2 denominators 100 + sum(s) < 0 in ~30% of rows
  auto call = make_call(s, path, 6100);
  ta_config plain = call->cfg;
  plain.window_radius = 0;
  const Outcome p = run_gpu(*call, plain);
  ASSERT_EQ(p.status, TA_FALLBACK) << "plain Taylor was expected to fail here; the test needs a harder input";
  EXPECT_EQ(p.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);
  const Outcome g = run_gpu(*call, call->cfg);
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  EXPECT_EQ(g.stats.probe_ran, 1);
  // den = sum e^{s - m} with m the row's largest score: at least 1 (the largest term).
  EXPECT_GE(g.stats.probe_denom_min, 1.0 - 1e-5);
  EXPECT_GE(g.stats.denom_min, 1.0 - 1e-5);
  EXPECT_EQ(g.stats.denom_le_eps, 0);
  EXPECT_EQ(g.stats.window_exact_pairs, s.B * s.H * 100 * 100);
  // fp32 softmax (SIMT; scores up to ~60 carry ~1e-6 relative error); tensor cores: P
  // rounded to the dtype, then the output: 4 roundoffs.
  const double tol = simt(path) ? 3e-5 + 2 * unit_roundoff(path.dtype) : 4 * unit_roundoff(path.dtype);
  const std::vector<double> soft = reference(*call, call->cfg, TA_REFERENCE_EXACT_MODIFIED);
  EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), soft), tol);
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaWindowAllExact,
                         ::testing::Values(Path{TA_DTYPE_F32, false}, Path{TA_DTYPE_F16, false},
                                           Path{TA_DTYPE_BF16, false}, Path{TA_DTYPE_BF16, true}),
                         [](const auto& info) { return path_name(info.param); });

// ---- Guards on hybrid denominators ----------------------------------------------------
// Every token's q is one shared direction plus noise and k = -q, P = 2: every score is
// about -2.8, so T_2 = 1 + s < 0 and grid rows (windows only, no text keys) have negative
// hybrid denominators, while text rows (exact over every key) have positive ones. Both
// backends must agree on the probe, the guard and the counts.

std::unique_ptr<Call> negative_call(const Path& path, int64_t d = 32) {
  Spec s = spec({8, {{10, 10}}}, 1, false, true);
  s.d = s.dv = d;
  s.P = 2;
  auto call = make_call(s, path, 6200);
  tatest::Rng rng(6201);
  std::vector<double> dir(static_cast<size_t>(s.d));
  for (double& x : dir) x = rng.normal();
  std::vector<double> q = call->q.dense(), k(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = dir[i % dir.size()] + 0.1 * q[i];
    k[i] = -q[i];
  }
  call->q.set_dense(q);
  call->k.set_dense(k);
  call->dq->upload(call->q);
  call->dk->upload(call->k);
  call->cfg.quality_check = 0;
  return call;
}

class CudaWindowGuards : public ::testing::TestWithParam<Path> {};

TEST_P(CudaWindowGuards, ProbeAndPassJudgeHybridDenominators_t8_10x10_B2_H2_d32_P2) {
  SKIP_WITHOUT_GPU();
  const Path path = GetParam();
  auto call = negative_call(path);
  const int64_t grid_rows = call->spec.B * call->spec.H * 100;
  // Early probe on: both fall back from the probe, having seen the same sampled rows.
  Outcome g = run_gpu(*call, call->cfg), c = run_cpu(*call, call->cfg);
  ASSERT_EQ(c.status, TA_FALLBACK) << "the CPU engine was expected to decline; the input needs adjusting";
  EXPECT_EQ(g.status, TA_FALLBACK);
  EXPECT_EQ(g.stats.fallback_reason, c.stats.fallback_reason);
  EXPECT_EQ(g.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);
  EXPECT_EQ(g.stats.probe_ran, 1);
  EXPECT_LT(g.stats.probe_denom_min, 0.0);
  EXPECT_NEAR(g.stats.probe_denom_min, c.stats.probe_denom_min, 3e-2 * std::fabs(c.stats.probe_denom_min));
  // Probe off: the full pass declines on the same rows.
  ta_config cfg = call->cfg;
  cfg.early_probe = 0;
  g = run_gpu(*call, cfg);
  c = run_cpu(*call, cfg);
  EXPECT_EQ(g.status, TA_FALLBACK);
  EXPECT_EQ(g.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);
  EXPECT_EQ(g.stats.denom_le_eps, grid_rows);
  EXPECT_EQ(g.stats.denom_le_eps, c.stats.denom_le_eps);
  EXPECT_EQ(g.stats.denom_count, c.stats.denom_count);
  EXPECT_NEAR(g.stats.denom_min, c.stats.denom_min, 3e-2 * std::fabs(c.stats.denom_min));
  EXPECT_NEAR(g.stats.denom_max, c.stats.denom_max, 3e-2 * std::fabs(c.stats.denom_max));
  EXPECT_GT(g.stats.denom_max, 0.0);  // the text rows
  // fallback_on_negative off: clamped at eps, same output on both.
  cfg.fallback_on_negative = 0;
  g = run_gpu(*call, cfg);
  c = run_cpu(*call, cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  EXPECT_EQ(g.stats.denom_le_eps, grid_rows);
  EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), gpu_cpu_tolerance(path));
}

// f16 would overflow num / eps on the clamped rows (non_finite_output, also a valid
// outcome, but not the one under test).
INSTANTIATE_TEST_SUITE_P(Paths, CudaWindowGuards,
                         ::testing::Values(Path{TA_DTYPE_F32, false}, Path{TA_DTYPE_BF16, false},
                                           Path{TA_DTYPE_BF16, true}),
                         [](const auto& info) { return path_name(info.param); });

// The same guards on the 2-D kernel's rows (d = 64: on a wgmma card the grid rows finish there).
TEST(CudaWindowGuardsGrid, ClampsAndDeclinesNegativeGridRows_t8_10x10_B2_H2_d64_P2) {
  SKIP_WITHOUT_GPU();
  const Path path{TA_DTYPE_BF16, false};
  auto call = negative_call(path, 64);
  const int64_t grid_rows = call->spec.B * call->spec.H * 100;
  ta_config cfg = call->cfg;
  cfg.early_probe = 0;
  Outcome g = run_gpu(*call, cfg);
  EXPECT_EQ(ta::cuda::last_window_grid_kernel(), ta::cuda::device_has_wgmma(0));
  EXPECT_EQ(g.status, TA_FALLBACK);
  EXPECT_EQ(g.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);
  EXPECT_EQ(g.stats.denom_le_eps, grid_rows);
  cfg.fallback_on_negative = 0;
  g = run_gpu(*call, cfg);
  const Outcome c = run_cpu(*call, cfg);
  ASSERT_EQ(c.status, TA_OK) << c.message;
  ASSERT_EQ(g.status, TA_OK) << g.message << " reason " << ta_reason_name(g.stats.fallback_reason);
  EXPECT_EQ(g.stats.denom_le_eps, grid_rows);
  EXPECT_EQ(g.stats.denom_le_eps, c.stats.denom_le_eps);
  EXPECT_EQ(g.stats.denom_count, c.stats.denom_count);
  EXPECT_NEAR(g.stats.denom_min, c.stats.denom_min, 3e-2 * std::fabs(c.stats.denom_min));
  EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), call->out_cpu.dense()), gpu_cpu_tolerance(path));
}

// ---- Statistics and workspace ---------------------------------------------------------

// text 2 + one 3x3 grid, r = 1, text keys and queries exact: text rows 2 x 11 keys, grid
// rows 2 text keys each plus 4 (corners), 6 (edges) or 9 (centre) window keys: 89 pairs
// per head slice.
TEST(CudaWindowStats, ExactPairsCountedByHand_t2_3x3_r1_B2_H3) {
  SKIP_WITHOUT_GPU();
  Spec s = spec({2, {{3, 3}}}, 1, true, true);
  s.H = 3;
  s.d = s.dv = 16;
  auto call = make_call(s, Path{TA_DTYPE_BF16, false}, 6300);
  const Outcome g = run_gpu(*call, call->cfg);
  ASSERT_EQ(g.status, TA_OK) << g.message;
  EXPECT_EQ(g.stats.window_active, 1);
  EXPECT_EQ(g.stats.window_exact_pairs, 89 * 2 * 3);
}

// The hybrid's workspace holds more (denominators, tiles); a caller's workspace of
// exactly that size on a caller's stream works, one byte less is refused.
TEST(CudaWindowWorkspace, CallerWorkspaceAndStream_t5_7x9_B2_H2_d64) {
  SKIP_WITHOUT_GPU();
  auto call = make_call(spec({5, {{7, 9}}}, 1, true, true), Path{TA_DTYPE_BF16, false}, 6400);
  const ta_attention_args a = call->gpu_args();
  const ta_attention_args plain_args = call->gpu_args(false);
  size_t bytes = 0, plain_bytes = 0;
  ASSERT_EQ(ta_attention_workspace_size(&a, &call->cfg, &bytes), TA_OK) << ta_last_error_message();
  ASSERT_EQ(ta_attention_workspace_size(&plain_args, &call->cfg, &plain_bytes), TA_OK);
  EXPECT_GT(bytes, plain_bytes);
  const Outcome own = run_gpu(*call, call->cfg);
  ASSERT_EQ(own.status, TA_OK) << own.message;
  const std::vector<double> first = call->out_gpu.dense();
  void* ws = nullptr;
  ASSERT_EQ(cudaMalloc(&ws, bytes), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &call->cfg, ws, bytes, stream, &st), TA_OK) << ta_last_error_message();
  EXPECT_EQ(st.window_active, 1);
  call->dout->download(call->out_gpu);
  EXPECT_LT(tatest::rel_l2(call->out_gpu.dense(), first), 1e-6);
  EXPECT_EQ(ta_attention_run(&a, &call->cfg, ws, bytes - 1, stream, &st), TA_ERR_WORKSPACE_TOO_SMALL);
  cudaStreamDestroy(stream);
  cudaFree(ws);
}

// ---- When the window does not apply: plain Taylor, bit for bit ------------------------

class CudaWindowOff : public ::testing::TestWithParam<Path> {};

TEST_P(CudaWindowOff, RadiusZeroAndNoLayoutArePlain_t5_7x9_B2_H2_d64) {
  SKIP_WITHOUT_GPU();
  const Path path = GetParam();
  auto call = make_call(spec({5, {{7, 9}}}, 1, true, true), path, 6500);
  ta_config plain = call->cfg;
  plain.window_radius = 0;
  // Reference: no layout, no window.
  Outcome o = run_gpu(*call, plain, false);
  ASSERT_EQ(o.status, TA_OK) << o.message;
  const std::vector<uint8_t> want = call->out_gpu.element_bytes();
  EXPECT_EQ(o.stats.window_active, 0);
  // Radius 0 with a layout.
  o = run_gpu(*call, plain, true);
  ASSERT_EQ(o.status, TA_OK) << o.message;
  EXPECT_EQ(call->out_gpu.element_bytes(), want);
  EXPECT_EQ(o.stats.window_active, 0);
  EXPECT_EQ(o.stats.window_reason, TA_REASON_NONE);
  EXPECT_EQ(o.stats.window_exact_pairs, 0);
  // A radius without a layout.
  o = run_gpu(*call, call->cfg, false);
  ASSERT_EQ(o.status, TA_OK) << o.message;
  EXPECT_EQ(call->out_gpu.element_bytes(), want);
  EXPECT_EQ(o.stats.window_active, 0);
  EXPECT_EQ(o.stats.window_reason, TA_REASON_WINDOW_NO_LAYOUT);
  EXPECT_EQ(o.stats.time_window_ms, 0.0);
}

TEST_P(CudaWindowOff, CrossAttentionIsPlain_Nq68_Nk75_B2_H2_d64) {
  SKIP_WITHOUT_GPU();
  const Path path = GetParam();
  // Queries laid out as text 5 + 7x9; 75 keys (a layout describes Nq = Nk calls only).
  const int64_t B = 2, H = 2, Nq = 68, Nk = 75, d = 64;
  TestTensor q(path.dtype, {B, H, Nq, d}), k(path.dtype, {B, H, Nk, d}), v(path.dtype, {B, H, Nk, d}),
      out(path.dtype, {B, H, Nq, d});
  tatest::Rng rng(6600);
  q.fill_normal(rng, 1.0);
  k.fill_normal(rng, 1.0);
  v.fill_normal(rng, 1.0);
  DeviceCopy dq(q), dk(k), dv(v), dout(out);
  const ta_token_layout layout = Layout{5, {{7, 9}}}.c_layout();
  ta_attention_args a{};
  a.q = dq.ptr();
  a.k = dk.ptr();
  a.v = dv.ptr();
  a.out = dout.ptr();
  ta_config cfg;
  ta_config_defaults(&cfg);
  cfg.P = 3;
  cfg.sub_head_blocks = 1;
  cfg.min_tokens = 0;
  cfg.force_fp32 = path.force_fp32;
  cfg.scale_mul = 0.5;
  ta_stats st;
  ta_stats_init(&st);
  ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  dout.download(out);
  const std::vector<uint8_t> want = out.element_bytes();
  a.layout = &layout;
  cfg.window_radius = 2;
  ta_stats_init(&st);
  ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  dout.download(out);
  EXPECT_EQ(out.element_bytes(), want);
  EXPECT_EQ(st.window_active, 0);
  EXPECT_EQ(st.window_reason, TA_REASON_WINDOW_CROSS_ATTENTION);
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaWindowOff,
                         ::testing::Values(Path{TA_DTYPE_F32, false}, Path{TA_DTYPE_BF16, false},
                                           Path{TA_DTYPE_F16, true}),
                         [](const auto& info) { return path_name(info.param); });

}  // namespace
