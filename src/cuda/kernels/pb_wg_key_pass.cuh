// Prefix x block key pass on Hopper's warpgroup MMA (sm_90a; PassKernels::kPrefixBlockWg):
// the same state S_pad as pb_key_pass, the same A fragments (each warp's two 16-row blocks,
// the y slab by ldmatrix.trans scaled per token by its prefix), but the [v|1] slab is the
// wgmma B operand in shared memory (kernels/wgmma.cuh), so no B fragments pass through
// registers, and the MMAs run while the warps build the next A. dev/cuda v5: key pass
// 11.5 ms against 15.3 ms for the mma.sync kernel at N = 66048, H = 24 (H100).
//
// CTA = 2 warpgroups; warp w owns blocks 2w, 2w + 1 of the CTA's 16, so warpgroup G's wgmma
// for slot m covers blocks 8G + m, 8G + 2 + m, ... (one per warp). Token tiles of 64 (the y
// tile by one bulk copy of its prepared image on an mbarrier, the [v|1] tile by cp.async) in a
// 4-stage ring filled two tiles ahead: the buffer refilled at tile T was read by tile T - 2's
// wgmmas, all retired by the wgmma_wait<1> of tile T - 1's second k-step. A is
// double-buffered across k-steps: the wgmma_wait<1> before building a[kk & 1] retires the
// group (two k-steps back) that read it. Per k-step and warp: 2 ldmatrix, 8 prefix loads,
// 8 bf16x2 products, 2 wgmma; no branches (ncu on the first version: 174 instructions per
// k-step with per-step CONST/null branches and fp32 scaling, issue-bound).
//
// CONST and null blocks run the generic code: prefix = the ones column, column block 8 =
// cols 128..143 of the staged y tile = [1, 0 x 7, the next row's dims 0..7] (the last row's
// next 8 values open the stage's [v|1] tile): row 0 is the constant feature; rows 1..15
// have weight 0 and are stored as exact zeros; null blocks are not stored. With every
// input finite these rows see only finite values.
#pragma once

#include "cuda/kernels/pb_common.cuh"
#include "cuda/kernels/wgmma.cuh"

namespace ta::cuda {

// A warp's two blocks (list positions list0, list0 + 1) in the wgmma key passes: their
// descriptors, and the element offsets in a staged y tile ([64][136]) of the warp's ldmatrix
// rows at k-step 0 and of the prefix of token 2t.
struct PbWgKeyWarp {
  uint32_t desc[2];
  int a_off[2], p_off[2];
};
__device__ __forceinline__ PbWgKeyWarp pb_wg_key_warp(int list0, int lane) {
  PbWgKeyWarp w{};
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    w.desc[m] = c_pb_list.d[list0 + m];
    const bool generic = pb_kind(w.desc[m]) >= kPbDeg1;
    const int bb = generic ? pb_bb(w.desc[m]) : 8, col = generic ? pb_col(w.desc[m]) : kPbOnesCol;
    w.a_off[m] = ((lane & 7) + (lane >> 4) * 8) * kPbTileStride + 16 * bb + ((lane >> 3) & 1) * 8;
    w.p_off[m] = 2 * (lane & 3) * kPbTileStride + col;
  }
  return w;
}

// One k-step of a warp (tokens 16 kk .. 16 kk + 15 of the y tile staged at shared byte
// address y_at, sb the same tile as a pointer): the prefixes, the wait that retires the
// wgmma group two k-steps back (after it, everything older groups read is free), A built
// into af (the buffer that group read), and the two wgmmas against the [v|1] slab of
// descriptor bdesc as one group.
__device__ __forceinline__ void pb_wg_key_kstep(float (&acc)[2][kPbNT][4], uint32_t (&af)[2][4],
                                                const PbWgKeyWarp& w, const uint16_t* sb, uint32_t y_at, int kk,
                                                uint64_t bdesc) {
#if TA_WGMMA_DEVICE
  constexpr int kST = kPbTileStride;
  // The prefixes first: they need no wgmma to retire, so their latency hides behind the wait.
  uint32_t lo[2], hi[2];
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    const uint16_t* pc = sb + kk * 16 * kST + w.p_off[m];
    lo[m] = pair_bf16(pc[0], pc[kST]);
    hi[m] = pair_bf16(pc[8 * kST], pc[9 * kST]);
  }
  wgmma_wait<1>();
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    // A = y slab transposed (rows = the block's 16 dims, cols = tokens), each pair scaled
    // by its tokens' prefix: (2t, 2t+1) for registers 0 and 1, (2t+8, 2t+9) for 2 and 3.
    ldsm_x4_trans_at(af[m], y_at + 2 * (kk * 16 * kST + w.a_off[m]));
    af[m][0] = bf16x2_mul(af[m][0], lo[m]);
    af[m][1] = bf16x2_mul(af[m][1], lo[m]);
    af[m][2] = bf16x2_mul(af[m][2], hi[m]);
    af[m][3] = bf16x2_mul(af[m][3], hi[m]);
  }
  wgmma_step(acc, af, bdesc);
