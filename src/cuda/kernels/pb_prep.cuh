// Prepares the prefix x block key pass's inputs for a batch of units, so that pass can
// stream them with cp.async (its tiles are re-read by all 37 CTAs of a unit):
//   y[unit][t][0..135]   = [bf16(k_t * kfac_t), 1, 0 x 7]   (sqrt|c|, 1/norm when qk_normalize),
//                          t up to the last key tile's end (pb_key_bytes), padding rows zero
//   vx[unit][t][0..135]  = [bf16(v_t), 1, 0 x 7], all zero for masked keys
// Masked keys' rows are zero in vx only: their features then meet zero values and a zero
// "1" column, so they add nothing to S or z (even through the CONST row, which is 1 for
// every key). One thread per 16-byte chunk of an output row (kPbPrepChunks, kPbPrepTokens),
// blockIdx.y = unit. kValues = false: keys only (the key pass stages v from the input).
#pragma once

#include "cuda/kernels/passes_common.cuh"
#include "cuda/kernels/pb_common.cuh"

namespace ta::cuda {

// Threads per token: 16 key chunks, then the ones chunk of y, then (value rows only) the
// value row's 16 + 1 chunks. Tokens per block: 8 with value rows (264 threads), 16 without
// (272; a block of 8 tokens there left half of each block's threads idle).
template <bool kValues>
constexpr int kPbPrepChunks = kValues ? kPbDim / 8 + kPbCols / 8 : kPbDim / 8 + 1;
template <bool kValues>
constexpr int kPbPrepTokens = kValues ? 8 : 16;

template <bool kValues>
__global__ void __launch_bounds__(kPbPrepTokens<kValues> * kPbPrepChunks<kValues>)
    pb_prep_keys(PassArgs a, __nv_bfloat16* __restrict__ y, __nv_bfloat16* __restrict__ vx) {
  constexpr int kKChunks = kPbDim / 8, kChunks = kPbPrepChunks<kValues>;
  static_assert(kPbKeyTile % kPbPrepTokens<kValues> == 0, "blocks cover whole key tiles");
  const Geometry& g = a.g;
  const int64_t unit_local = blockIdx.y;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kPbPrepTokens<kValues> + threadIdx.x / kChunks;
  const int chunk = static_cast<int>(threadIdx.x % kChunks);
  const int64_t y_rows = pb_key_tiles(g.Nk) * kPbKeyTile;
  if (t >= y_rows) return;
  __nv_bfloat16* yrow = y + (unit_local * y_rows + t) * kPbCols;
  if (t >= g.Nk) {  // the last tile's padding rows: zeros (cols 0..135)
    if (chunk <= kKChunks) *reinterpret_cast<uint4*>(yrow + chunk * 8) = make_uint4(0u, 0u, 0u, 0u);
    return;
  }
  if (chunk == kKChunks) *reinterpret_cast<uint4*>(yrow + kPbOnesCol) = make_uint4(kBf16One, 0u, 0u, 0u);
  int64_t b, h, s;
  unit_coords(g, g.unit0 + unit_local, &b, &h, &s);
  float x[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  uint4* dst;
  if (chunk < kKChunks) {
    const int c0 = chunk * 8;
    const int64_t base = b * a.k.s0 + h * a.k.s1 + t * a.k.s2 + s * static_cast<int64_t>(kPbDim) * a.k.s3;
    pb_load8(a.k, base, c0, a.vec_k, x);
    const float f = a.kfac[unit_local * g.Nk + t];
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] *= f;
    dst = reinterpret_cast<uint4*>(yrow + c0);
  } else {
    if constexpr (!kValues) return;  // the key pass reads v itself (pb_direct_values)
    const int c0 = (chunk - kKChunks) * 8;
    if (key_attends(a, b, t)) {
      if (c0 < kPbValueDim) {
        const int64_t base = b * a.v.s0 + h * a.v.s1 + t * a.v.s2 + s * static_cast<int64_t>(kPbValueDim) * a.v.s3;
        pb_load8(a.v, base, c0, a.vec_v, x);
      } else {
        x[0] = 1.0f;  // the "1" column: z
      }
    }
    dst = reinterpret_cast<uint4*>(vx + (unit_local * g.Nk + t) * kPbCols + c0);
  }
  *dst = make_uint4(pack_bf16(x[0], x[1]), pack_bf16(x[2], x[3]), pack_bf16(x[4], x[5]), pack_bf16(x[6], x[7]));
}

}  // namespace ta::cuda
