// P = 4 prefix x block key pass: S_pad[r, :] = w_r sum_j phi_r(y_j) [v_j, 1, 0...] for one
// unit's 32 blocks per CTA (grid: 17 x units; the list's 544th block is null: stored as
// zeros in the wgmma path's image layout, not at all otherwise). Half-block design and the
// list: cuda/prefix_block4_plan.h.
//
// CTA = 8 warps; warp w owns blocks 4w .. 4w + 3 of the CTA's 32 (accumulators 4 x 5 n-tiles
// x 4 fp32 = 80). One CTA per SM (__launch_bounds__(256, 1); 172 registers on sm_90): at
// two, ptxas (nvcc 13, sm_90) caps the kernel at 128 registers and spills ~90 bytes. Token
// tiles of 64 arrive by cp.async in a 3-stage ring (zero tokens beyond Nk, prepared so by
// pb4_prep_keys), one __syncthreads per tile. A stage holds
//   yT [40][72]: dims x tokens; rows 0..31 copied, rows 32..39 constant [1, 0 x 7] (CONST);
//   yP [33][64]: the prefix copy (tokens permuted per 16, pb4_prep.cuh); row 32 constant 1.0;
//   V  [64][40]: the [v|1|0 x 7] rows, copied as one contiguous run.
// Per 16-token k-step: B = ldmatrix.trans of the V slab (10 registers, shared by the warp's 4
// blocks). Per block: A (16 rows = two halves x 16 tokens) = ldmatrix.x4 (non-trans) of yT,
// lane l addressing row 8 cb_{(l>>3)&1} + (l & 7) and token column 16 kk + 8 (l >> 4), so
// matrix 0 = half 0's 8 dims x tokens 0..7 -> reg0 = (row g, tokens 2t, 2t+1), matrix 1 =
// half 1's dims -> reg1 = (row g + 8, same tokens), matrices 2 / 3 the same for tokens 8..15
// -> reg2 (row g, tokens 2t+8, 2t+9), reg3 (row g + 8). Prefix of half h for this thread's
// tokens: one 8-byte load per coordinate from yP row a (resp. b) at 16 kk + 4t, whose .x =
// tokens (2t, 2t+1), .y = tokens (2t+8, 2t+9), multiplied as bf16x2 (recomputed only when the
// half's pair differs from the previous half's). Then reg0 *= pre_0.x, reg1 *= pre_1.x, reg2
// *= pre_0.y, reg3 *= pre_1.y: each feature bf16(bf16(y_a y_b) y_c). 20 mma per k-step.
#pragma once

#include "cuda/kernels/pb4_common.cuh"

