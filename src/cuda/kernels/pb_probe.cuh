// Early probe of the prefix x block path: the denominators phi(x_i) . z of sampled queries
// from the state's z columns (z_hi + z_lo), right after the key pass. Each feature is formed
// as the query pass forms it (bf16(x_a x_b) from the same bf16 coordinates, weights folded
// into the state), so the probe sees the query pass's denominators up to the order of the
// fp32 sums. One warp per (unit, sampled query), lanes striding over the 9,360 state rows.
#pragma once

#include "cuda/kernels/pb_common.cuh"
#include "cuda/kernels/probe.cuh"

namespace ta::cuda {

template <bool kImage>  // the state's layout (pb_state_at)
__global__ void pb_probe(PassArgs a, const __nv_bfloat16* __restrict__ state, const int64_t* __restrict__ rows,
                         int32_t nrows, int32_t units) {
  constexpr int kWarps = 8;
  __shared__ float xs[kWarps][kPbDim + 1];  // col 128 = 1.0, the DEG1 prefix
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (item >= static_cast<int64_t>(nrows) * units) return;  // whole warps: no block barrier below
  const int64_t unit_local = item / nrows, qi = rows[item % nrows];
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  float* x = xs[warp];
  const int64_t base = b * a.q.s0 + h * a.q.s1 + qi * a.q.s2 + s * static_cast<int64_t>(kPbDim) * a.q.s3;
  const float f = a.qfac[unit_local * a.g.Nq + qi];
  for (int c = lane; c < kPbDim; c += 32) x[c] = pb_coordinate(load_f(a.q.data, base + c * a.q.s3, a.q.dtype), f);
  if (lane == 0) x[kPbOnesCol] = 1.0f;
  __syncwarp();
  const __nv_bfloat16* su = state + unit_local * kPbRows * kPbCols;
  float den = 0.0f;
  for (int r = lane; r < kPbRows; r += 32) {
    const uint32_t d = c_pb_list.d[r >> 4];
    const int i = r & 15;
    float feature = i == 0 ? 1.0f : 0.0f;  // CONST
    if (pb_kind(d) != kPbConst) feature = pb_coordinate(x[16 * pb_bb(d) + i], x[pb_col(d)]);
    const __nv_bfloat16* z = su + pb_state_at<kImage>(r, kPbValueDim);  // z_hi, z_lo
    den += feature * (__bfloat162float(z[0]) + __bfloat162float(z[1]));
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) den += __shfl_xor_sync(0xffffffffu, den, o);
  if (lane == 0) record_probe(a, item, den);
}

}  // namespace ta::cuda
