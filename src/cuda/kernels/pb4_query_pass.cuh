// P = 4 prefix x block query pass: acc = sum_r phi_r(x_i) S_pad[r, :] in fp32 for 256
// queries per CTA (grid: ceil(Nq / 256) x units), o_i = acc[0:32] / (acc[32] + acc[33]),
// with pb_query_pass's epilogue semantics (kernels/query_pass.cuh's emit_row and
// passes_common.cuh's guards and statistics; the hybrid's num / den and den), the output
// stored once in its dtype through its strides.
//
// CTA = 8 warps x 32 query rows (2 m16 tiles). Shared memory (68,096 bytes):
//   qs [256][40]: x = bf16(q * qfac), col 32 = 1.0, cols 33..39 = 0 (80-byte rows);
//   xp [33][256]: the same coordinates transposed, rows permuted so that a thread's 4 query
//                 rows (g, g+8 of both m-tiles) are adjacent: x_c of tile row r sits at
//                 xp[c][32 (r / 32) + 4 (r % 8) + (r % 32) / 8] (row 32: 1.0);
//   ring [3][128][40]: stages of 8 state blocks (128 rows, one contiguous 10 KB run).
// Per block (two halves, 16 state rows): prefixes p = bf16(x_a x_b) of the 4 rows from two
// 8-byte loads of xp and two bf16x2 products (only when the half's pair differs from the
// previous half's: the list keeps a pair's halves together); A of m-tile mt = ldmatrix.x4 of
// the Q tile, lane l addressing row 16 mt + (l & 7) + 8 ((l >> 3) & 1) at column 8 cb0 (l <
// 16) or 8 cb1 (l >= 16): reg0 = (row g, coords 8 cb0 + 2t, +1), reg1 = (row g + 8, same),
// reg2 / reg3 = rows g / g + 8 of cb1's coords, so A's k columns 0..7 are half 0's
// coordinates and 8..15 half 1's, matching state rows 0..7 / 8..15 of the block. reg0 / reg1
// are scaled by half 0's prefix of rows g / g + 8, reg2 / reg3 by half 1's (each bf16x2 =
// the row's prefix twice). B = ldmatrix.trans of the 16 state rows (pb4_mma_slab), each
// fragment serving both m-tiles: 10 mma per block per warp.
#pragma once

#include "cuda/kernels/pb4_common.cuh"
#include "cuda/kernels/pb_query_pass.cuh"  // pb_finish_rows
#include "cuda/kernels/query_pass.cuh"

namespace ta::cuda {

constexpr int kPb4XpStride = kPb4QueryRows;  // xp row: the 256 queries of the tile

// Position of tile row r in an xp row: a thread's 4 rows, (g, g + 8) of its first m-tile then
// of its second, are adjacent (one 8-byte load). WG: the wgmma pass's rows (warp 4 G + j
// holds rows 128 G + 64 mt + 16 j + (g, g + 8)); else warp w holds rows 32 w + 16 mt + ...
template <bool WG>
__device__ __forceinline__ int pb4_prefix_position(int r) {
  if constexpr (WG) return 32 * (4 * (r >> 7) + ((r >> 4) & 3)) + 4 * (r & 7) + 2 * ((r >> 6) & 1) + ((r >> 3) & 1);
  return (r & ~31) + 4 * (r & 7) + ((r >> 3) & 3);
}

// Stages queries [q0, q0 + 256) of the unit into qs and xp (see the header); rows beyond
// Nq are zero (their outputs are not written).
template <bool WG = false>
__device__ __forceinline__ void pb4_stage_queries(const PassArgs& a, int64_t unit_local, int64_t b, int64_t h,
                                                  int64_t s, int64_t q0, __nv_bfloat16* qs, __nv_bfloat16* xp) {
  constexpr int kChunks = kPb4Dim / 8 + 1;  // 4 chunks of 8 coordinates, then [1, 0 x 7]
  const float* qfac = a.qfac + unit_local * a.g.Nq;
  const int64_t slice = b * a.q.s0 + h * a.q.s1 + s * static_cast<int64_t>(kPb4Dim) * a.q.s3;
  for (int e = threadIdx.x; e < kPb4QueryRows * kChunks; e += blockDim.x) {
    const int r = e / kChunks, chunk = e % kChunks;
    const int64_t qi = q0 + r;
    uint32_t w[4] = {0u, 0u, 0u, 0u};
    if (chunk == kChunks - 1) {
      w[0] = kBf16One;
    } else if (qi < a.g.Nq) {
      const float f = qfac[qi];
      float x[8];
      pb_load8(a.q, slice + qi * a.q.s2, chunk * 8, a.vec_q, x);
#pragma unroll
      for (int i = 0; i < 4; ++i) w[i] = pack_bf16(x[2 * i] * f, x[2 * i + 1] * f);
    }
    *reinterpret_cast<uint4*>(qs + r * kPb4Stride + chunk * 8) = make_uint4(w[0], w[1], w[2], w[3]);
    // The prefix copy: row r of the tile -> pb4_prefix_position.
    const int pos = pb4_prefix_position<WG>(r);
    uint16_t* xrow = reinterpret_cast<uint16_t*>(xp) + chunk * 8 * kPb4XpStride + pos;
    if (chunk == kChunks - 1) {
      xrow[0] = static_cast<uint16_t>(kBf16One);  // row 32 only: rows 33..39 are never read
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) xrow[i * kPb4XpStride] = static_cast<uint16_t>(w[i / 2] >> (16 * (i % 2)));
    }
  }
}