namespace ta::cuda {

// A warp's 4 blocks (halves 2 blk0 .. 2 blk0 + 7 of the list) as both key passes walk them:
// the descriptors, bit h of `fresh` = half h's prefix pair differs from half h - 1's (bit 0:
// the first half of a k-step always computes its prefix; warp-uniform), the yP row offsets
// of each half's pair, and this lane's yT element offset per block (see the header): row
// 8 cb + (lane & 7) of half (lane >> 3) & 1, token column 8 (lane >> 4); a k-step adds 16 kk.
struct Pb4KeyWarp {
  uint32_t desc[2 * kPb4KeyWarpBlocks];
  uint32_t p_off[2 * kPb4KeyWarpBlocks];
  int a_off[kPb4KeyWarpBlocks];
  uint32_t fresh;
};
__device__ __forceinline__ Pb4KeyWarp pb4_key_warp(int blk0, int lane) {
  Pb4KeyWarp w{};
#pragma unroll
  for (int h = 0; h < 2 * kPb4KeyWarpBlocks; ++h) w.desc[h] = c_pb4_list.d[2 * blk0 + h];
  w.fresh = 1u;
#pragma unroll
  for (int h = 1; h < 2 * kPb4KeyWarpBlocks; ++h) {
    w.fresh |= (pb4_pair(w.desc[h]) != pb4_pair(w.desc[h - 1]) ? 1u : 0u) << h;
  }
  pb4_prefix_offsets(w.desc, w.p_off);
#pragma unroll
  for (int m = 0; m < kPb4KeyWarpBlocks; ++m) {
    const int cb = pb4_cb((lane >> 3) & 1 ? w.desc[2 * m + 1] : w.desc[2 * m]);  // a select: desc stays in registers
    w.a_off[m] = (8 * cb + (lane & 7)) * kPb4YtStride + 8 * (lane >> 4);
  }
  return w;
}

// Element offsets within a ring stage (yT, yP, V; pb4_key_stage_bytes) and the stage size.
constexpr int kPb4StageYp = 40 * kPb4YtStride, kPb4StageV = kPb4StageYp + 33 * kPb4KeyTile;
constexpr int kPb4StageElems = kPb4StageV + kPb4KeyTile * kPb4Stride;
static_assert(kPb4StageElems * 2 == pb4_key_stage_bytes(), "the plan's shared-memory size");

// The constant rows of `stages` ring stages, which no copy writes: yT rows 32..39 = [1, 0 x 7]
// per token (the ones column of the DEG1 / DEG2 prefixes and the CONST half), yP row 32 = 1.0.
__device__ __forceinline__ void pb4_key_constants(__nv_bfloat16* ring, int stages, int tid, int threads) {
  for (int e = tid; e < stages * 8 * kPb4YtStride; e += threads) {
    const int s = e / (8 * kPb4YtStride), rem = e % (8 * kPb4YtStride);
    ring[s * kPb4StageElems + (kPb4OnesCol + rem / kPb4YtStride) * kPb4YtStride + rem % kPb4YtStride] =
        __float2bfloat16_rn(rem < kPb4YtStride ? 1.0f : 0.0f);
  }
  for (int e = tid; e < stages * kPb4KeyTile; e += threads) {
    ring[(e / kPb4KeyTile) * kPb4StageElems + kPb4StageYp + kPb4OnesCol * kPb4KeyTile + e % kPb4KeyTile] =
        __float2bfloat16_rn(1.0f);
  }
}

// The 4 k-steps of one staged tile (stage = yT, yP, V at element offsets 0, kPb4StageYp,
// kPb4StageV): both key passes run exactly these mma in this order, so they give the same
// bits.
__device__ __forceinline__ void pb4_key_tile(float (&acc)[kPb4KeyWarpBlocks][kPb4NT][4], const Pb4KeyWarp& w,
                                             const __nv_bfloat16* stage, int lane) {
  const int t = lane & 3;
  const __nv_bfloat16* yts = stage;
  const __nv_bfloat16* yps = stage + kPb4StageYp;
  const __nv_bfloat16* vs = stage + kPb4StageV;
#pragma unroll
  for (int kk = 0; kk < kPb4KeyTile / 16; ++kk) {
    // B fragments of the k-step (pb4_mma_slab's addressing, loaded once for 4 blocks).
    const __nv_bfloat16* lrow = vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kPb4Stride;
    uint32_t bq[2][4], b4[2];
    ldsm_x4_trans(bq[0], lrow + (lane >> 4) * 8);
    ldsm_x4_trans(bq[1], lrow + 16 + (lane >> 4) * 8);
    ldsm_x2_trans(b4, lrow + 32);
    const __nv_bfloat16* ypk = yps + kk * 16 + 4 * t;  // this thread's 4 positions of the k-step
    uint2 pre = make_uint2(0u, 0u);
#pragma unroll
    for (int m = 0; m < kPb4KeyWarpBlocks; ++m) {
      uint32_t af[4];
      ldsm_x4(af, yts + w.a_off[m] + kk * 16);
      uint2 p[2];
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int h = 2 * m + hh;
        if ((w.fresh >> h) & 1u) {
          const uint2 ya = *reinterpret_cast<const uint2*>(ypk + (w.p_off[h] & 0xFFFFu));
          const uint2 yb = *reinterpret_cast<const uint2*>(ypk + (w.p_off[h] >> 16));
          pre = make_uint2(bf16x2_mul(ya.x, yb.x), bf16x2_mul(ya.y, yb.y));
        }
        p[hh] = pre;
      }
      af[0] = bf16x2_mul(af[0], p[0].x);  // half 0, tokens 2t, 2t+1
      af[1] = bf16x2_mul(af[1], p[1].x);  // half 1, tokens 2t, 2t+1
      af[2] = bf16x2_mul(af[2], p[0].y);  // half 0, tokens 2t+8, 2t+9
      af[3] = bf16x2_mul(af[3], p[1].y);  // half 1, tokens 2t+8, 2t+9
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        mma_bf16_16816(acc[m][2 * np], af, bq[np][0], bq[np][1]);
        mma_bf16_16816(acc[m][2 * np + 1], af, bq[np][2], bq[np][3]);
      }
      mma_bf16_16816(acc[m][4], af, b4[0], b4[1]);
    }
  }
}