#endif
}

__global__ void __launch_bounds__(kPbThreads, 1)
    pb_wg_key_pass(PassArgs a, const __nv_bfloat16* __restrict__ y, const __nv_bfloat16* __restrict__ vx,
                   __nv_bfloat16* __restrict__ state) {
#if TA_WGMMA_DEVICE
  constexpr int kST = kPbTileStride, kTile = kPbKeyTile * kST;  // stage = y tile [64][136], then [v|1] (core layout)
  static_assert(kST == kPbCols && kPbValueDim == 128, "[v|1] rows are 16 column groups of v and the ones group");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const int64_t unit = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t n_tokens = a.g.Nk;
  const __nv_bfloat16* yu = y + unit * pb_key_tiles(n_tokens) * kPbKeyTile * kPbCols;  // tile images (pb_prep_keys)
  // Values: the prepared rows [v | 1 | 0 x 7], or with vx = NULL (pb_direct_values) the
  // unit's bf16 v slice itself, its "1" column written here (0 for masked keys).
  const bool direct = vx == nullptr;
  const __nv_bfloat16* vu = direct ? nullptr : vx + unit * n_tokens * kPbCols;
  int64_t vb = 0, vh = 0, vs_ = 0;
  unit_coords(a.g, a.g.unit0 + unit, &vb, &vh, &vs_);
  const auto* vsrc = static_cast<const __nv_bfloat16*>(a.v.data) + vb * a.v.s0 + vh * a.v.s1 + vs_ * kPbValueDim;

  // Launched in clusters of n CTAs (pb_key_split): the cluster shares one CTA's blocks, rank
  // r taking its r-th share of the token tiles; cluster_reduce_acc sums them in rank 0.
  const int ksplit = static_cast<int>(cluster_size()), krank = static_cast<int>(cluster_rank());
  const int list0 = static_cast<int>(blockIdx.x) / ksplit * kPbKeyBlocksPerCta + warp * 2;
  const PbWgKeyWarp w = pb_wg_key_warp(list0, lane);

  // Shared byte addresses, computed once (cp_async16_at): the ring, its barriers and each
  // thread's staging slots.
  const uint32_t ring = smem_u32(smem_raw);
  constexpr uint32_t kStageBytes = 2 * kTile * 2;

  // The [v|1] tiles' column group 16 = [1 | 0 x 7] for every token: full tiles of an unmasked
  // call that reads direct values keep it (only the last, partial tile and masked calls
  // rewrite it).
  for (int e = tid; e < kPbWgStages * kPbKeyTile; e += kPbThreads) {
    const int s = e / kPbKeyTile, r = e % kPbKeyTile;
    *reinterpret_cast<uint4*>(smem + 2 * s * kTile + kTile + core_offset<kPbNT>(r, 16)) =
        make_uint4(kBf16One, 0u, 0u, 0u);
  }
  // The y tiles come by one bulk copy each (17,408 bytes of the prepared tile image, ones
  // columns and zero padding rows included), completing on barrier `buffer`: 1,024 16-byte
  // copies of all threads stalled the warps on the copies' operand registers (ncu).
  const uint32_t bars = ring + kPbWgStages * kStageBytes;
  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < kPbWgStages; ++i) mbar_init(bars + 8 * i, 1);
    mbar_init_fence();
  }
  __syncthreads();

  // Every tile, a thread stages the same chunks: value column group cv of tokens rv + 16 i
  // (8 lanes = 8 tokens of one group: distinct banks; a warp reads 64 contiguous bytes of 8
  // tokens). Padding tokens are zero-filled, masked keys' values too (direct values;
  // prepared rows are zero already), so neither adds anything, not even to the CONST row.
  const int rv = (tid & 7) + 8 * (tid >> 7), cv = (tid >> 3) & 15;
  const uint32_t vs_at = ring + 2 * (kTile + core_offset<kPbNT>(rv, cv));
  const uint32_t ones_at = ring + 2 * (kTile + core_offset<kPbNT>(tid & (kPbKeyTile - 1), 16));
  const int64_t all_tiles = (n_tokens + kPbKeyTile - 1) / kPbKeyTile;
  const int64_t per_rank = (all_tiles + ksplit - 1) / ksplit;
  const int64_t tile0 = min(all_tiles, krank * per_rank), n_tiles = min(all_tiles, tile0 + per_rank) - tile0;
  // Whole tiles without a mask (all but the last tile of an unmasked call) take the copies
  // without bounds or mask checks: 64-bit index arithmetic and the per-token mask test were
  // half of the loop's instructions.
  const bool unmasked = !direct || a.keep == nullptr;
  const int64_t v_stride = direct ? a.v.s2 : kPbCols;
  const __nv_bfloat16* v_rows = direct ? vsrc : vu;
  auto stage_tile = [&](int64_t tile, int buf) {
    const uint32_t at = static_cast<uint32_t>(buf) * kStageBytes;
    const int64_t tok0 = (tile0 + tile) * kPbKeyTile;
    if (tid == 0) {
      const uint32_t bar = bars + 8 * buf;
      mbar_expect_tx(bar, kTile * 2);
      bulk_copy_to_shared(ring + at, yu + tok0 * kPbCols, kTile * 2, bar);
    }
    if (unmasked && tok0 + kPbKeyTile <= n_tokens) {
      const __nv_bfloat16* vs = v_rows + (tok0 + rv) * v_stride + cv * 8;
#pragma unroll
      for (int i = 0; i < 4; ++i) cp_async16_at(vs_at + at + i * 2 * kPbNT * 64 * 2, vs + i * 16 * v_stride);
      if (!direct && tid < kPbKeyTile) cp_async16_at(ones_at + at, vu + (tok0 + tid) * kPbCols + kPbValueDim);
      return;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t tv = tok0 + rv + 16 * i;
      const uint32_t dst = vs_at + at + i * 2 * kPbNT * 64 * 2;
      if (direct) {
        const bool valid = tv < n_tokens && key_attends(a, vb, tv);
        cp_async16_at(dst, vsrc + (valid ? tv * a.v.s2 + cv * 8 : 0), valid);
      } else {
        cp_async16_at(dst, vu + (tv < n_tokens ? tv * kPbCols + cv * 8 : 0), tv < n_tokens);
      }
    }
    // Column group 16 ([1 | 0 x 7], or zeros): one chunk per token.
    if (tid < kPbKeyTile) {
      const int64_t tok = tok0 + tid;
      if (direct) {
        const bool valid = tok < n_tokens && key_attends(a, vb, tok);
        *reinterpret_cast<uint4*>(smem + buf * 2 * kTile + kTile + core_offset<kPbNT>(tid, 16)) =
            make_uint4(valid ? kBf16One : 0u, 0u, 0u, 0u);
      } else {
        cp_async16_at(ones_at + at, vu + (tok < n_tokens ? tok * kPbCols + kPbValueDim : 0), tok < n_tokens);
      }
    }
  };

  float acc[2][kPbNT][4];
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int n = 0; n < kPbNT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

  if (0 < n_tiles) stage_tile(0, 0);
  cp_async_commit();
  if (1 < n_tiles) stage_tile(1, 1);
  cp_async_commit();

  // No warp skips a wgmma (warps of null blocks compute rows nobody stores): a path around
  // them makes ptxas serialize every wgmma of the kernel (its warning C7513).
  uint32_t af[2][2][4];
  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    cp_async_wait<1>();  // tile `tile`'s values have landed (tile + 1 may still be in flight)
    mbar_wait(bars + 8 * static_cast<int>(tile % kPbWgStages), static_cast<uint32_t>(tile / kPbWgStages) & 1u);  // its keys
    fence_proxy_async();
    __syncthreads();
    if (tile + 2 < n_tiles) stage_tile(tile + 2, static_cast<int>((tile + 2) % kPbWgStages));
    cp_async_commit();
    const int buf = static_cast<int>(tile % kPbWgStages);
    const uint32_t st_at = ring + static_cast<uint32_t>(buf) * kStageBytes;
    const uint16_t* sb = reinterpret_cast<const uint16_t*>(smem + 2 * buf * kTile);
#pragma unroll
    for (int kk = 0; kk < kPbKeyTile / 16; ++kk) {
      pb_wg_key_kstep(acc, af[kk & 1], w, sb, st_at, kk, core_desc_at<kPbNT>(st_at + 2 * (kTile + 2 * kk * kPbNT * 64)));
    }
  }
  wgmma_drain(acc);
  static_assert(kPbThreads * 2 * kPbNT * 4 * 4 <= pb_wg_smem(), "the accumulators fit the stage buffers");
  if (!cluster_reduce_acc<2 * kPbNT * 4>(&acc[0][0][0], reinterpret_cast<float*>(smem_raw))) return;
  pb_store_state_rows<true>(acc, w.desc, list0, state + unit * kPbRows * kPbCols, lane);
#else
  __trap();  // never selected without sm_90a code (device_has_wgmma)
#endif
}

}  // namespace ta::cuda
