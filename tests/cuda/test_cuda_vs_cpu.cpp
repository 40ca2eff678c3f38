// The CUDA backend against the CPU engine on the same (dtype-rounded) inputs, through
// the public API. Compiled with the CUDA backend, skipped when no GPU is visible.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "taylor_attention/taylor_attention.h"

namespace {

bool gpu_present() { return ta_backend_available(TA_DEVICE_CUDA) == 1; }

#define SKIP_WITHOUT_GPU() \
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device"

// A host tensor and its device twin, [B,H,N,D] viewed over a buffer that may be
// padded in the last dim or laid out as [B,N,H,D] (ComfyUI's [B,N,H*D]).
struct Pair {
  ta_dtype dtype;
  std::vector<unsigned char> host;
  void* dev = nullptr;
  ta_tensor h{}, d{};
  Pair(ta_dtype dt, int64_t B, int64_t H, int64_t N, int64_t D, bool strided) : dtype(dt) {
    const int64_t pad = strided ? D + 2 : D;
    const size_t es = ta_dtype_size(dt);
    host.assign(static_cast<size_t>(B * H * N * pad) * es, 0);
    h.data = host.data();
    h.dtype = dt;
    h.device = TA_DEVICE_CPU;
    h.ndim = 4;
    h.shape[0] = B, h.shape[1] = H, h.shape[2] = N, h.shape[3] = D;
    if (strided) {
      h.strides[0] = N * H * pad, h.strides[1] = pad, h.strides[2] = H * pad, h.strides[3] = 1;
    } else {
      h.strides[0] = H * N * D, h.strides[1] = N * D, h.strides[2] = D, h.strides[3] = 1;
    }
    EXPECT_EQ(cudaMalloc(&dev, host.size()), cudaSuccess);
    d = h;
    d.data = dev;
    d.device = TA_DEVICE_CUDA;
  }
  ~Pair() { cudaFree(dev); }
  double at(const ta_tensor& t, const std::vector<unsigned char>& buf, int64_t b, int64_t hh, int64_t n,
            int64_t c) const {
    const int64_t off = b * t.strides[0] + hh * t.strides[1] + n * t.strides[2] + c * t.strides[3];
    return ta::load_as_double(buf.data(), off, dtype);
  }
  void fill(std::mt19937_64& rng, double stddev) {
    std::normal_distribution<double> dist(0.0, stddev);
    for (int64_t b = 0; b < h.shape[0]; ++b)
      for (int64_t hh = 0; hh < h.shape[1]; ++hh)
        for (int64_t n = 0; n < h.shape[2]; ++n)
          for (int64_t c = 0; c < h.shape[3]; ++c)
            ta::store_from_double(host.data(), b * h.strides[0] + hh * h.strides[1] + n * h.strides[2] + c, dtype,
                                  dist(rng));
    upload();
  }
  void upload() { ASSERT_EQ(cudaMemcpy(dev, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess); }
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> out(host.size());
    EXPECT_EQ(cudaMemcpy(out.data(), dev, host.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
};

struct Case {
  int64_t B, H, Nq, Nk, d, dv;
  int32_t P, G;
  ta_dtype dtype;
  bool normalize, strided, force_fp32, masked;
};

std::string name_of(const Case& c) {
  return "B" + std::to_string(c.B) + "_H" + std::to_string(c.H) + "_Nq" + std::to_string(c.Nq) + "_Nk" +
         std::to_string(c.Nk) + "_d" + std::to_string(c.d) + "_dv" + std::to_string(c.dv) + "_P" +
         std::to_string(c.P) + "_G" + std::to_string(c.G) + "_" + ta_dtype_name(c.dtype) +
         (c.normalize ? "_norm" : "") + (c.strided ? "_strided" : "") + (c.force_fp32 ? "_fp32" : "") +
         (c.masked ? "_mask" : "");
}

void PrintTo(const Case& c, std::ostream* os) { *os << name_of(c); }

class CudaVsCpu : public ::testing::TestWithParam<Case> {};

TEST_P(CudaVsCpu, SameFunction) {
  SKIP_WITHOUT_GPU();
  const Case c = GetParam();
  std::mt19937_64 rng(99 + static_cast<uint64_t>(c.Nq * 7 + c.d * 3 + c.P));
  Pair q(c.dtype, c.B, c.H, c.Nq, c.d, c.strided), k(c.dtype, c.B, c.H, c.Nk, c.d, c.strided),
      v(c.dtype, c.B, c.H, c.Nk, c.dv, c.strided), o_gpu(c.dtype, c.B, c.H, c.Nq, c.dv, false),
      o_cpu(c.dtype, c.B, c.H, c.Nq, c.dv, false);
  // Scores of spread ~0.5 keep every P's denominators positive.
  q.fill(rng, 1.0);
  k.fill(rng, 1.0);
  v.fill(rng, 1.0);
  ta_config cfg;
  ta_config_defaults(&cfg);
  cfg.P = c.P;
  cfg.sub_head_blocks = c.G;
  cfg.qk_normalize = c.normalize;
  cfg.force_fp32 = c.force_fp32;
  cfg.min_tokens = 0;
  cfg.max_feature_dim_R = 1 << 24;
  cfg.scale_mul = c.normalize ? 1.0 : 0.5;
  std::vector<unsigned char> mask_host;
  ta_tensor mask_h{}, mask_d{};
  void* mask_dev = nullptr;
  if (c.masked) {
    mask_host.resize(static_cast<size_t>(c.B * c.Nk));
    for (size_t i = 0; i < mask_host.size(); ++i) mask_host[i] = (i % 5) != 3;
    const int64_t shape[2] = {c.B, c.Nk};
    ta_tensor_init_contiguous(&mask_h, mask_host.data(), TA_DTYPE_BOOL, TA_DEVICE_CPU, 2, shape);
    ASSERT_EQ(cudaMalloc(&mask_dev, mask_host.size()), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(mask_dev, mask_host.data(), mask_host.size(), cudaMemcpyHostToDevice), cudaSuccess);
    mask_d = mask_h;
    mask_d.data = mask_dev;
    mask_d.device = TA_DEVICE_CUDA;
  }
  ta_attention_args ga{&q.d, &k.d, &v.d, c.masked ? &mask_d : nullptr, &o_gpu.d};
  ta_attention_args ca{&q.h, &k.h, &v.h, c.masked ? &mask_h : nullptr, &o_cpu.h};
  ta_stats gs, cs;
  ta_stats_init(&gs);
  ta_stats_init(&cs);
  ASSERT_EQ(ta_attention_run(&ga, &cfg, nullptr, 0, nullptr, &gs), TA_OK) << ta_last_error_message();
  ASSERT_EQ(ta_attention_run(&ca, &cfg, nullptr, 0, nullptr, &cs), TA_OK) << ta_last_error_message();
  EXPECT_EQ(gs.backend, TA_BACKEND_CUDA);
  const auto got = o_gpu.download();
  double diff = 0, norm = 0;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t n = 0; n < c.Nq; ++n)
        for (int64_t col = 0; col < c.dv; ++col) {
          const double g = o_gpu.at(o_gpu.h, got, b, h, n, col), r = o_cpu.at(o_cpu.h, o_cpu.host, b, h, n, col);
          ASSERT_TRUE(std::isfinite(g)) << "non-finite GPU output at " << b << "," << h << "," << n << "," << col;
          diff += (g - r) * (g - r);
          norm += r * r;
        }
  const double rel = std::sqrt(diff / norm);
  // fp32 SIMT path: fp32 sums in another order, so 1e-5. Tensor-core path: features
  // rounded to bf16 (2^-9 relative each), fp32 accumulation: ~3e-3 observed, 2e-2 bound.
  // The output dtype's own rounding (bf16: 2^-9) is added on top.
  double tol = c.force_fp32 ? 1e-5 : 2e-2;
  if (c.dtype == TA_DTYPE_BF16) tol += 8e-3;
  if (c.dtype == TA_DTYPE_F16) tol += 1e-3;
  EXPECT_LT(rel, tol);
  // Statistics describe the same denominators.
  EXPECT_EQ(gs.denom_count, cs.denom_count);
  EXPECT_NEAR(gs.denom_min, cs.denom_min, 3e-2 * std::fabs(cs.denom_min));
  EXPECT_NEAR(gs.denom_max, cs.denom_max, 3e-2 * std::fabs(cs.denom_max));
  EXPECT_NEAR(gs.denom_mean, cs.denom_mean, 3e-2 * std::fabs(cs.denom_mean));
  // The quality check samples the same rows on both backends.
  EXPECT_EQ(gs.quality_vs_original.samples, cs.quality_vs_original.samples);
  EXPECT_NEAR(gs.quality_vs_original.rel_l2, cs.quality_vs_original.rel_l2,
              0.05 * cs.quality_vs_original.rel_l2 + 0.03);
  EXPECT_NEAR(gs.quality_truncation.rel_l2, cs.quality_truncation.rel_l2, 0.05 * cs.quality_truncation.rel_l2 + 0.03);
  if (mask_dev) cudaFree(mask_dev);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaVsCpu,
    ::testing::Values(
        Case{1, 2, 97, 97, 64, 64, 3, 1, TA_DTYPE_F32, false, false, false, false},
        Case{1, 2, 97, 97, 64, 64, 3, 1, TA_DTYPE_F32, false, false, true, false},
        Case{2, 3, 130, 75, 32, 16, 4, 1, TA_DTYPE_BF16, true, true, false, false},
        Case{1, 1, 1025, 1025, 128, 128, 3, 1, TA_DTYPE_BF16, false, false, false, false},
        Case{1, 1, 1025, 1025, 128, 128, 3, 1, TA_DTYPE_F16, false, true, true, false},
        Case{1, 2, 333, 333, 128, 128, 4, 4, TA_DTYPE_F16, false, false, false, true},
        Case{1, 2, 333, 333, 128, 128, 4, 4, TA_DTYPE_F32, true, false, true, true},
        Case{2, 1, 64, 200, 12, 20, 6, 2, TA_DTYPE_F32, false, false, false, false},
        Case{1, 1, 1, 1, 3, 5, 2, 1, TA_DTYPE_F32, false, false, false, false},
        Case{1, 3, 257, 129, 59, 59, 3, 1, TA_DTYPE_BF16, true, true, false, true},
        Case{1, 1, 50, 60, 8, 100, 8, 1, TA_DTYPE_F32, false, false, false, false},
        // Normalised contiguous slices: token factors by 16-byte loads with 1, 2, 8 and 32
        // lanes per token (token_factors_vec: bf16 d = 8, f32 d = 8, f16 d = 64, f32 d = 128),
        // and a width that is no power-of-two number of vectors (48 / 8 = 6: the scalar kernel).
        Case{1, 1, 70, 70, 8, 8, 4, 1, TA_DTYPE_BF16, true, false, false, false},
        Case{1, 1, 70, 70, 8, 8, 4, 1, TA_DTYPE_F32, true, false, false, false},
        Case{1, 2, 150, 150, 64, 64, 2, 1, TA_DTYPE_F16, true, false, false, false},
        Case{1, 1, 100, 90, 128, 64, 3, 1, TA_DTYPE_F32, true, false, false, false},
        Case{2, 1, 77, 77, 48, 48, 3, 1, TA_DTYPE_BF16, true, false, false, true}),
    [](const auto& info) { return name_of(info.param); });

// A caller-owned workspace on a caller stream gives the same bits as a library one.
TEST(Cuda, CallerWorkspaceAndStreamAndDeterminism_B1_H2_N300_d64) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(5);
  Pair q(TA_DTYPE_BF16, 1, 2, 300, 64, false), k(TA_DTYPE_BF16, 1, 2, 300, 64, false),
      v(TA_DTYPE_BF16, 1, 2, 300, 64, false), o1(TA_DTYPE_BF16, 1, 2, 300, 64, false),
      o2(TA_DTYPE_BF16, 1, 2, 300, 64, false);
  q.fill(rng, 1.0);
  k.fill(rng, 1.0);
  v.fill(rng, 1.0);
  ta_config cfg;
  ta_config_defaults(&cfg);
  cfg.P = 3;
  cfg.sub_head_blocks = 1;
  cfg.min_tokens = 0;
  ta_attention_args a{&q.d, &k.d, &v.d, nullptr, &o1.d};
  size_t bytes = 0;
  ASSERT_EQ(ta_attention_workspace_size(&a, &cfg, &bytes), TA_OK);
  void* ws = nullptr;
  ASSERT_EQ(cudaMalloc(&ws, bytes), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(ta_attention_run(&a, &cfg, ws, bytes, stream, nullptr), TA_OK) << ta_last_error_message();
  a.out = &o2.d;
  ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, nullptr), TA_OK) << ta_last_error_message();
  EXPECT_EQ(o1.download(), o2.download());
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &cfg, ws, bytes - 1, stream, &st), TA_ERR_WORKSPACE_TOO_SMALL);
  EXPECT_EQ(st.fallback_reason, TA_REASON_OUT_OF_MEMORY);
  cudaStreamDestroy(stream);
  cudaFree(ws);
}

