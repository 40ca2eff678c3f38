// Per-token scale factors: sqrt(|c|) (sign on the query side), times 1/(||x|| + eps)
// when qk_normalize. One warp per (unit, token); the big kernels then read raw inputs
// and multiply by one factor, so no normalised copy of q or k is ever stored.
#pragma once

#include "cuda/kernels/common.cuh"

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

}  // namespace ta::cuda
