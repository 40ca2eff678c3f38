// The P = 4 key pass with its tiles staged by bulk copies from one thread (sm_90a builds on
// compute capability 9.0, the path of the wgmma query pass: PassKernels::kPrefixBlock4Wg):
// pb4_key_pass's warps, blocks, A and B fragments and mma, in the same order
// (pb4_key_tile), so the same state bit for bit.
//
// Why: pb4_key_pass's MMA warps issue 3.4 16-byte cp.async per thread and tile and meet at a
// block barrier every 64 tokens; the P = 3 key pass ran 36% faster when one thread staged its
// tiles through the TMA unit and the warps released buffers on mbarriers instead (perf-notes
// v9). The prepared tile (pb4_prep_keys) is already shaped as the start of a ring stage, so
// - thread 0 stages tile t kPb4BulkAhead tiles ahead with three bulk copies (yT rows 0..31
//   with their pad, yP rows 0..31, the [v|1] rows), completing on the stage's "full" barrier;
// - every thread arrives on the stage's "empty" barrier once its last ldmatrix of the tile
//   has returned (the mma that use the loaded registers are issued), after a proxy fence
//   (generic-proxy reads, then async-proxy writes by the next copy into the stage);
// - the constant rows (yT rows 32..39, yP row 32) are written once per stage at the start.
// Thread 0 waits for the empty barrier of the tile kPb4BulkStages back before refilling it:
// with 2 tiles of slack, only a warp more than ~2 tiles behind warp 0 holds it up.
// 12 warps of 4 blocks per CTA (pb4_key_pass: 8): 3 warps per scheduler to hide the mma and
// ldmatrix latencies (the kernel needs 162 registers, within the 168 of 384 threads), and 12
// CTAs per unit instead of 17 each reading every tile from L2.
#pragma once

#include "cuda/kernels/pb4_key_pass.cuh"
#include "cuda/kernels/wgmma.cuh"

namespace ta::cuda {

__global__ void __launch_bounds__(kPb4BulkWarps * 32, 1)
    pb4_key_pass_bulk(const __nv_bfloat16* __restrict__ y, const __nv_bfloat16* __restrict__ vx,
                      __nv_bfloat16* __restrict__ state, int64_t n_tokens, int image) {
#if TA_WGMMA_DEVICE
  constexpr int kS = kPb4BulkStages, kAhead = kPb4BulkAhead, kThreads = kPb4BulkWarps * 32;
  static_assert(kAhead >= 1 && kAhead <= kS - 1, "a stage is refilled only after every thread released it");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const uint32_t ring = smem_u32(smem_raw);
  const uint32_t full = ring + kS * kPb4StageElems * 2, empty = full + 8 * kS;
  const int64_t unit = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t n_tiles = pb4_key_tiles(n_tokens);
  const __nv_bfloat16* yu = y + unit * n_tiles * kPb4TileElems;
  const __nv_bfloat16* vu = vx + unit * n_tiles * kPb4KeyTile * kPb4Cols;

  if (tid == 0) {
    for (int i = 0; i < kS; ++i) {
      mbar_init(full + 8 * i, 1);            // thread 0's expect_tx, then the bytes
      mbar_init(empty + 8 * i, kThreads);  // every thread
    }
    mbar_init_fence();
  }
  pb4_key_constants(smem, kS, tid, kThreads);
  __syncthreads();

  constexpr uint32_t kYtBytes = kPb4YtElems * 2, kYpBytes = kPb4Dim * kPb4KeyTile * 2;
  constexpr uint32_t kVBytes = kPb4KeyTile * kPb4Cols * 2;
  static_assert(kYtBytes % 16 == 0 && kYpBytes % 16 == 0 && kVBytes % 16 == 0 && (kPb4StageYp * 2) % 16 == 0 &&
                    (kPb4StageV * 2) % 16 == 0 && (kPb4StageElems * 2) % 16 == 0,
                "bulk copies move 16-byte multiples between 16-byte aligned addresses");
  auto fill = [&](int64_t t) {
    const int s = static_cast<int>(t % kS);
    if (t >= kS) mbar_wait(empty + 8 * s, static_cast<uint32_t>(t / kS - 1) & 1u);
    const uint32_t bar = full + 8 * s, st = ring + static_cast<uint32_t>(s * kPb4StageElems * 2);
    mbar_expect_tx(bar, kYtBytes + kYpBytes + kVBytes);
    const __nv_bfloat16* src = yu + t * kPb4TileElems;
    bulk_copy_to_shared(st, src, kYtBytes, bar);
    bulk_copy_to_shared(st + kPb4StageYp * 2, src + kPb4YtElems, kYpBytes, bar);
    bulk_copy_to_shared(st + kPb4StageV * 2, vu + t * kPb4KeyTile * kPb4Cols, kVBytes, bar);
  };
  if (tid == 0) {
    for (int64_t t = 0; t < kAhead && t < n_tiles; ++t) fill(t);
  }

  const int blk0 = static_cast<int>(blockIdx.x) * kPb4BulkBlocksPerCta + warp * kPb4KeyWarpBlocks;
  const Pb4KeyWarp w = pb4_key_warp(blk0, lane);
  float acc[kPb4KeyWarpBlocks][kPb4NT][4];
#pragma unroll
  for (int m = 0; m < kPb4KeyWarpBlocks; ++m)
#pragma unroll
    for (int n = 0; n < kPb4NT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

  for (int64_t t = 0; t < n_tiles; ++t) {
    if (tid == 0 && t + kAhead < n_tiles) fill(t + kAhead);
    const int s = static_cast<int>(t % kS);
    mbar_wait(full + 8 * s, static_cast<uint32_t>(t / kS) & 1u);
    pb4_key_tile(acc, w, smem + s * kPb4StageElems, lane);
    // The mma above consumed every register this thread loaded from the stage, so its reads
    // are done: release the stage for the next copy.
    fence_proxy_async();
    mbar_arrive(empty + 8 * s);
  }
  pb4_store_state_rows(acc, w.desc, blk0, state + unit * kPb4StateRows * kPb4Cols, lane, image != 0);
#else
  __trap();  // never selected without sm_90a code (device_has_wgmma)
#endif
}

}  // namespace ta::cuda
