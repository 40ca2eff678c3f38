// P = 4 prefix x block query pass on Hopper's warpgroup MMA (sm_90a; PassKernels::
// kPrefixBlock4Wg, with pb4_key_pass): pb4_query_pass's Q tile, prefix copy, A fragments and
// epilogue, with each state block the wgmma B operand in shared memory (kernels/wgmma.cuh, 5
// column groups). 14.2 against 18.3 ms for the mma.sync pass at N = 66048, H = 24 (H100).
// Every half computes its prefix: skipping a repeated pair by a branch (as pb4_query_pass
// does) makes ptxas serialize the wgmmas (its warning C7513).
//
// 256 queries per CTA, two CTAs per SM; warpgroup G owns rows 128 G .. 128 G + 127 as two
// m64 slots, warp j of the group rows 64 mt + 16 j + (g, g + 8) of slot mt (the prefix copy
// xp is permuted for this: pb4_prefix_position<true>). The state streams in stages of 8
// blocks (128 rows, each one bulk copy of its core-matrix image in S_pad, pb4_state_at)
// through a 4-stage ring filled two stages ahead; A is double-buffered across blocks. The
// last stage's eighth block (the list's null block 543) is stored as zeros by the key pass,
// so it adds nothing; no warp skips a wgmma (a path around them makes ptxas serialize all
// of them).
#pragma once

#include "cuda/kernels/pb4_common.cuh"
#include "cuda/kernels/pb4_query_pass.cuh"
#include "cuda/kernels/pb_query_pass.cuh"  // pb_finish_rows
#include "cuda/kernels/wgmma.cuh"

