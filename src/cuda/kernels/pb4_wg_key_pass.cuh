// P = 4 prefix x block key pass on Hopper's warpgroup MMA (sm_90a; PassKernels::
// kPrefixBlock4Wg): pb4_key_pass's tiles, A fragments and state, with the [v|1] slab as the
// wgmma B operand in shared memory (kernels/wgmma.cuh, 5 column groups). The same steps
// made the P = 3 passes 1.3x faster (pb_wg_key_pass.cuh); here the mma.sync kernel is
// latency-bound with one CTA of 8 warps per SM (docs/perf-notes.md, v6).
//
// Warpgroup G's wgmma for slot m (0..3) covers block m of each of its 4 warps: 4 x m64n40k16
// per k-step. Token tiles in a 4-stage ring filled two ahead (the P = 3 scheme: a refilled
// buffer's wgmmas retired at the previous tile's second k-step); A double-buffered across
// k-steps (32 registers). A half whose prefix pair repeats the previous half's reuses it, as in
// pb4_key_pass, but through predicated loads and a select: a branch there makes ptxas
// serialize the wgmmas (C7513). The prep's V rows [64][40] are scattered into the core-matrix
// layout by the cp.async addresses (8 tokens x 5 groups per 128-byte core matrix row).
#pragma once

#include "cuda/kernels/pb4_common.cuh"
#include "cuda/kernels/wgmma.cuh"

