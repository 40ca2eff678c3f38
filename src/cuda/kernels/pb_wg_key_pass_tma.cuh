// The wgmma key pass (P = 3) with its tiles staged by the TMA unit (PassKernels::kPrefixBlockWg,
// unmasked calls whose bf16 v the key pass reads directly; pb_wg_key_pass keeps the rest):
// the same state S_pad from the same A fragments and k-steps (pb_wg_key_kstep), bit for bit.
//
// Why: pb_wg_key_pass stages the values with 16-byte cp.async issued by its MMA warps, which
// stall on the copies' operand registers while L2 is busy (ncu, v8), and its warps meet at a
// block barrier every tile. Here
// - one thread issues the copies, kPbTmaStages - 2 tiles ahead: the y tile image by one bulk
//   copy, the values by two tensor copies of 64 tokens x 64 columns (a tensor map over the
//   caller's v, 128-byte swizzle; rows past the last token arrive as zeros). (A producer
//   warp of its own would make 9 warps, which ptxas budgets as 12: 168 registers, spills.);
// - the [v|1] tile is the wgmma B operand in the swizzled MN-major layout: blocks of 64 columns
//   8,192 bytes apart (LBO), 8 tokens 1,024 bytes apart (SBO), the ones column in a third,
//   constant block written once;
// - a stage is refilled when every thread arrived on its "empty" barrier after the wgmma
//   wait that retired the stage's last reads, so warps meet no block barrier;
// - the key split (pb_key_split) works as in pb_wg_key_pass: clusters of CTAs over shares of
//   the token tiles, summed through distributed shared memory.
// (Tried and dropped: pairs of CTAs of one unit sharing each tile by multicast, each pair
// reading a tile from L2 once, ran the key pass 1.9x slower: perf-notes v9.)
#pragma once

#include <cuda.h>

#include "cuda/kernels/pb_wg_key_pass.cuh"

