// Prefix x block key pass: S_pad[r, :] = w_r sum_j phi_r(y_j) [v_j, 1, 0...] for one unit's
// 16 blocks per CTA (grid: 37 x units). The harness's v2 (dev/cuda/prefix_block.cu): on the
// H100 the two passes together reach 243 TFLOP/s useful against 67 for the generic
// kernels, which build every feature from fp32 coordinates through an index table and are
// bound by the shared-memory pipe (docs/perf-notes.md, v5).
//
// CTA = 8 warps; warp w owns blocks 2w, 2w + 1 of the CTA's 16 (accumulators 2 x 17 n-tiles
// x 4 fp32); the last CTA has 9 real blocks and its idle warps only help stage. Token tiles
// of 64 (the prepared y [64][128] and [v|1] [64][136], both at stride 136) arrive by cp.async
// in a KSTAGES ring, zero-filled beyond Nk, with one __syncthreads per tile. Per 16-token
// k-step and block: A = ldmatrix.x4.trans of the y slab (rows = the block's 16 dims, cols =
// tokens), each bf16 pair scaled in fp32 by its token's prefix (4 scalar loads from the tile:
// tokens 2t, 2t+1, 2t+8, 2t+9; col 128 holds 1.0, so DEG1 runs the same code) and rounded
// once; CONST is built from constants. B = ldmatrix.trans of the [v|1] slab, each fragment
// reused by both blocks: 34 mma per k-step per warp. With bf16, contiguous v
// (pb_direct_values) the [v|1] tile is staged from v itself and its "1" column written
// here, so the workspace holds no value rows.
#pragma once

#include "cuda/kernels/pb_common.cuh"