namespace ta::cuda {

__global__ void __launch_bounds__(kPb4Threads, 1)
    pb4_wg_key_pass(const __nv_bfloat16* __restrict__ y, const __nv_bfloat16* __restrict__ vx,
                    __nv_bfloat16* __restrict__ state, int64_t n_tokens) {
#if TA_WGMMA_DEVICE
  constexpr int kStages = kPb4WgStages, kCg = kPb4Cols / 8;
  constexpr int kYt = 40 * kPb4YtStride, kYp = 33 * kPb4KeyTile, kV = kPb4KeyTile * kPb4Stride;
  constexpr int kStage = kYt + kYp + kV;  // elements; stage s = yT, yP, V (core layout)
  static_assert(kStage * 2 == pb4_key_stage_bytes(), "the plan's shared-memory size");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const int64_t unit = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t = lane & 3;
  const int n_tiles = static_cast<int>(pb4_key_tiles(n_tokens));
  const __nv_bfloat16* yu = y + unit * n_tiles * (2 * kPb4Dim * kPb4KeyTile);
  const __nv_bfloat16* vu = vx + unit * n_tiles * kV;

  const int blk0 = static_cast<int>(blockIdx.x) * kPb4KeyBlocksPerCta + warp * kPb4KeyWarpBlocks;
  uint32_t desc[2 * kPb4KeyWarpBlocks];
#pragma unroll
  for (int h = 0; h < 2 * kPb4KeyWarpBlocks; ++h) desc[h] = c_pb4_list.d[2 * blk0 + h];
  uint32_t fresh = 1u;  // bit h: half h's prefix pair differs from half h - 1's (pb4_key_pass)
#pragma unroll
  for (int h = 1; h < 2 * kPb4KeyWarpBlocks; ++h) fresh |= (pb4_pair(desc[h]) != pb4_pair(desc[h - 1]) ? 1u : 0u) << h;
  uint32_t p_off[2 * kPb4KeyWarpBlocks];
  pb4_prefix_offsets(desc, p_off);
  int a_off[kPb4KeyWarpBlocks];
#pragma unroll
  for (int m = 0; m < kPb4KeyWarpBlocks; ++m) {
    const int cb = pb4_cb((lane >> 3) & 1 ? desc[2 * m + 1] : desc[2 * m]);
    a_off[m] = (8 * cb + (lane & 7)) * kPb4YtStride + 8 * (lane >> 4);
  }

  for (int e = tid; e < kStages * 8 * kPb4YtStride; e += kPb4Threads) {
    const int s = e / (8 * kPb4YtStride), rem = e % (8 * kPb4YtStride);
    smem[s * kStage + (kPb4OnesCol + rem / kPb4YtStride) * kPb4YtStride + rem % kPb4YtStride] =
        __float2bfloat16_rn(rem < kPb4YtStride ? 1.0f : 0.0f);
  }
  for (int e = tid; e < kStages * kPb4KeyTile; e += kPb4Threads) {
    smem[(e / kPb4KeyTile) * kStage + kYt + kPb4OnesCol * kPb4KeyTile + e % kPb4KeyTile] = __float2bfloat16_rn(1.0f);
  }

  auto stage_tile = [&](int tile, int buf) {
    __nv_bfloat16* yts = smem + buf * kStage;
    __nv_bfloat16* yps = yts + kYt;
    __nv_bfloat16* vs = yps + kYp;
    const __nv_bfloat16* src = yu + static_cast<int64_t>(tile) * (2 * kPb4Dim * kPb4KeyTile);
    for (int e = tid; e < kPb4Dim * (kPb4KeyTile / 8); e += kPb4Threads) {
      cp_async16(yts + (e >> 3) * kPb4YtStride + (e & 7) * 8, src + e * 8, true);
    }
    for (int e = tid; e < kPb4Dim * kPb4KeyTile / 8; e += kPb4Threads) {
      cp_async16(yps + e * 8, src + kPb4Dim * kPb4KeyTile + e * 8, true);
    }
    const __nv_bfloat16* vsrc = vu + static_cast<int64_t>(tile) * kV;
    for (int e = tid; e < kV / 8; e += kPb4Threads) cp_async16(vs + core_offset<kCg>(e / kCg, e % kCg), vsrc + e * 8, true);
  };

  float acc[kPb4KeyWarpBlocks][kPb4NT][4];
#pragma unroll
  for (int m = 0; m < kPb4KeyWarpBlocks; ++m)
#pragma unroll
    for (int n = 0; n < kPb4NT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
  float(&acc0)[20] = *reinterpret_cast<float(*)[20]>(&acc[0][0][0]);
  float(&acc1)[20] = *reinterpret_cast<float(*)[20]>(&acc[1][0][0]);
  float(&acc2)[20] = *reinterpret_cast<float(*)[20]>(&acc[2][0][0]);
  float(&acc3)[20] = *reinterpret_cast<float(*)[20]>(&acc[3][0][0]);

  if (0 < n_tiles) stage_tile(0, 0);
  cp_async_commit();
  if (1 < n_tiles) stage_tile(1, 1);
  cp_async_commit();

  uint32_t af[2][kPb4KeyWarpBlocks][4];
  for (int tile = 0; tile < n_tiles; ++tile) {
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    if (tile + 2 < n_tiles) stage_tile(tile + 2, (tile + 2) % kStages);
    cp_async_commit();
    const __nv_bfloat16* yts = smem + (tile % kStages) * kStage;
    const __nv_bfloat16* yps = yts + kYt;
    const __nv_bfloat16* vs = yps + kYp;
#pragma unroll
    for (int kk = 0; kk < kPb4KeyTile / 16; ++kk) {
      const int ab = kk & 1;
      wgmma_wait<1>();
      const __nv_bfloat16* ypk = yps + kk * 16 + 4 * t;
      uint2 pre = make_uint2(0u, 0u);
#pragma unroll
      for (int m = 0; m < kPb4KeyWarpBlocks; ++m) {
        ldsm_x4(af[ab][m], yts + a_off[m] + kk * 16);
        uint2 p[2];
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int h = 2 * m + hh;
          const bool fr = (fresh >> h) & 1u;
          uint2 ya = make_uint2(0u, 0u), yb = ya;
          if (fr) {  // predicated loads; without them the product is discarded below
            ya = *reinterpret_cast<const uint2*>(ypk + (p_off[h] & 0xFFFFu));
            yb = *reinterpret_cast<const uint2*>(ypk + (p_off[h] >> 16));
          }
          const uint2 cand = make_uint2(bf16x2_mul(ya.x, yb.x), bf16x2_mul(ya.y, yb.y));
          pre = fr ? cand : pre;
          p[hh] = pre;
        }
        af[ab][m][0] = bf16x2_mul(af[ab][m][0], p[0].x);  // half 0, tokens 2t, 2t+1
        af[ab][m][1] = bf16x2_mul(af[ab][m][1], p[1].x);  // half 1, tokens 2t, 2t+1
        af[ab][m][2] = bf16x2_mul(af[ab][m][2], p[0].y);  // half 0, tokens 2t+8, 2t+9
        af[ab][m][3] = bf16x2_mul(af[ab][m][3], p[1].y);  // half 1, tokens 2t+8, 2t+9
      }
      const uint64_t bdesc = core_desc<kCg>(vs + 2 * kk * kCg * 64);
      wgmma_fence();
      pin_acc(acc0);
      pin_acc(acc1);
      pin_acc(acc2);
      pin_acc(acc3);
      wgmma_m64n40k16_rs(acc0, af[ab][0], bdesc);
      wgmma_m64n40k16_rs(acc1, af[ab][1], bdesc);
      wgmma_m64n40k16_rs(acc2, af[ab][2], bdesc);
      wgmma_m64n40k16_rs(acc3, af[ab][3], bdesc);
      wgmma_commit();
      pin_acc(acc0);
      pin_acc(acc1);
      pin_acc(acc2);
      pin_acc(acc3);
    }
  }
  wgmma_wait<0>();
  pin_acc(acc0);
  pin_acc(acc1);
  pin_acc(acc2);
  pin_acc(acc3);
  pb4_store_state_rows(acc, desc, blk0, state + unit * kPb4Rows * kPb4Cols, lane);
#else
  __trap();  // never selected without sm_90a code (device_has_wgmma)
#endif
}

}  // namespace ta::cuda
