// Early probe of the P = 4 prefix x block path: the denominators phi(x_i) . z of sampled
// queries from the state's z columns (z_hi + z_lo), right after the key pass. Each feature
// is formed as the query pass forms it: x = bf16(q * qfac), prefix bf16(x_a x_b), feature
// bf16(prefix x_c) (a product of two bf16 values is exact in fp32, so rounding it to bf16
// equals the bf16x2 multiply), weights folded into the state; the probe therefore sees the
// query pass's denominators up to the order of the fp32 sums. One warp per (unit, sampled
// query), lanes striding over the 8,688 state rows.
#pragma once

#include "cuda/kernels/pb4_common.cuh"
#include "cuda/kernels/probe.cuh"

namespace ta::cuda {

__global__ void pb4_probe(PassArgs a, const __nv_bfloat16* __restrict__ state, const int64_t* __restrict__ rows,
                          int32_t nrows, int32_t units, int image) {
  constexpr int kWarps = 8;
  __shared__ float xs[kWarps][kPb4Cols];  // cols 32..39 = [1, 0 x 7], as the staged Q tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (item >= static_cast<int64_t>(nrows) * units) return;  // whole warps: no block barrier below
  const int64_t unit_local = item / nrows, qi = rows[item % nrows];
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  float* x = xs[warp];
  const int64_t base = b * a.q.s0 + h * a.q.s1 + qi * a.q.s2 + s * static_cast<int64_t>(kPb4Dim) * a.q.s3;
  const float f = a.qfac[unit_local * a.g.Nq + qi];
  x[lane] = pb_coordinate(load_f(a.q.data, base + lane * a.q.s3, a.q.dtype), f);  // 32 lanes = 32 dims
  if (lane < kPb4Cols - kPb4Dim) x[kPb4OnesCol + lane] = lane == 0 ? 1.0f : 0.0f;
  __syncwarp();
  const __nv_bfloat16* su = state + unit_local * kPb4StateRows * kPb4Cols;
  float den = 0.0f;
  for (int r = lane; r < kPb4Rows; r += 32) {
    const uint32_t d = c_pb4_list.d[r >> 3];  // 8 rows per half
    const float prefix = pb_coordinate(x[pb4_col_a(d)], x[pb4_col_b(d)]);
    const float feature = pb_coordinate(x[8 * pb4_cb(d) + (r & 7)], prefix);
    const __nv_bfloat16* z = su + pb4_state_at(r, kPb4ValueDim, image != 0);  // z_hi, z_lo
    den += feature * (__bfloat162float(z[0]) + __bfloat162float(z[1]));
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) den += __shfl_xor_sync(0xffffffffu, den, o);
  if (lane == 0) record_probe(a, item, den);
}

}  // namespace ta::cuda