namespace ta::cuda {

template <int KSTAGES>
__global__ void __launch_bounds__(kPbThreads, 1)
    pb_key_pass(PassArgs a, const __nv_bfloat16* __restrict__ y, const __nv_bfloat16* __restrict__ vx,
                __nv_bfloat16* __restrict__ state) {
  static_assert(KSTAGES >= 2, "the ring needs a buffer to fill while one is read");
  constexpr int kST = kPbTileStride, kTile = kPbKeyTile * kST;  // stage s = y tile, then [v|1] tile
  static_assert(kST == kPbCols, "a [v|1] row is copied whole into a tile row");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const int64_t unit = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t n_tokens = a.g.Nk;
  const __nv_bfloat16* yu = y + unit * pb_key_tiles(n_tokens) * kPbKeyTile * kPbCols;  // tile images (pb_prep_keys)
  // Values: the prepared rows [v | 1 | 0 x 7], or with vx = NULL (pb_direct_values) the
  // unit's bf16 v slice itself, its "1" column written here (0 for masked keys).
  const bool direct = vx == nullptr;
  const __nv_bfloat16* vu = direct ? nullptr : vx + unit * n_tokens * kPbCols;
  int64_t vb = 0, vh = 0, vs_ = 0;
  unit_coords(a.g, a.g.unit0 + unit, &vb, &vh, &vs_);
  const auto* vsrc = static_cast<const __nv_bfloat16*>(a.v.data) + vb * a.v.s0 + vh * a.v.s1 + vs_ * kPbValueDim;

  const int list0 = static_cast<int>(blockIdx.x) * kPbKeyBlocksPerCta + warp * 2;
  const uint32_t desc[2] = {c_pb_list.d[list0], c_pb_list.d[list0 + 1]};
  const bool active = pb_kind(desc[0]) != kPbNull;  // only the last CTA has idle warps

  // The y tiles' cols 128..135 = [1, 0 x 7]: cp.async never writes them.
  for (int e = tid; e < KSTAGES * kPbKeyTile; e += kPbThreads) {
    const int s = e / kPbKeyTile, r = e % kPbKeyTile;
    *reinterpret_cast<uint4*>(smem + 2 * s * kTile + r * kST + kPbOnesCol) = make_uint4(kBf16One, 0u, 0u, 0u);
  }

  const int64_t n_tiles = (n_tokens + kPbKeyTile - 1) / kPbKeyTile;
  // Padding tokens are zero-filled, so they add nothing, not even to the CONST row whose A
  // fragment is built from constants. A [v|1] tile is one contiguous run of 64 rows x 272
  // bytes both in the workspace and in shared memory, and so is a y tile (its ones columns
  // are set above).
  auto stage_tile = [&](int64_t tile, int buf) {
    __nv_bfloat16* ks = smem + 2 * buf * kTile;
    __nv_bfloat16* vs = ks + kTile;
    const int64_t tok0 = tile * kPbKeyTile;
    for (int e = tid; e < kPbKeyTile * (kPbDim / 8); e += kPbThreads) {
      const int r = e >> 4, c = (e & 15) * 8;
      const bool valid = tok0 + r < n_tokens;
      cp_async16(ks + r * kST + c, yu + (valid ? tok0 + r : 0) * kPbCols + c, valid);
    }
    if (!direct) {
      for (int e = tid; e < kPbKeyTile * (kPbCols / 8); e += kPbThreads) {
        const bool valid = tok0 + e / (kPbCols / 8) < n_tokens;
        cp_async16(vs + e * 8, vu + (valid ? tok0 * kPbCols + e * 8 : 0), valid);
      }
      return;
    }
    // 16 chunks of 8 values per token by cp.async (zero-filled for masked and padding
    // keys), then per token the [1 | 0 x 7] chunk by a plain store: both land before the
    // barrier that publishes this buffer.
    for (int e = tid; e < kPbKeyTile * (kPbValueDim / 8); e += kPbThreads) {
      const int r = e >> 4, c = (e & 15) * 8;
      const int64_t tok = tok0 + r;
      const bool valid = tok < n_tokens && key_attends(a, vb, tok);
      cp_async16(vs + r * kST + c, vsrc + (valid ? tok * a.v.s2 + c : 0), valid);
    }
    for (int r = tid; r < kPbKeyTile; r += kPbThreads) {
      const int64_t tok = tok0 + r;
      const bool valid = tok < n_tokens && key_attends(a, vb, tok);
      *reinterpret_cast<uint4*>(vs + r * kST + kPbValueDim) = make_uint4(valid ? kBf16One : 0u, 0u, 0u, 0u);
    }
  };

  float acc[2][kPbNT][4];
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int n = 0; n < kPbNT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

#pragma unroll
  for (int s = 0; s < KSTAGES - 1; ++s) {
    if (s < n_tiles) stage_tile(s, s);
    cp_async_commit();
  }

  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    // Tile `tile` has landed, and every warp is done with the buffer refilled below.
    cp_async_wait<KSTAGES - 2>();
    __syncthreads();
    const int64_t next = tile + KSTAGES - 1;
    if (next < n_tiles) stage_tile(next, static_cast<int>(next % KSTAGES));
    cp_async_commit();
    if (!active) continue;

    const __nv_bfloat16* ks = smem + 2 * static_cast<int>(tile % KSTAGES) * kTile;
    const __nv_bfloat16* vs = ks + kTile;
#pragma unroll
    for (int kk = 0; kk < kPbKeyTile / 16; ++kk) {
      const __nv_bfloat16* kslab = ks + kk * 16 * kST;
      uint32_t a[2][4];
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        const uint32_t kind = pb_kind(desc[m]);
        if (kind == kPbConst) {
          // Row 0 = 1 for every token: rows g (= 0) of registers 0 and 2.
          a[m][0] = a[m][2] = g == 0 ? (kBf16One << 16 | kBf16One) : 0u;
          a[m][1] = a[m][3] = 0u;
        } else if (kind == kPbNull) {
          a[m][0] = a[m][1] = a[m][2] = a[m][3] = 0u;
        } else {
          // A = y slab transposed: matrix 0 = tokens 0..7 x dims +0..7 (rows g, cols 2t..),
          // 1 = tokens 0..7 x dims +8..15 (rows g + 8), 2 and 3 = tokens 8..15 (cols 2t + 8..).
          ldsm_x4_trans(a[m], kslab + ((lane & 7) + (lane >> 4) * 8) * kST + 16 * pb_bb(desc[m]) +
                                  ((lane >> 3) & 1) * 8);
          // The prefix of this thread's tokens 2t, 2t+1, 2t+8, 2t+9.
          const uint16_t* pc = reinterpret_cast<const uint16_t*>(kslab) + 2 * t * kST + pb_col(desc[m]);
          const float p0 = bf16_bits_to_float(pc[0]), p1 = bf16_bits_to_float(pc[kST]);
          const float p2 = bf16_bits_to_float(pc[8 * kST]), p3 = bf16_bits_to_float(pc[9 * kST]);
          a[m][0] = scale_bf16x2(a[m][0], p0, p1);
          a[m][1] = scale_bf16x2(a[m][1], p0, p1);
          a[m][2] = scale_bf16x2(a[m][2], p2, p3);
          a[m][3] = scale_bf16x2(a[m][3], p2, p3);
        }
      }
      pb_mma_slab<2>(acc, a, vs + kk * 16 * kST, lane);
    }
  }

  pb_store_state_rows<false>(acc, desc, list0, state + unit * kPbRows * kPbCols, lane);
}

}  // namespace ta::cuda
