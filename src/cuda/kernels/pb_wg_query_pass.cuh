// Prefix x block query pass on Hopper's warpgroup MMA (sm_90a; PassKernels::kPrefixBlockWg):
// pb_query_pass's math, staging of the Q tile and epilogue, with each state block the wgmma
// B operand in shared memory (kernels/wgmma.cuh). dev/cuda v5: 9.8 ms against 12.8 ms for
// the mma.sync kernel at N = 66048, H = 24 (H100).
//
// 256 queries per CTA; warpgroup G owns rows 128 G .. 128 G + 127 as two m64 slots, warp j
// of the group rows 64 mt + 16 j + (g, g + 8) of slot mt. The state streams in stages of 4
// blocks (64 rows, each one bulk copy of its core-matrix image in S_pad, pb_state_at)
// through a 4-stage ring filled two stages ahead, as in the key pass. Per block and warp: A = 2 ldmatrix.x4 of the Q tile at
// column block bb (no Q fragments held in registers: 184 instead of 255 registers), each
// row scaled by its prefix as bf16x2 products, built before the wait that bounds the wgmma
// groups in flight (4 A buffers, one per block of a stage). CONST runs as column block 8 (Q tile cols
// 128..143 = [1, 0 x 7, the next row's dims 0..7]) with the ones column as prefix: its state
// rows 1..15 are exact zeros (pb_store_state_rows), so only column 0 counts. The last
// stage's empty slots run as null blocks, A = 0 through prefix column 129 (= 0), on stale
// but finite rows: a branch around their wgmmas would make ptxas serialize all of them.
#pragma once

#include "cuda/kernels/pb_query_pass.cuh"
#include "cuda/kernels/pb_wg_key_pass.cuh"
#include "cuda/kernels/wgmma.cuh"

namespace ta::cuda {

static_assert(kPbRows % 8 == 0, "stages hold whole k-groups of 8 rows");

__global__ void __launch_bounds__(kPbThreads, 1) pb_wg_query_pass(PassArgs a, const __nv_bfloat16* __restrict__ state) {
#if TA_WGMMA_DEVICE
  constexpr int kST = kPbTileStride;
  constexpr int kStages = (kPbBlocks + kPbWgStageBlocks - 1) / kPbWgStageBlocks;  // 147
  static_assert(kStages * kPbWgStageBlocks <= kPbListLen, "the last stage's empty slots read null list entries");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [256][136]
  __nv_bfloat16* ss = qs + kPbQueryRows * kST;                      // [4][64 rows, core layout]
  const int64_t unit_local = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kPbQueryRows;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2;
  const int wrow = (warp >> 2) * 128 + (warp & 3) * 16;  // the warp's first row in slot 0; slot 1 adds 64
  const __nv_bfloat16* su = state + unit_local * kPbRows * kPbCols;

  // Shared byte addresses, computed once.
  const uint32_t qs_at = smem_u32(qs), ss_at = smem_u32(ss);
  const uint32_t bars = ss_at + kPbWgStages * kPbWgStageRows * kST * 2;  // kPbWgStages mbarriers
  constexpr uint32_t kStageBytes = kPbWgStageRows * kST * 2;
  static_assert(kST == kPbCols, "a stage is the image of kPbWgStageRows state rows (pb_state_at)");

  // Stage st: one bulk copy by thread 0 of the stage's image in the state (pb_state_at),
  // completing on barrier st % kPbWgStages. Not the 1,088 16-byte copies of all threads:
  // those stalled the warps on the copies' operand registers (ncu) while they waited for
  // the L2.
  auto stage_state = [&](int st) {
    const int rows = kPbRows - st * kPbWgStageRows < kPbWgStageRows ? kPbRows - st * kPbWgStageRows : kPbWgStageRows;
    const uint32_t bytes = static_cast<uint32_t>(rows) * kPbCols * 2, bar = bars + 8 * (st % kPbWgStages);
    mbar_expect_tx(bar, bytes);
    bulk_copy_to_shared(ss_at + static_cast<uint32_t>(st % kPbWgStages) * kStageBytes,
                        su + static_cast<int64_t>(st) * kPbWgStageRows * kPbCols, bytes, bar);
  };
  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < kPbWgStages; ++i) mbar_init(bars + 8 * i, 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (tid == 0) {
    stage_state(0);
    stage_state(1);
  }
  pb_stage_queries(a, unit_local, b, h, s, q0, qs);  // while the first stages are in flight

  float acc[2][kPbNT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < kPbNT; ++n) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;

  const uint16_t* qbits = reinterpret_cast<const uint16_t*>(qs);
  uint32_t a_at[2];  // the warp's A rows (ldmatrix lane addresses), per slot
  int p_base[2];     // and its prefix rows g
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    a_at[mt] = qs_at + 2 * ((wrow + mt * 64 + (lane & 7) + ((lane >> 3) & 1) * 8) * kST + (lane >> 4) * 8);
    p_base[mt] = (wrow + mt * 64 + g) * kST;
  }
  // One A buffer per block of a stage: block bi's buffer was last read by the group four
  // blocks back, which the wait before issuing the previous block retired, so A is built
  // before this block's wait, while the two groups before it run on the tensor cores (ncu
  // at ea2bc66: the loads and multiplies after the wait were the hot stalls).
  uint32_t af[kPbWgStageBlocks][2][4];
  static_assert(kPbWgStageBlocks >= 4, "the buffer a block fills was read four groups back");
  for (int st = 0; st < kStages; ++st) {
    mbar_wait(bars + 8 * (st % kPbWgStages), static_cast<uint32_t>(st / kPbWgStages) & 1u);  // stage st landed
    // At st = 0 the Q tile's stores are before the barrier; at every st all warps are past
    // stage st - 1, so the wgmmas of stage st - 2 that read buffer (st + 2) % 4 have retired.
    __syncthreads();
    if (tid == 0 && st + 2 < kStages) stage_state(st + 2);
    const uint32_t sbuf_at = ss_at + static_cast<uint32_t>(st % kPbWgStages) * kStageBytes;
#pragma unroll
    for (int bi = 0; bi < kPbWgStageBlocks; ++bi) {
      const uint32_t d = c_pb_list.d[st * kPbWgStageBlocks + bi];
      const uint32_t kind = pb_kind(d);
      const int bb = kind >= kPbDeg1 ? pb_bb(d) : 8;
      const int col = kind >= kPbDeg1 ? pb_col(d) : (kind == kPbConst ? kPbOnesCol : kPbOnesCol + 1);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const uint32_t p0 = qbits[p_base[mt] + col] * 0x10001u;
        const uint32_t p1 = qbits[p_base[mt] + 8 * kST + col] * 0x10001u;
        ldsm_x4_at(af[bi][mt], a_at[mt] + bb * 32);
        af[bi][mt][0] = bf16x2_mul(af[bi][mt][0], p0);  // row g
        af[bi][mt][1] = bf16x2_mul(af[bi][mt][1], p1);  // row g + 8
        af[bi][mt][2] = bf16x2_mul(af[bi][mt][2], p0);
        af[bi][mt][3] = bf16x2_mul(af[bi][mt][3], p1);
      }
      wgmma_wait<1>();
      const uint64_t bdesc = core_desc_at<kPbNT>(sbuf_at + 2 * (2 * bi * kPbNT * 64));
      wgmma_step(acc, af[bi], bdesc);
    }
  }
  wgmma_drain(acc);
  pb_finish_rows<16, 64>(a, acc, unit_local, b, h, s, q0 + wrow, lane);
#else
  __trap();  // never selected without sm_90a code (device_has_wgmma)
#endif
}

}  // namespace ta::cuda
