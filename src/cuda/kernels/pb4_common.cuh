// Device pieces the P = 4 prefix x block kernels share (cuda/prefix_block4_plan.h has the
// math and the half list): the list in constant memory and the 5 n-tile mma sweep over one
// 16-row slab of a 40-column tile. cp.async, ldmatrix, the bf16x2 product that forms
// prefixes and features, and the fragment facts are pb_common.cuh's (its header comment
// lists the PTX fragment layouts every address formula here relies on).
#pragma once

#include "cuda/kernels/pb_common.cuh"
#include "cuda/prefix_block4_plan.h"

namespace ta::cuda {

// Built at compile time (and checked there: prefix_block4_plan.h), so no upload per device.
__constant__ Pb4HalfList c_pb4_list = pb4_half_list();

constexpr int kPb4NT = kPb4Cols / 8;  // 5 n-tiles of m16n8k16 over the 40 state columns

// yP row offsets of each of a warp's halves' prefix pair (a | b << 16, in elements), decoded
// once per warp rather than per k-step (ncu on a wgmma version of the key pass: per-step
// decoding of the list entries was a large share of its instructions).
__device__ __forceinline__ void pb4_prefix_offsets(const uint32_t (&desc)[2 * kPb4KeyWarpBlocks],
                                                   uint32_t (&p_off)[2 * kPb4KeyWarpBlocks]) {
#pragma unroll
  for (int h = 0; h < 2 * kPb4KeyWarpBlocks; ++h) {
    p_off[h] = static_cast<uint32_t>(pb4_col_a(desc[h]) * kPb4KeyTile) |
               static_cast<uint32_t>(pb4_col_b(desc[h]) * kPb4KeyTile) << 16;
  }
}

// Element offset of (row r, column c) in a unit's S_pad: rows of 40 values, or (image, the
// wgmma path) each query-pass stage of 128 rows as the image of its shared-memory tile in the
// core-matrix layout, so that one bulk copy stages it.
__device__ __forceinline__ int64_t pb4_state_at(int r, int c, bool image) {
  constexpr int kStageRows = 16 * kPb4StageBlocks;
  if (!image) return static_cast<int64_t>(r) * kPb4Cols + c;
  return static_cast<int64_t>(r / kStageRows) * kStageRows * kPb4Cols + core_offset<kPb4NT>(r % kStageRows, c >> 3) +
         (c & 7);
}

// The key passes' epilogue: a warp's kPb4KeyWarpBlocks blocks (from blk0) from accumulators
// in the mma C layout (rows g = half 0's row g, rows g + 8 = half 1's), weights folded in,
// stored as bf16 rows of the unit's S_pad su (layout: pb4_state_at); z split into hi + lo
// (cols 32, 33, held by t == 0), cols 34..39 = 0. The list's trailing null block is stored
// as zeros in the image layout (the last stage's eighth block) and not at all otherwise.
__device__ __forceinline__ void pb4_store_state_rows(const float (&acc)[kPb4KeyWarpBlocks][kPb4NT][4],
                                                     const uint32_t (&desc)[2 * kPb4KeyWarpBlocks], int blk0,
                                                     __nv_bfloat16* su, int lane, bool image) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int m = 0; m < kPb4KeyWarpBlocks; ++m) {
    const int blk = blk0 + m;
    if (blk >= (image ? kPb4StateRows / 16 : kPb4Blocks)) continue;
    const bool null = blk >= kPb4Blocks;
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const float w = null ? 0.0f : pb4_weight(desc[2 * m + hh], g);
      const int r = blk * 16 + 8 * hh + g;
      auto put = [&](int c, uint32_t pair) { *reinterpret_cast<uint32_t*>(su + pb4_state_at(r, c, image)) = pair; };
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        put(8 * n + 2 * t, w == 0.0f ? 0u : pack_bf16(acc[m][n][2 * hh] * w, acc[m][n][2 * hh + 1] * w));
      }
      const float z = acc[m][4][2 * hh] * w;
      const float z_hi = __bfloat162float(__float2bfloat16_rn(z));
      put(kPb4ValueDim + 2 * t, t == 0 && w != 0.0f ? pack_bf16(z_hi, z - z_hi) : 0u);
    }
  }
}

// acc[m][n] += a[m] x B_n for the 5 n-tiles of one 16-row slab (rows along k) of a tile at
// row stride kPb4Stride (40 bf16 = 80 bytes: conflict-free, prefix_block4_plan.h). B from
// ldmatrix .trans: for x4 number np, lane l addresses k row (l & 7) + 8 ((l >> 3) & 1) and
// column 16 np + 8 (l >> 4), so matrix 0 = k rows 0..7 x cols 16np + 0..7 -> (rows 2t, 2t+1,
// col g) = b0 of n-tile 2np, matrix 1 = k rows 8..15 (b1 of n-tile 2np), matrices 2 and 3 the
// same for n-tile 2np + 1. n-tile 4 (cols 32..39) is an x2: lanes 0..15 give its addresses
// (lanes 16..31 repeat them; ldmatrix ignores them). Each B fragment serves the MT A
// fragments.
template <int MT>
__device__ __forceinline__ void pb4_mma_slab(float (&acc)[MT][kPb4NT][4], const uint32_t (&a)[MT][4],
                                             const __nv_bfloat16* slab, int lane) {
  const __nv_bfloat16* lrow = slab + ((lane & 7) + ((lane >> 3) & 1) * 8) * kPb4Stride;
  uint32_t b[2][4], b4[2];
  ldsm_x4_trans(b[0], lrow + (lane >> 4) * 8);
  ldsm_x4_trans(b[1], lrow + 16 + (lane >> 4) * 8);
  ldsm_x2_trans(b4, lrow + 32);
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int np = 0; np < 2; ++np) {
      mma_bf16_16816(acc[m][2 * np], a[m], b[np][0], b[np][1]);
      mma_bf16_16816(acc[m][2 * np + 1], a[m], b[np][2], b[np][3]);
    }
    mma_bf16_16816(acc[m][4], a[m], b4[0], b4[1]);
  }
}

}  // namespace ta::cuda
