// Prefix x block query pass: acc = sum_r phi_r(x_i) S_pad[r, :] in fp32 for 256 queries per
// CTA (grid: ceil(Nq / 256) x units), o_i = acc[0:128] / (acc[128] + acc[129]). The
// harness's v2 query kernel (dev/cuda/prefix_block.cu) with the library's epilogue: the
// denominator guards and statistics, or the hybrid's num / den and den
// (kernels/query_pass.cuh does the same for the generic kernels), and the output stored
// once in its dtype through its strides.
//
// CTA = 8 warps x 32 query rows (2 m16 tiles). Prologue: the Q tile [256][136], staged by
// the CTA from q itself (any dtype and strides) as x = bf16(q * qfac), col 128 = 1.0 (the DEG1
// prefix): a one-time cost per 256 queries, so no copy of q is kept in the workspace. With
// QREG, ldmatrix.x4 of all 2 x 8 A fragments into registers (64 registers). Loop over the
// state in stages of SB blocks (a contiguous run of 16 SB rows x 272 bytes, copied as is)
// through a 3-stage cp.async ring. Per block: A = the Q fragment of column block bb (with
// QREG picked by a `switch`, so the index is a compile-time constant: a runtime index would
// put the 64 registers in local memory; without QREG loaded from the Q tile by 2 ldmatrix.x4,
// +8 shared-memory wavefronts per 34 mma) scaled per row by x_{i,a} (4 scalars per thread
// from the Q tile), or the CONST pattern; B = ldmatrix.trans of the stage, each fragment
// serving both m-tiles: 34 mma per block per warp.
#pragma once

#include "cuda/kernels/pb_common.cuh"
#include "cuda/kernels/query_pass.cuh"

namespace ta::cuda {

// A fragments of one DEG1/DEG2 block: the Q fragment of column block BB, rows scaled by
// their prefix (px[mt][0] for rows g, px[mt][1] for rows g + 8).
template <int BB>
__device__ __forceinline__ void pb_scale_q_block(uint32_t (&a)[2][4], const uint32_t (&qf)[2][8][4],
                                                 const float (&px)[2][2]) {
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    a[mt][0] = scale_bf16x2(qf[mt][BB][0], px[mt][0], px[mt][0]);
    a[mt][1] = scale_bf16x2(qf[mt][BB][1], px[mt][1], px[mt][1]);
    a[mt][2] = scale_bf16x2(qf[mt][BB][2], px[mt][0], px[mt][0]);
    a[mt][3] = scale_bf16x2(qf[mt][BB][3], px[mt][1], px[mt][1]);
  }
}

// Stages queries [q0, q0 + 256) of the unit as x = bf16(q * qfac) rows at stride 136 with
// cols 128..135 = [1, 0 x 7]; rows beyond Nq are zero (their outputs are not written).
__device__ __forceinline__ void pb_stage_queries(const PassArgs& a, int64_t unit_local, int64_t b, int64_t h,
                                                 int64_t s, int64_t q0, __nv_bfloat16* qs) {
  constexpr int kChunks = kPbDim / 8 + 1;  // 16 chunks of 8 coordinates, then the ones chunk
  const float* qfac = a.qfac + unit_local * a.g.Nq;
  const int64_t slice = b * a.q.s0 + h * a.q.s1 + s * static_cast<int64_t>(kPbDim) * a.q.s3;
  for (int e = threadIdx.x; e < kPbQueryRows * kChunks; e += blockDim.x) {
    const int r = e / kChunks, chunk = e % kChunks;
    const int64_t qi = q0 + r;
    uint4 val = make_uint4(0u, 0u, 0u, 0u);
    if (chunk == kChunks - 1) {
      val.x = kBf16One;
    } else if (qi < a.g.Nq) {
      const int c0 = chunk * 8;
      const int64_t row = slice + qi * a.q.s2;
      const float f = qfac[qi];
      float x[8];
      pb_load8(a.q, row, c0, a.vec_q, x);
      val = make_uint4(pack_bf16(x[0] * f, x[1] * f), pack_bf16(x[2] * f, x[3] * f), pack_bf16(x[4] * f, x[5] * f),
                       pack_bf16(x[6] * f, x[7] * f));
    }
    *reinterpret_cast<uint4*>(qs + r * kPbTileStride + chunk * 8) = val;
  }
}

