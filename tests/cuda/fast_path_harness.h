// What the prefix x block test files share (test_cuda_fast_path.cpp for P = 3,
// test_cuda_fast_path4.cpp for P = 4): a call of random q, k, v (and an optional key mask)
// in one of three memory layouts, on the host and the device; running it through the C API
// on the CPU engine and on the GPU (with the kernels the backend selected and the output's
// canaries checked); the output tolerance against the CPU engine.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/ta_api_helpers.h"
#include "common/ta_cuda_copy.h"
#include "cuda/prefix_block_plan.h"
#include "taylor_attention/taylor_attention.h"

namespace tatest::fastpath {

using ta::cuda::PassKernels;

inline bool gpu_present() { return ta_backend_available(TA_DEVICE_CUDA) == 1; }

#define SKIP_WITHOUT_GPU() \
  if (!::tatest::fastpath::gpu_present()) GTEST_SKIP() << "no CUDA device"

// Sets the shared-memory cap the kernel selection sees for one scope (0: the generic
// kernels; < 0: no cap).
struct SmemCap {
  explicit SmemCap(int64_t bytes) { ta::cuda::set_pass_smem_cap_for_testing(bytes); }
  ~SmemCap() { ta::cuda::set_pass_smem_cap_for_testing(-1); }
  SmemCap(const SmemCap&) = delete;
  SmemCap& operator=(const SmemCap&) = delete;
};

// Caps the wgmma key pass's key split for a scope (1: never split).
struct KeySplitCap {
  explicit KeySplitCap(int cap) { ta::cuda::set_key_split_cap_for_testing(cap); }
  ~KeySplitCap() { ta::cuda::set_key_split_cap_for_testing(0); }
  KeySplitCap(const KeySplitCap&) = delete;
  KeySplitCap& operator=(const KeySplitCap&) = delete;
};

// Allows or forbids the P = 3 key pass's TMA staging for a scope.
struct KeyTma {
  explicit KeyTma(bool allowed) { ta::cuda::set_key_pass_tma_for_testing(allowed); }
  ~KeyTma() { ta::cuda::set_key_pass_tma_for_testing(true); }
  KeyTma(const KeyTma&) = delete;
  KeyTma& operator=(const KeyTma&) = delete;
};

// How q, k, v and out are laid out: contiguous [B,H,N,D]; views of [B,N,H,D] (ComfyUI's
// [B,N,H*D], 16-byte vector loads still allowed); views of [B,N,H,D+3] (scalar loads).
enum class View { kContiguous, kBNHD, kPadded };

inline TestTensor make_tensor(ta_dtype dt, int64_t B, int64_t H, int64_t N, int64_t D, View view) {
  if (view == View::kContiguous) return TestTensor(dt, {B, H, N, D});
  const int64_t row = view == View::kBNHD ? D : D + 3;
  return TestTensor(dt, {B, H, N, D}, {N * H * row, row, H * row, 1});
}

struct Case {
  int64_t B = 1, H = 1, Nq = 1, Nk = 1, d = 128, dv = 128;
  int32_t G = 1, P = 3;
  ta_dtype dtype = TA_DTYPE_BF16;
  bool normalize = false, masked = false;
  View view = View::kContiguous;
  double scale_mul = 0.5;  // scores ~N(0, 0.5^2) for N(0, 1) inputs without normalisation
};

inline Case make_case(int64_t B, int64_t H, int64_t Nq, int64_t Nk, ta_dtype dt, int32_t G = 1, int32_t P = 3) {
  Case c{};
  c.B = B, c.H = H, c.Nq = Nq, c.Nk = Nk, c.dtype = dt, c.G = G, c.P = P;
  return c;
}

inline std::string case_name(const Case& c) {
  std::string s = "B" + std::to_string(c.B) + "_H" + std::to_string(c.H) + "_Nq" + std::to_string(c.Nq) + "_Nk" +
                  std::to_string(c.Nk) + "_d" + std::to_string(c.d) + "_dv" + std::to_string(c.dv) + "_G" +
                  std::to_string(c.G) + "_P" + std::to_string(c.P) + "_" + ta_dtype_name(c.dtype);
  if (c.normalize) s += "_norm";
  if (c.masked) s += "_mask";
  if (c.view == View::kBNHD) s += "_bnhd";
  if (c.view == View::kPadded) s += "_padded";
  if (c.scale_mul < 0) s += "_negscale";
  return s;
}

inline void PrintTo(const Case& c, std::ostream* os) { *os << case_name(c); }

// q, k, v, the CPU and GPU outputs and an optional key mask, on the host and the device.
struct Call {
  Case spec;
  TestTensor q, k, v, out_cpu, out_gpu;
  std::optional<TestTensor> mask;
  std::unique_ptr<DeviceCopy> dq, dk, dv, dout, dmask;
  std::optional<ta_token_layout> layout;
  ta_config cfg{};