// Run-time fallbacks reach the caller with their names, and leave the GPU usable.
TEST(Cuda, FallbackReasons_B1_H1_N200_d16) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(6);
  Pair q(TA_DTYPE_F32, 1, 1, 200, 16, false), k(TA_DTYPE_F32, 1, 1, 200, 16, false),
      v(TA_DTYPE_F32, 1, 1, 200, 16, false), o(TA_DTYPE_F32, 1, 1, 200, 16, false);
  q.fill(rng, 1.0);
  k.fill(rng, 1.0);
  v.fill(rng, 1.0);
  ta_config cfg;
  ta_config_defaults(&cfg);
  cfg.P = 2;
  cfg.sub_head_blocks = 1;
  cfg.min_tokens = 0;
  cfg.scale_mul = 20.0;  // P=2: 1 + s goes negative for s < -1
  ta_attention_args a{&q.d, &k.d, &v.d, nullptr, &o.d};
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_FALLBACK);
  EXPECT_EQ(st.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);
  EXPECT_EQ(st.probe_ran, 1);
  cfg.early_probe = 0;
  EXPECT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_FALLBACK);
  EXPECT_EQ(st.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);
  EXPECT_GT(st.denom_le_eps, 0);
  // NaN in one key: every denominator is NaN.
  cfg.scale_mul = 1.0;
  cfg.early_probe = 1;
  const float nan = std::nanf("");
  std::memcpy(k.host.data(), &nan, sizeof nan);
  k.upload();
  EXPECT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_FALLBACK);
  EXPECT_EQ(st.fallback_reason, TA_REASON_DENOMINATOR_INVALID);
  // The next call on clean data works.
  k.fill(rng, 1.0);
  EXPECT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
}

