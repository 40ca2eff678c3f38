// Early probe: denominators phi(q_i) . z of sampled queries, one warp per
// (unit, sampled query), lanes striding over the features.
#pragma once

#include "cuda/kernels/passes_common.cuh"

namespace ta::cuda {

// One sampled row's Taylor denominator: kept for probe_window in the hybrid (which turns it
// into the hybrid's and judges that), else judged here and folded into the probe statistics.
__device__ __forceinline__ void record_probe(const PassArgs& a, int64_t item, float den) {
  if (a.probe_den != nullptr) {
    a.probe_den[item] = den;
    return;
  }
  unsigned int flags = 0;
  if (!isfinite(den)) flags |= kFlagDenInvalid;
  else if (den <= a.eps && a.fallback_on_negative) flags |= kFlagDenTooSmall;
  if (flags) atomicOr(&a.stats->probe_flags, flags);
  if (isfinite(den)) atomicMin(&a.stats->probe_min_bits, ordered_bits(den));
}

template <int NC, int DMAX>
__global__ void probe_denominators(PassArgs a, const int64_t* __restrict__ rows, int32_t nrows, int32_t units) {
  extern __shared__ float smem[];
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * warps + warp;
  const int ds = a.g.ds;
  float* x = smem + warp * ds;
  const bool active = item < static_cast<int64_t>(nrows) * units;
  const int64_t unit_local = active ? item / nrows : 0;
  const int64_t qi = active ? rows[item % nrows] : 0;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  if (active) {
    const int64_t base = b * a.q.s0 + h * a.q.s1 + qi * a.q.s2 + s * static_cast<int64_t>(ds) * a.q.s3;
    const float f = a.qfac[unit_local * a.g.Nq + qi];
    for (int c = lane; c < ds; c += 32) x[c] = load_f(a.q.data, base + c * a.q.s3, a.q.dtype) * f;
  }
  __syncwarp();
  if (!active) return;
  const float* S_unit = a.S + unit_local * a.g.R * NC;
  float den = 0.0f;
  for (int64_t r = lane; r < a.g.R; r += 32) {
    uint8_t ids[16];
    load_ids(a.ids, r, ids);
    den += feature_value<DMAX>(ids, x, 1) * S_unit[r * NC + a.g.dvs];
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) den += __shfl_xor_sync(0xffffffffu, den, o);
  if (lane == 0) record_probe(a, item, den);
}

}  // namespace ta::cuda