  ta_attention_args cpu_args() const {
    return ta_attention_args{q.ptr(), k.ptr(), v.ptr(), mask ? mask->ptr() : nullptr, out_cpu.ptr(),
                             layout ? &*layout : nullptr};
  }
  ta_attention_args gpu_args() const {
    return ta_attention_args{dq->ptr(), dk->ptr(), dv->ptr(), dmask ? dmask->ptr() : nullptr, dout->ptr(),
                             layout ? &*layout : nullptr};
  }
};

// N(0, 1) inputs; with s.masked batch entry 0 complete and in the others every fifth key
// blocked, and the first ones. Config: the case's P, G, normalisation and scale, no
// min_tokens, no R limit.
inline std::unique_ptr<Call> make_call(const Case& s, uint64_t seed) {
  auto c = std::make_unique<Call>();
  c->spec = s;
  c->q = make_tensor(s.dtype, s.B, s.H, s.Nq, s.d, s.view);
  c->k = make_tensor(s.dtype, s.B, s.H, s.Nk, s.d, s.view);
  c->v = make_tensor(s.dtype, s.B, s.H, s.Nk, s.dv, s.view);
  c->out_cpu = make_tensor(s.dtype, s.B, s.H, s.Nq, s.dv, s.view);
  c->out_gpu = make_tensor(s.dtype, s.B, s.H, s.Nq, s.dv, s.view);
  Rng rng(seed);
  c->q.fill_normal(rng, 1.0);
  c->k.fill_normal(rng, 1.0);
  c->v.fill_normal(rng, 1.0);
  if (s.masked) {
    std::vector<uint8_t> keep(static_cast<size_t>(s.B * s.Nk), 1);
    for (int64_t b = 1; b < s.B; ++b) {
      for (int64_t j = 0; j < s.Nk; ++j) keep[static_cast<size_t>(b * s.Nk + j)] = (j % 5 != 3 && j > 2) ? 1 : 0;
    }
    Shape shape;
    shape.B = s.B, shape.H = s.H, shape.Nq = s.Nq, shape.Nk = s.Nk, shape.d = s.d, shape.dv = s.dv;
    c->mask = make_mask(MaskForm::B_Nk, TA_DTYPE_BOOL, shape, keep);
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
  cfg.min_tokens = 0;
  cfg.max_feature_dim_R = 1 << 24;
  cfg.scale_mul = s.normalize ? (s.scale_mul < 0 ? -1.0 : 1.0) : s.scale_mul;
  cfg.seed = 91;
  return c;
}

struct Outcome {
  ta_status status;
  ta_stats stats;
  std::string message;
  PassKernels kernels = PassKernels::kGeneric;
};

// Runs the call on the GPU (output canaries checked after the download) and records which
// kernels the backend selected.
inline Outcome run_gpu(Call& c, const ta_config& cfg) {
  Outcome o{};
  c.out_gpu.fill_bytes(0xA5);
  c.dout->upload(c.out_gpu);
  const ta_attention_args a = c.gpu_args();
  ta_stats_init(&o.stats);
  o.status = ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &o.stats);
  o.message = ta_last_error_message();
  o.kernels = ta::cuda::last_pass_kernels();
  c.dout->download(c.out_gpu);
  std::string where;
  EXPECT_TRUE(c.out_gpu.canaries_intact(0xA5, &where)) << "GPU wrote outside out: " << where;
  if (o.status == TA_OK) {
    EXPECT_EQ(o.stats.backend, TA_BACKEND_CUDA);
  }
  return o;
}

inline Outcome run_cpu(Call& c, const ta_config& cfg) {
  Outcome o{};
  const ta_attention_args a = c.cpu_args();
  ta_stats_init(&o.stats);
  o.status = ta_attention_run(&a, &cfg, nullptr, 0, nullptr, &o.stats);
  o.message = ta_last_error_message();
  return o;
}

// Relative L2 of the GPU output against the CPU engine's. Prefix x block paths: bf16
// coordinates, features and state (z as hi + lo), fp32 accumulation; measured 2.9e-3 (P = 3,
// the dev/cuda harness) and modelled 1.9e-3 (P = 4, EmulatedRoundingWithinTolerance)
// against fp64 on bf16 inputs. The generic kernels' test bound is 2e-2 for ~3e-3 observed:
// the same bound here, plus the output dtype's own rounding (bf16 2^-9, f16 2^-12 per
// element, on both outputs).
inline double cpu_tolerance(ta_dtype dt) {
  return 2e-2 + (dt == TA_DTYPE_BF16 ? 8e-3 : dt == TA_DTYPE_F16 ? 1e-3 : 0.0);
}

inline void expect_finite(const std::vector<double>& got) {
  for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(std::isfinite(got[i])) << "non-finite GPU output at " << i;
}

}  // namespace tatest::fastpath
