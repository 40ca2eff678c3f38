// Exact softmax attention for sampled query rows on the GPU (the quality check's
// references), plus a copy of the same rows of the Taylor output. One block of 4
// warps per (batch*head, sample); each warp runs an online softmax over a strided
// share of the keys, lanes splitting the dot product and the value columns.
#pragma once

#include "cuda/kernels/common.cuh"

namespace ta::cuda {

constexpr int kQualityMaxValueCols = 8;  // value columns per lane: slices up to 256 wide

struct QualityArgs {
  Strided q, k, v;
  Strided out;  // read back as written
  int64_t B, H, Nq, Nk, d, dv;
  const uint8_t* keep;
  int64_t mask_batch_stride;
  const int64_t* rows;
  int32_t nrows;
  // The function to reference: G slices, normalisation, per-slice scale.
  int32_t G;
  int normalize;
  float eps, scale;
  float* ref;  // [B*H][nrows][dv]
  float* got;  // [B*H][nrows][dv] (may be NULL)
};

__global__ void __launch_bounds__(128) exact_rows(QualityArgs a) {
  constexpr int W = 4;
  __shared__ float red_m[W], red_l[W];
  __shared__ float red_o[W][32 * kQualityMaxValueCols];
  extern __shared__ float qs[];  // [d]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.x / a.nrows;
  const int sample = blockIdx.x % a.nrows;
  const int64_t b = bh / a.H, h = bh % a.H, qi = a.rows[sample];
  const int64_t ds = a.d / a.G, dvs = a.dv / a.G;
  float* ref_row = a.ref + (bh * a.nrows + sample) * a.dv;
  for (int g = 0; g < a.G; ++g) {
    __syncthreads();
    const int64_t qbase = b * a.q.s0 + h * a.q.s1 + qi * a.q.s2 + g * ds * a.q.s3;
    for (int64_t c = threadIdx.x; c < ds; c += blockDim.x) qs[c] = load_f(a.q.data, qbase + c * a.q.s3, a.q.dtype);
    __syncthreads();
    float qn = 1.0f;
    if (a.normalize) {
      float sq = 0.0f;
      for (int64_t c = lane; c < ds; c += 32) sq += qs[c] * qs[c];
      for (int o = 16; o > 0; o /= 2) sq += __shfl_xor_sync(0xffffffffu, sq, o);
      qn = 1.0f / (sqrtf(sq) + a.eps);
    }
    float m = -INFINITY, l = 0.0f, o[kQualityMaxValueCols] = {};
    const int64_t kbase = b * a.k.s0 + h * a.k.s1 + g * ds * a.k.s3;
    const int64_t vbase = b * a.v.s0 + h * a.v.s1 + g * dvs * a.v.s3;
    for (int64_t j = warp; j < a.Nk; j += W) {
      if (a.keep != nullptr && a.keep[b * a.mask_batch_stride + j] == 0) continue;
      float dot = 0.0f, kk = 0.0f;
      for (int64_t c = lane; c < ds; c += 32) {
        const float kv = load_f(a.k.data, kbase + j * a.k.s2 + c * a.k.s3, a.k.dtype);
        dot += qs[c] * kv;
        kk += kv * kv;
      }
      for (int off = 16; off > 0; off /= 2) {
        dot += __shfl_xor_sync(0xffffffffu, dot, off);
        kk += __shfl_xor_sync(0xffffffffu, kk, off);
      }
      float score = a.scale * dot * qn;
      if (a.normalize) score /= sqrtf(kk) + a.eps;
      const float m_new = fmaxf(m, score);
      const float corr = expf(m - m_new), p = expf(score - m_new);
      l = l * corr + p;
#pragma unroll
      for (int i = 0; i < kQualityMaxValueCols; ++i) {
        const int64_t c = lane + 32 * i;
        const float vv = c < dvs ? load_f(a.v.data, vbase + j * a.v.s2 + c * a.v.s3, a.v.dtype) : 0.0f;
        o[i] = o[i] * corr + p * vv;
      }
      m = m_new;
    }
    if (lane == 0) {
      red_m[warp] = m;
      red_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < kQualityMaxValueCols; ++i) red_o[warp][lane + 32 * i] = o[i];
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < W; ++w) M = fmaxf(M, red_m[w]);
    float L = 0.0f;
    for (int w = 0; w < W; ++w) L += red_l[w] * (red_m[w] == -INFINITY ? 0.0f : expf(red_m[w] - M));
    for (int64_t c = threadIdx.x; c < dvs; c += blockDim.x) {
      float acc = 0.0f;
      for (int w = 0; w < W; ++w) acc += red_o[w][c] * (red_m[w] == -INFINITY ? 0.0f : expf(red_m[w] - M));
      ref_row[g * dvs + c] = acc / L;  // no attended key: 0/0 = NaN, as exact attention gives
    }
  }
  if (a.got == nullptr) return;
  const int64_t obase = b * a.out.s0 + h * a.out.s1 + qi * a.out.s2;
  for (int64_t c = threadIdx.x; c < a.dv; c += blockDim.x) {
    a.got[(bh * a.nrows + sample) * a.dv + c] = load_f(a.out.data, obase + c * a.out.s3, a.out.dtype);
  }
}

}  // namespace ta::cuda