__global__ void __launch_bounds__(kPb4Threads, 1)
    pb4_key_pass(const __nv_bfloat16* __restrict__ y, const __nv_bfloat16* __restrict__ vx,
                 __nv_bfloat16* __restrict__ state, int64_t n_tokens, int image) {
  constexpr int kStages = kPb4KeyStages;
  static_assert(kStages >= 2, "the ring needs a buffer to fill while one is read");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const int64_t unit = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int n_tiles = static_cast<int>(pb4_key_tiles(n_tokens));  // an int: the grid's x dimension bounds it too
  const __nv_bfloat16* yu = y + unit * n_tiles * kPb4TileElems;
  const __nv_bfloat16* vu = vx + unit * n_tiles * kPb4KeyTile * kPb4Cols;

  const int blk0 = static_cast<int>(blockIdx.x) * kPb4KeyBlocksPerCta + warp * kPb4KeyWarpBlocks;
  const Pb4KeyWarp w = pb4_key_warp(blk0, lane);
  pb4_key_constants(smem, kStages, tid, kPb4Threads);

  // One tile: yT rows (144 bytes, the pad included) and yP (4 KB) are one contiguous run in
  // the workspace and the stage up to yT row 32, then yP; V (5 KB) is contiguous in both.
  // 288 + 256 + 320 chunks of 16 bytes.
  auto stage_tile = [&](int tile, int buf) {
    __nv_bfloat16* st = smem + buf * kPb4StageElems;
    const __nv_bfloat16* src = yu + static_cast<int64_t>(tile) * kPb4TileElems;
    for (int e = tid; e < kPb4YtElems / 8; e += kPb4Threads) cp_async16(st + e * 8, src + e * 8, true);
    for (int e = tid; e < kPb4Dim * kPb4KeyTile / 8; e += kPb4Threads) {
      cp_async16(st + kPb4StageYp + e * 8, src + kPb4YtElems + e * 8, true);
    }
    const __nv_bfloat16* vsrc = vu + static_cast<int64_t>(tile) * kPb4KeyTile * kPb4Cols;
    for (int e = tid; e < kPb4KeyTile * kPb4Cols / 8; e += kPb4Threads) {
      cp_async16(st + kPb4StageV + e * 8, vsrc + e * 8, true);
    }
  };

  float acc[kPb4KeyWarpBlocks][kPb4NT][4];
#pragma unroll
  for (int m = 0; m < kPb4KeyWarpBlocks; ++m)
#pragma unroll
    for (int n = 0; n < kPb4NT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_tiles) stage_tile(s, s);
    cp_async_commit();
  }

  for (int tile = 0; tile < n_tiles; ++tile) {
    // Tile `tile` has landed, and every warp is done with the buffer refilled below.
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int next = tile + kStages - 1;
    if (next < n_tiles) stage_tile(next, next % kStages);
    cp_async_commit();
    pb4_key_tile(acc, w, smem + (tile % kStages) * kPb4StageElems, lane);
  }

  pb4_store_state_rows(acc, w.desc, blk0, state + unit * kPb4StateRows * kPb4Cols, lane, image != 0);
}

}  // namespace ta::cuda