// Rows scaled in place: A fragments just loaded from the Q tile (the QREG = false path).
__device__ __forceinline__ void pb_scale_rows(uint32_t (&a)[2][4], const float (&px)[2][2]) {
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    a[mt][0] = scale_bf16x2(a[mt][0], px[mt][0], px[mt][0]);
    a[mt][1] = scale_bf16x2(a[mt][1], px[mt][1], px[mt][1]);
    a[mt][2] = scale_bf16x2(a[mt][2], px[mt][0], px[mt][0]);
    a[mt][3] = scale_bf16x2(a[mt][3], px[mt][1], px[mt][1]);
  }
}

// The query passes' epilogue (P = 3: NT = 16 value n-tiles, P = 4: NT = 4; n-tile NT holds
// z_hi, z_lo in its cols 0 and 1, with t == 0, shared in the quad): den = z_hi part + z_lo
// part; plain mode guards it and folds it into the statistics, hybrid mode stores it and
// divides by its carrier (the window kernel finishes the row), as query_pass_mma does.
// Rows row0 + mt * MT_ROWS + g (+ 8) of the warp's two m16 tiles (MT_ROWS = 64 for the
// wgmma pass, whose warps hold rows 16 w.. of two m64 slots).
template <int NT, int MT_ROWS = 16>
__device__ __forceinline__ void pb_finish_rows(const PassArgs& a, const float (&acc)[2][NT + 1][4], int64_t unit_local,
                                               int64_t b, int64_t h, int64_t s, int64_t row0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const bool hybrid = a.wden != nullptr;
  unsigned int flags = 0, count = 0, le = 0, nonfin = 0;
  float dmin = INFINITY, dmax = -INFINITY;
  double dsum = 0.0;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float den = __shfl_sync(0xFFFFFFFFu, acc[mt][NT][2 * half] + acc[mt][NT][2 * half + 1], lane & ~3);
      const int64_t qi = row0 + mt * MT_ROWS + g + 8 * half;
      if (qi >= a.g.Nq) continue;
      if (hybrid) {
        if (t == 0) a.wden[unit_local * a.g.Nq + qi] = den;
        den = carrier_denominator(den);
      } else if (t == 0) {
        den = account_denominator(a, den, &flags, &dmin, &dmax, &dsum, &count, &le, &nonfin);
      } else if (den <= a.eps && isfinite(den)) {
        den = a.eps;
      }
      unsigned int row_flags = 0;
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        row_flags |= emit_row(a, b, h, s, qi, n * 8 + 2 * t, 1, 2, den, [&](int k) { return acc[mt][n][2 * half + k]; });
      }
      if (!hybrid) flags |= row_flags;
    }
  }
  flush_stats(a.stats, flags, dmin, dmax, dsum, count, le, nonfin);
}

// Whether Q fragments can stay in registers: ptxas for sm_120 spills ~110 bytes of the
// 136 accumulators + 64 Q registers (the harness spills 128 there; sm_80..sm_90: 254
// registers, no spill), so there the fragments are reloaded per block. sm_120 cards have
// 99 KB of shared memory and run the small shape anyway, which always reloads.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1200
constexpr bool kPbArchKeepsQ = false;
#else
constexpr bool kPbArchKeepsQ = true;
#endif