namespace ta::cuda {

__global__ void __launch_bounds__(kPb4Threads, 2)
    pb4_wg_query_pass(PassArgs a, const __nv_bfloat16* __restrict__ state) {
#if TA_WGMMA_DEVICE
  constexpr int kCg = kPb4Cols / 8, kStageRows = 16 * kPb4StageBlocks;
  constexpr int kStages = (kPb4Blocks + kPb4StageBlocks - 1) / kPb4StageBlocks;  // 68
  static_assert(kStages * kPb4StageBlocks * 2 <= kPb4ListHalves, "the last stage's empty slot reads a null list entry");
  static_assert((kPb4QueryRows * kPb4Stride + 33 * kPb4XpStride + kPb4WgStages * kStageRows * kPb4Stride) * 2 +
                        8 * kPb4WgStages ==
                    pb4_wg_query_smem(),
                "the plan's shared-memory size");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [256][40]
  __nv_bfloat16* xp = qs + kPb4QueryRows * kPb4Stride;             // [33][256]
  __nv_bfloat16* ss = xp + 33 * kPb4XpStride;                      // [4][128 rows, core layout]
  const int64_t unit_local = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kPb4QueryRows;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2;
  const int wrow = (warp >> 2) * 128 + (warp & 3) * 16;  // the warp's first row in slot 0; slot 1 adds 64
  const __nv_bfloat16* su = state + unit_local * kPb4StateRows * kPb4Cols;

  // Stage st: one bulk copy by thread 0 of the stage's image in the state (pb4_state_at; the
  // key pass stored the last stage's eighth block, the list's null block, as zeros),
  // completing on barrier st % kPb4WgStages. (Before: 2.5 16-byte cp.async per thread and
  // stage, as the P = 3 query pass had before its bulk copies: perf-notes v8.)
  const uint32_t ss_at = smem_u32(ss), bars = ss_at + kPb4WgStages * kStageRows * kPb4Stride * 2;
  constexpr uint32_t kStageBytes = kStageRows * kPb4Cols * 2;
  static_assert(kPb4Stride == kPb4Cols && kStages * kStageRows == kPb4StateRows, "stages are whole state images");
  auto stage_state = [&](int st) {
    const uint32_t bar = bars + 8 * (st % kPb4WgStages);
    mbar_expect_tx(bar, kStageBytes);
    bulk_copy_to_shared(ss_at + static_cast<uint32_t>(st % kPb4WgStages) * kStageBytes,
                        su + static_cast<int64_t>(st) * kStageRows * kPb4Cols, kStageBytes, bar);
  };
  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < kPb4WgStages; ++i) mbar_init(bars + 8 * i, 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (tid == 0) {
    stage_state(0);
    stage_state(1);
  }
  pb4_stage_queries<true>(a, unit_local, b, h, s, q0, qs, xp);  // while the first stages are in flight

  float acc[2][kPb4NT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < kPb4NT; ++n) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;

  const __nv_bfloat16* qlane = qs + (wrow + (lane & 7) + ((lane >> 3) & 1) * 8) * kPb4Stride;
  const bool upper = (lane >> 4) != 0;  // matrices 2 / 3: half 1's coordinate block
  const __nv_bfloat16* xlane = xp + warp * 32 + 4 * g;
  // Prefixes p[hh]: .x = rows (g, g + 8) of slot 0, .y = of slot 1.
  uint32_t af[2][2][4];

  for (int st = 0; st < kStages; ++st) {
    mbar_wait(bars + 8 * (st % kPb4WgStages), static_cast<uint32_t>(st / kPb4WgStages) & 1u);  // stage st landed
    // At st = 0 the Q tile's stores are before the barrier; at every st all warps are past
    // stage st - 1, so the wgmmas of stage st - 2 that read buffer (st + 2) % 4 have retired.
    __syncthreads();
    if (tid == 0 && st + 2 < kStages) stage_state(st + 2);
    const __nv_bfloat16* sbuf = ss + (st % kPb4WgStages) * kStageRows * kPb4Stride;
#pragma unroll
    for (int bi = 0; bi < kPb4StageBlocks; ++bi) {
      const int ab = bi & 1;
      wgmma_wait<1>();
      const int blk = st * kPb4StageBlocks + bi;
      const uint32_t d[2] = {c_pb4_list.d[2 * blk], c_pb4_list.d[2 * blk + 1]};
      uint2 p[2];  // every half computes its prefix: skipping repeats makes ptxas serialize the wgmmas
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const uint2 xa = *reinterpret_cast<const uint2*>(xlane + pb4_col_a(d[hh]) * kPb4XpStride);
        const uint2 xb = *reinterpret_cast<const uint2*>(xlane + pb4_col_b(d[hh]) * kPb4XpStride);
        p[hh] = make_uint2(bf16x2_mul(xa.x, xb.x), bf16x2_mul(xa.y, xb.y));
      }
      const int col = 8 * pb4_cb(upper ? d[1] : d[0]);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        ldsm_x4(af[ab][mt], qlane + mt * 64 * kPb4Stride + col);
        const uint32_t p0 = mt == 0 ? p[0].x : p[0].y, p1 = mt == 0 ? p[1].x : p[1].y;
        // __byte_perm 0x1010 = the low bf16 twice (row g), 0x3232 = the high one (row g + 8).
        af[ab][mt][0] = bf16x2_mul(af[ab][mt][0], __byte_perm(p0, 0u, 0x1010));
        af[ab][mt][1] = bf16x2_mul(af[ab][mt][1], __byte_perm(p0, 0u, 0x3232));
        af[ab][mt][2] = bf16x2_mul(af[ab][mt][2], __byte_perm(p1, 0u, 0x1010));
        af[ab][mt][3] = bf16x2_mul(af[ab][mt][3], __byte_perm(p1, 0u, 0x3232));
      }
      const uint64_t bdesc = core_desc<kCg>(sbuf + 2 * bi * kCg * 64);
      wgmma_step(acc, af[ab], bdesc);
    }
  }
  wgmma_drain(acc);
  pb_finish_rows<4, 64>(a, acc, unit_local, b, h, s, q0 + wrow, lane);
#else
  __trap();  // never selected without sm_90a code (device_has_wgmma)
#endif
}

}  // namespace ta::cuda