// P=4 on full 128-dim heads: R = 366,145, states of 199 MB per head, run in unit batches.
TEST(Cuda, LargeStateRunsInBatches_B1_H6_N300_d128_P4) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(7);
  Pair q(TA_DTYPE_BF16, 1, 6, 300, 128, false), k(TA_DTYPE_BF16, 1, 6, 300, 128, false),
      v(TA_DTYPE_BF16, 1, 6, 300, 128, false), o(TA_DTYPE_BF16, 1, 6, 300, 128, false);
  q.fill(rng, 1.0);
  k.fill(rng, 1.0);
  v.fill(rng, 1.0);
  ta_config cfg;
  ta_config_defaults(&cfg);
  cfg.sub_head_blocks = 1;
  cfg.min_tokens = 0;
  cfg.qk_normalize = 1;
  ta_memory_estimate est;
  ta_attention_args a{&q.d, &k.d, &v.d, nullptr, &o.d};
  ASSERT_EQ(ta_attention_memory_estimate(&a, &cfg, &est), TA_OK);
  EXPECT_EQ(est.feature_dim, 366145);
  EXPECT_LT(est.workspace_bytes, int64_t{3} << 30);
  ta_stats st;
  ta_stats_init(&st);
  ASSERT_EQ(ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  EXPECT_LT(st.quality_truncation.rel_l2, 0.05);
}

}  // namespace