__global__ void __launch_bounds__(kPb4Threads, 2) pb4_query_pass(PassArgs a, const __nv_bfloat16* __restrict__ state) {
  constexpr int kStageRows = 16 * kPb4StageBlocks;
  constexpr int kStages = (kPb4Blocks + kPb4StageBlocks - 1) / kPb4StageBlocks;  // 68
  static_assert(kStages >= 2 && kPb4QueryRing == 3, "the waits below keep one stage in flight behind the one read");
  static_assert((kPb4QueryRows * kPb4Stride + 33 * kPb4XpStride + kPb4QueryRing * kStageRows * kPb4Stride) * 2 ==
                    pb4_query_smem(),
                "the plan's shared-memory size");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [256][40]
  __nv_bfloat16* xp = qs + kPb4QueryRows * kPb4Stride;             // [33][256]
  __nv_bfloat16* ss = xp + 33 * kPb4XpStride;                      // [3][128][40]
  const int64_t unit_local = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kPb4QueryRows;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2;
  const int wrow = warp * 32;  // the warp's first query row in the tile
  const __nv_bfloat16* su = state + unit_local * kPb4StateRows * kPb4Cols;

  auto stage_state = [&](int st) {
    __nv_bfloat16* dst = ss + (st % kPb4QueryRing) * kStageRows * kPb4Stride;
    const __nv_bfloat16* src = su + static_cast<int64_t>(st) * kStageRows * kPb4Cols;
    const int rows = kPb4Rows - st * kStageRows < kStageRows ? kPb4Rows - st * kStageRows : kStageRows;
    const int chunks = rows * (kPb4Cols / 8);
    for (int e = tid; e < chunks; e += kPb4Threads) cp_async16(dst + e * 8, src + e * 8, true);
  };
  stage_state(0);
  cp_async_commit();  // group 0: stage 0
  stage_state(1);
  cp_async_commit();                                      // group 1: stage 1
  pb4_stage_queries(a, unit_local, b, h, s, q0, qs, xp);  // while the first stages are in flight
  cp_async_wait<1>();
  __syncthreads();

  float acc[2][kPb4NT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < kPb4NT; ++n) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;

  // This lane's Q-tile row for the A ldmatrix (m-tile 0; m-tile 1 adds 16 rows) and its
  // 4 rows' slot in an xp row.
  const __nv_bfloat16* qlane = qs + (wrow + (lane & 7) + ((lane >> 3) & 1) * 8) * kPb4Stride;
  const bool upper = (lane >> 4) != 0;  // matrices 2 / 3: half 1's coordinate block
  const __nv_bfloat16* xlane = xp + wrow + 4 * g;
  uint32_t cached_pair = 0xFFFFFFFFu;  // no pair
  uint2 pre = make_uint2(0u, 0u);      // .x = rows (g, g+8) of m-tile 0, .y = of m-tile 1

  for (int st = 0; st < kStages; ++st) {
    if (st > 0) {
      // Stage st has landed, and every warp is done with stage st - 1's buffer (refilled below).
      cp_async_wait<1>();
      __syncthreads();
    }
    if (st + 2 < kStages) stage_state(st + 2);
    cp_async_commit();
    const __nv_bfloat16* sbuf = ss + (st % kPb4QueryRing) * kStageRows * kPb4Stride;
    const int nb =
        kPb4Blocks - st * kPb4StageBlocks < kPb4StageBlocks ? kPb4Blocks - st * kPb4StageBlocks : kPb4StageBlocks;
    for (int bi = 0; bi < nb; ++bi) {
      const int blk = st * kPb4StageBlocks + bi;
      const uint32_t d[2] = {c_pb4_list.d[2 * blk], c_pb4_list.d[2 * blk + 1]};
      uint2 p[2];
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        if (pb4_pair(d[hh]) != cached_pair) {  // uniform: the same list entry for every thread
          cached_pair = pb4_pair(d[hh]);
          const uint2 xa = *reinterpret_cast<const uint2*>(xlane + pb4_col_a(d[hh]) * kPb4XpStride);
          const uint2 xb = *reinterpret_cast<const uint2*>(xlane + pb4_col_b(d[hh]) * kPb4XpStride);
          pre = make_uint2(bf16x2_mul(xa.x, xb.x), bf16x2_mul(xa.y, xb.y));
        }
        p[hh] = pre;
      }
      const int col = 8 * pb4_cb(upper ? d[1] : d[0]);
      uint32_t af[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        ldsm_x4(af[mt], qlane + mt * 16 * kPb4Stride + col);
        const uint32_t p0 = mt == 0 ? p[0].x : p[0].y, p1 = mt == 0 ? p[1].x : p[1].y;
        // __byte_perm 0x1010 = the low bf16 twice (row g), 0x3232 = the high one (row g + 8).
        af[mt][0] = bf16x2_mul(af[mt][0], __byte_perm(p0, 0u, 0x1010));
        af[mt][1] = bf16x2_mul(af[mt][1], __byte_perm(p0, 0u, 0x3232));
        af[mt][2] = bf16x2_mul(af[mt][2], __byte_perm(p1, 0u, 0x1010));
        af[mt][3] = bf16x2_mul(af[mt][3], __byte_perm(p1, 0u, 0x3232));
      }
      pb4_mma_slab<2>(acc, af, sbuf + bi * 16 * kPb4Stride, lane);
    }
  }

  pb_finish_rows<4>(a, acc, unit_local, b, h, s, q0 + wrow, lane);
}

}  // namespace ta::cuda
