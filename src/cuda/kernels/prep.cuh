// Per-token scale factors: sqrt(|c|) (sign on the query side), times 1/(||x|| + eps)
// when qk_normalize. One warp per (unit, token); the big kernels then read raw inputs
// and multiply by one factor, so no normalised copy of q or k is ever stored.
#pragma once

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/passes_common.cuh"

namespace ta::cuda {

__global__ void token_factors(Geometry g, Strided x, int64_t tokens, int32_t units, float mul, int normalize,
                              float eps, float* __restrict__ out) {
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= tokens * units) return;
  const int64_t unit = g.unit0 + warp / tokens;
  const int64_t t = warp % tokens;
  float f = mul;
  if (normalize) {
    int64_t b, h, s;
    unit_coords(g, unit, &b, &h, &s);
    const int64_t base = b * x.s0 + h * x.s1 + t * x.s2 + static_cast<int64_t>(s) * g.ds * x.s3;
    float sq = 0.0f;
    for (int c = lane; c < g.ds; c += 32) {
      const float v = load_f(x.data, base + c * x.s3, x.dtype);
      sq += v * v;
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    f = mul / (sqrtf(sq) + eps);
  }
  if (lane == 0) out[warp] = f;
}

// token_factors with one 16-byte load per lane: L lanes per token (L = slice width / the
// elements of one 16-byte vector, a power of two up to 32; needs PassArgs::vec_*'s layout),
// 32 / L tokens per warp, the squares summed across the L lanes by shuffles. The scalar
// kernel's warp per token with 2- or 4-byte loads ran at ~0.6 TB/s (ncu, H200, N = 66,048,
// 24 heads: 0.64 ms per side), a quarter of what the prefix x block prep kernel reads at.
template <int L>
__global__ void __launch_bounds__(256) token_factors_vec(Geometry g, Strided x, int64_t tokens, int32_t units,
                                                         float mul, float eps, float* __restrict__ out) {
  static_assert(L >= 1 && L <= 32 && (L & (L - 1)) == 0, "lanes per token: a power of two up to a warp");
  const int64_t item = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / L;
  const int sub = static_cast<int>(threadIdx.x % L);
  const bool valid = item < tokens * units;
  float sq = 0.0f;
  if (valid) {
    const int64_t unit = g.unit0 + item / tokens, t = item % tokens;
    int64_t b, h, s;
    unit_coords(g, unit, &b, &h, &s);
    const int per = vector_elems(x.dtype);
    load_vector(x.data, b * x.s0 + h * x.s1 + t * x.s2 + s * g.ds + sub * per, x.dtype,
                [&](int, float v) { sq += v * v; });
  }
  // Every lane takes part (no early return): the shuffles name the full warp.
#pragma unroll
  for (int o = L / 2; o > 0; o /= 2) sq += __shfl_xor_sync(0xffffffffu, sq, o);
  if (valid && sub == 0) out[item] = mul / (sqrtf(sq) + eps);
}

}  // namespace ta::cuda