namespace ta::cuda {

// The shared byte address of stage s's [v|1] block j (j = 0, 1: v columns 64 j ..; 2: ones).
__device__ __forceinline__ uint32_t pb_tma_vblock(uint32_t ring, int s, int j) {
  return ring + static_cast<uint32_t>(s * kPbTmaStageBytes + kPbTmaYBytes + j * kPbTmaVBlockBytes);
}

__global__ void __launch_bounds__(kPbThreads, 1)
    pb_wg_key_pass_tma(PassArgs a, const __grid_constant__ CUtensorMap vmap, uint32_t order,
                       const __nv_bfloat16* __restrict__ y, __nv_bfloat16* __restrict__ state) {
#if TA_WGMMA_DEVICE
  constexpr int kS = kPbTmaStages, kAhead = kS - 2;
  extern __shared__ __align__(16) unsigned char tma_smem[];
  const uint32_t raw = smem_u32(tma_smem), ring = (raw + 1023u) & ~1023u;  // the swizzle atom (pb_wg_tma_smem)
  unsigned char* ring_ptr = tma_smem + (ring - raw);
  const uint32_t full = ring + kS * kPbTmaStageBytes, empty = full + 8 * kS;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t unit = blockIdx.y, all_tiles = pb_key_tiles(a.g.Nk);
  // Launched in clusters of n CTAs (the key split, pb_key_split): the cluster shares one CTA's
  // blocks, rank r taking its r-th share of the token tiles; cluster_reduce_acc sums them.
  const int ksplit = static_cast<int>(cluster_size()), krank = static_cast<int>(cluster_rank());
  const int64_t per_rank = (all_tiles + ksplit - 1) / ksplit;
  const int64_t tile0 = min(all_tiles, krank * per_rank), n_tiles = min(all_tiles, tile0 + per_rank) - tile0;

  if (tid == 0) {
    for (int i = 0; i < kS; ++i) {
      mbar_init(full + 8 * i, 1);           // thread 0's expect_tx, then the bytes
      mbar_init(empty + 8 * i, kPbThreads);  // every thread
    }
    mbar_init_fence();
  }
  // The ones block of every stage: token r's 128-byte row is [1, 0 x 63]; its 16-byte chunk 0
  // sits at chunk position r % 8 (the swizzle XORs the chunk index with the row's index in its
  // 8-row atom). The copies never write it.
  for (int e = tid; e < kS * kPbKeyTile * 8; e += kPbThreads) {
    const int s = e / (kPbKeyTile * 8), r = (e / 8) % kPbKeyTile, c = e % 8;
    *reinterpret_cast<uint4*>(ring_ptr + s * kPbTmaStageBytes + kPbTmaYBytes + 2 * kPbTmaVBlockBytes + r * 128 + c * 16) =
        make_uint4(c == (r & 7) ? kBf16One : 0u, 0u, 0u, 0u);
  }
  fence_proxy_async();  // read next by the tensor cores
  __syncthreads();

  // Thread 0 fills: local tile t into stage t % kS, kAhead tiles ahead of its own warp, once
  // every thread released the tile kS before it (at its k-step 1 of the tile after that one:
  // warp 0 waits only for warps more than ~3 k-steps behind it).
  int64_t vb = 0, vh = 0, vs_ = 0;
  unit_coords(a.g, a.g.unit0 + unit, &vb, &vh, &vs_);
  const __nv_bfloat16* yu = y + unit * all_tiles * kPbKeyTile * kPbCols;  // tile images (pb_prep_keys)
  auto fill = [&](int64_t t) {
    const int s = static_cast<int>(t % kS);
    if (t >= kS) mbar_wait(empty + 8 * s, static_cast<uint32_t>(t / kS - 1) & 1u);
    const uint32_t bar = full + 8 * s, st = ring + static_cast<uint32_t>(s * kPbTmaStageBytes);
    mbar_expect_tx(bar, kPbTmaYBytes + 2 * kPbTmaVBlockBytes);
    const int64_t tile = tile0 + t;
    bulk_copy_to_shared(st, yu + tile * kPbKeyTile * kPbCols, kPbTmaYBytes, bar);
    int c[3];
    tma_token_coords(order, tile * kPbKeyTile, vh, vb, c);
    for (int j = 0; j < 2; ++j) {
      tensor_copy_4d(pb_tma_vblock(ring, s, j), &vmap, static_cast<int>(vs_ * kPbValueDim) + 64 * j, c[0], c[1], c[2],
                     bar);
    }
  };
  if (tid == 0) {
    for (int64_t t = 0; t < kAhead && t < n_tiles; ++t) fill(t);
  }

  const int list0 = static_cast<int>(blockIdx.x) / ksplit * kPbKeyBlocksPerCta + warp * 2;
  const PbWgKeyWarp w = pb_wg_key_warp(list0, lane);
  float acc[2][kPbNT][4];
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int n = 0; n < kPbNT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
  uint32_t af[2][2][4];
  for (int64_t t = 0; t < n_tiles; ++t) {
    if (tid == 0 && t + kAhead < n_tiles) fill(t + kAhead);
    const int s = static_cast<int>(t % kS);
    mbar_wait(full + 8 * s, static_cast<uint32_t>(t / kS) & 1u);
    const uint32_t st = ring + static_cast<uint32_t>(s * kPbTmaStageBytes);
    const auto* sb = reinterpret_cast<const uint16_t*>(ring_ptr + s * kPbTmaStageBytes);
#pragma unroll
    for (int kk = 0; kk < kPbKeyTile / 16; ++kk) {
      // Tokens 16 kk .. 16 kk + 15: two 8-token atoms from 2,048 kk bytes on.
      pb_wg_key_kstep(acc, af[kk & 1], w, sb, st, kk,
                      smem_desc_sw128_at(pb_tma_vblock(ring, s, 0) + 2048 * kk, kPbTmaVBlockBytes, 1024));
      // The previous tile's stage is free once k-step 1's wait retired its last wgmma group
      // (its ldmatrix reads were done before that group was issued). Every thread arrives
      // after a proxy fence: the y tile was read through the generic proxy (ldmatrix, prefix
      // loads) and is next written through the async one (the bulk copy). (One arrival per
      // warp after __syncwarp left compute-sanitizer's racecheck a hazard and measured no
      // faster.)
      if (kk == 1 && t > 0) {
        fence_proxy_async();
        mbar_arrive(empty + 8 * static_cast<uint32_t>((t - 1) % kS));
      }
    }
  }
  wgmma_drain(acc);
  static_assert(kPbThreads * 2 * kPbNT * 4 * 4 <= kPbTmaStages * kPbTmaStageBytes, "the accumulators fit the ring");
  // Every copy into the ring completed (each was waited for), so the ring takes the sums.
  if (!cluster_reduce_acc<2 * kPbNT * 4>(&acc[0][0][0], reinterpret_cast<float*>(ring_ptr))) return;
  pb_store_state_rows<true>(acc, w.desc, list0, state + unit * kPbRows * kPbCols, lane);
#else
  __trap();  // never selected without sm_90a code (device_has_wgmma)
#endif
}

}  // namespace ta::cuda