template <int SB, bool QREG>
__global__ void __launch_bounds__(kPbThreads, 1) pb_query_pass(PassArgs a, const __nv_bfloat16* __restrict__ state) {
  constexpr bool kQReg = QREG && kPbArchKeepsQ;
  constexpr int kST = kPbTileStride, kStageRows = 16 * SB;
  constexpr int kStages = (kPbBlocks + SB - 1) / SB;
  static_assert(kST == kPbCols, "state stages are copied as contiguous bytes");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [256][136]
  __nv_bfloat16* ss = qs + kPbQueryRows * kST;                      // [3][16 SB][136]
  const int64_t unit_local = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kPbQueryRows;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int wrow = warp * 32;  // the warp's first query row in the tile
  const __nv_bfloat16* su = state + unit_local * kPbRows * kPbCols;

  auto stage_state = [&](int st) {
    __nv_bfloat16* dst = ss + (st % kPbQueryRing) * kStageRows * kST;
    const __nv_bfloat16* src = su + static_cast<int64_t>(st) * kStageRows * kPbCols;
    const int rows = kPbRows - st * kStageRows < kStageRows ? kPbRows - st * kStageRows : kStageRows;
    const int chunks = rows * (kPbCols / 8);
    for (int e = tid; e < chunks; e += kPbThreads) cp_async16(dst + e * 8, src + e * 8, true);
  };
  static_assert(kPbQueryRing == 3, "the waits below keep one stage in flight behind the one read");
  stage_state(0);
  cp_async_commit();  // group 0: stage 0
  stage_state(1);
  cp_async_commit();  // group 1: stage 1
  pb_stage_queries(a, unit_local, b, h, s, q0, qs);  // while the first stages are in flight
  cp_async_wait<1>();
  __syncthreads();

  // Q fragments of the warp's 2 m-tiles (x 8 column blocks with kQReg: 64 registers):
  // matrix 0 = rows 0..7 x cols +0..7, 1 = rows 8..15, 2 and 3 = cols +8..15.
  const __nv_bfloat16* qlane = qs + (wrow + (lane & 7) + ((lane >> 3) & 1) * 8) * kST + (lane >> 4) * 8;
  uint32_t qf[2][kQReg ? 8 : 1][4];
  if constexpr (kQReg) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int cb = 0; cb < 8; ++cb) ldsm_x4(qf[mt][cb], qlane + mt * 16 * kST + cb * 16);
  }

  float acc[2][kPbNT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < kPbNT; ++n) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;

  const uint16_t* qbits = reinterpret_cast<const uint16_t*>(qs);
  for (int st = 0; st < kStages; ++st) {
    if (st > 0) {
      // Stage st has landed, and every warp is done with stage st - 1's buffer (refilled below).
      cp_async_wait<1>();
      __syncthreads();
    }
    if (st + 2 < kStages) stage_state(st + 2);
    cp_async_commit();
    const __nv_bfloat16* sbuf = ss + (st % kPbQueryRing) * kStageRows * kST;
    const int nb = kPbBlocks - st * SB < SB ? kPbBlocks - st * SB : SB;
    for (int bi = 0; bi < nb; ++bi) {
      const uint32_t d = c_pb_list.d[st * SB + bi];
      uint32_t af[2][4];
      if (pb_kind(d) == kPbConst) {
        // Column 0 = 1 for every query: the low half of registers 0 and 1 when t == 0.
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          af[mt][0] = af[mt][1] = t == 0 ? kBf16One : 0u;
          af[mt][2] = af[mt][3] = 0u;
        }
      } else {
        const int col = pb_col(d);
        float px[2][2];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          px[mt][0] = bf16_bits_to_float(qbits[(wrow + mt * 16 + g) * kST + col]);
          px[mt][1] = bf16_bits_to_float(qbits[(wrow + mt * 16 + g + 8) * kST + col]);
        }
        if constexpr (kQReg) {
          switch (pb_bb(d)) {
            case 0: pb_scale_q_block<0>(af, qf, px); break;
            case 1: pb_scale_q_block<1>(af, qf, px); break;
            case 2: pb_scale_q_block<2>(af, qf, px); break;
            case 3: pb_scale_q_block<3>(af, qf, px); break;
            case 4: pb_scale_q_block<4>(af, qf, px); break;
            case 5: pb_scale_q_block<5>(af, qf, px); break;
            case 6: pb_scale_q_block<6>(af, qf, px); break;
            default: pb_scale_q_block<7>(af, qf, px); break;
          }
        } else {
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) ldsm_x4(af[mt], qlane + mt * 16 * kST + pb_bb(d) * 16);
          pb_scale_rows(af, px);
        }
      }
      pb_mma_slab<2>(acc, af, sbuf + bi * 16 * kST, lane);
    }
  }

  pb_finish_rows<16>(a, acc, unit_local, b, h, s, q0 + wrow, lane);
}

}  // namespace ta::cuda
