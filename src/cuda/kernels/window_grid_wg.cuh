// The local-exact hybrid's grid queries on Hopper warpgroup MMA (sm_90a): a persistent,
// warp-specialised kernel for radius 1..4 (window_plan.h, "the 2-D grid kernel").
//
// Why a second kernel: window_mma computes a window stage on mma.sync, each warp the 3
// n-tiles its 16 queries of one grid row reach, at one block of 8 warps per SM with a barrier
// and per-warp bookkeeping per stage; it ran at ~10% of the tensor cores' rate there (perf-notes,
// window v4). Here a warpgroup owns a square 8 x 8 block of queries, so every key of a 4-row x
// 16-column stage of the patch around it is a candidate for all 64 queries: a stage is one
// m64n64 Q K^T and one m64nD P V, as for text keys (256 computed scores per query for the 81
// exact ones at r = 4, with the whole stage on wgmma).
//
// Shape: warps 0..7 are two consumer warpgroups (the top and bottom 8 x 8 queries of a 16 x 8
// tile); warp 8 (of a third warpgroup that gives its registers to the others) is the producer. CTAs are persistent: CTA c takes work items c, c + gridDim.x,
// ... (item = unit x tile, tiles row by row), and the producer runs ahead through a ring of
// kGridRing stage slots, across tile boundaries. Per stage it writes the keys' scale factors
// (0 for keys outside the grid or the text range) into the slot and has the TMA copy the keys
// and values (boxes of 64 columns x 16 x 4 tokens of the grid map, or 64 tokens of the token
// map; the 128-byte swizzle, out-of-range tokens as zeros) and, per tile, the query block (64
// columns x 8 x 16) with its scale factors into one of two query slots. Full barriers count
// the producer warp's 32 arrivals plus the bytes; empty barriers one arrival per consumer warp
// (a warpgroup that does not use a stage still waits for it to land and releases it, so the
// phases stay in step).
//
// Scores: keys outside a query's window and out-of-grid keys score 0 (masked, or zero rows),
// whose weight e^{-m} - e^{-m} T_P(0) is exactly 0 (window_mma.cuh). Every grid row has a
// Taylor part. Settle, weights and finish are window_mma's (window_settle, window_weights,
// window_finish_rows): the same formula, guards and statistics. Only unmasked calls with
// 16-bit q, k, v of exactly D = 64 or 128 columns per slice and TMA maps for each come here.
#pragma once

#include <cuda.h>

#include "cuda/kernels/window_mma.cuh"

namespace ta::cuda {

// One grid's launch of the 2-D kernel.
struct WindowGridParams {
  CUtensorMap q, k, v;   // the grid's maps (make_grid_map): boxes of 64 columns x 8 x 16 (q), x 16 x 4 (k, v) tokens
  CUtensorMap kt, vt;    // token maps of k and v with 64-token boxes (text stages)
  uint32_t qo, ko, vo;   // grid_map_coords orders of q, k, v
  uint32_t kto, vto;     // tma_token_coords orders of kt, vt
  int32_t grid;          // index into WindowArgs' grids
  int64_t tiles_x, tiles_y;
  int64_t items;         // units x tiles_x x tiles_y (set per launch)
};

// Per call: the 2-D kernel's maps for every grid (on = 0: the grid queries stay in window_mma).
struct WindowGridMaps {
  int32_t on;
  WindowGridParams grid[TA_MAX_GRIDS];
};

constexpr int kGridConsumerWarps = 8;
// Two consumer warpgroups and a producer warpgroup (whose first warp works), with the
// registers moved to the consumers (setmaxnreg): 2 x 128 x 224 + 128 x 56 <= 64 K (ptxas: no
// spills; 240 / 24 spilled the producer).
constexpr int kGridThreads = (kGridConsumerWarps + 4) * 32;
constexpr int kGridConsumerRegs = 224, kGridProducerRegs = 56;
constexpr int kGridRing = 4;  // stage slots in flight

// Shared memory (byte offsets from a 1024-byte aligned base): the ring of stage slots (keys,
// then values; per 64-column block [64 tokens][128 bytes], swizzled), two query slots
// (per block [128 queries][128 bytes]: warpgroup 0's 64 rows, then warpgroup 1's), the
// stage slots' key scale factors, the query slots' scale factors, 1/k!, the barriers.
template <int D>
struct GridSmem {
  static constexpr int BLOCKS = D / 64;
  static constexpr int KBLOCK = kGridStageKeys * 128;       // one 64-column block of a stage's keys
  static constexpr int KBYTES = BLOCKS * KBLOCK;            // a stage's keys (its values follow)
  static constexpr int SLOT = 2 * KBYTES;
  static constexpr int QROWS = kGridTileRows * kGridTileCols;
  static constexpr int QBLOCK = QROWS * 128;
  static constexpr int QBYTES = BLOCKS * QBLOCK;
  static constexpr int QBUF = kGridRing * SLOT;
  static constexpr int KF = QBUF + 2 * QBYTES;
  static constexpr int QF = KF + kGridRing * kGridStageKeys * 4;
  static constexpr int FACT = QF + 2 * QROWS * 4;
  static constexpr int BARS = FACT + 16 * 4;
  static constexpr int NBARS = 2 * kGridRing + 4;  // full[ring], empty[ring], qfull[2], qempty[2]
  static constexpr size_t bytes = 1024 + BARS + NBARS * 8;
  static_assert(D == 64 || D == 128, "64-column TMA boxes");
  static_assert(BARS % 8 == 0, "aligned barriers");
};
static_assert(GridSmem<128>::bytes <= 227 * 1024, "one CTA per SM within the opt-in limit");

template <class T, int D>
__global__ void __launch_bounds__(kGridThreads, 1)
    window_grid_wg(PassArgs a, WindowArgs w, const __grid_constant__ WindowGridParams gp) {
#if !TA_WGMMA_DEVICE
  __trap();
#else
  using L = GridSmem<D>;
  constexpr int KS = D / 16, DT = D / 8;
  extern __shared__ __align__(16) unsigned char grid_smem[];
  unsigned char* base = grid_smem + ((1024 - (smem_u32(grid_smem) & 1023)) & 1023);
  const uint32_t sbase = smem_u32(base);
  float* kfs = reinterpret_cast<float*>(base + L::KF);
  float* qfs = reinterpret_cast<float*>(base + L::QF);
  float* inv_fact = reinterpret_cast<float*>(base + L::FACT);
  const uint32_t bars = sbase + L::BARS;
  auto full = [&](int i) { return bars + 8u * i; };
  auto empty = [&](int i) { return bars + 8u * (kGridRing + i); };
  auto qfull = [&](int i) { return bars + 8u * (2 * kGridRing + i); };
  auto qempty = [&](int i) { return bars + 8u * (2 * kGridRing + 2 + i); };

  const Geometry& g = a.g;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = w.radius;
  const int nwin = grid_window_stages(r);
  const int64_t text_len = w.text_keys ? w.text : 0;
  const int per_tile = nwin + static_cast<int>((text_len + kGridStageKeys - 1) / kGridStageKeys);
  const int64_t GH = w.grid_height[gp.grid], GW = w.grid_width[gp.grid], gstart = w.grid_start[gp.grid];
  const int64_t tiles = gp.tiles_x * gp.tiles_y;

  if (threadIdx.x == 0) {
    for (int i = 0; i < kGridRing; ++i) {
      mbar_init(full(i), 32);
      mbar_init(empty(i), kGridConsumerWarps);
    }
    for (int i = 0; i < 2; ++i) {
      mbar_init(qfull(i), 32);
      mbar_init(qempty(i), kGridConsumerWarps);
    }
    mbar_init_fence();
  }
  if (threadIdx.x < 16) {
    float f = 1.0f;
    for (int k = 2; k <= static_cast<int>(threadIdx.x); ++k) f *= static_cast<float>(k);
    inv_fact[threadIdx.x] = 1.0f / f;
  }
  __syncthreads();

  // Work item -> (unit of the batch, tile origin y0, x0).
  auto item_of = [&](int64_t item, int64_t* unit_local, int64_t* y0, int64_t* x0) {
    int64_t rest = 0, ty = 0, tx = 0;
    divmod(item, tiles, unit_local, &rest);
    divmod(rest, gp.tiles_x, &ty, &tx);
    *y0 = ty * kGridTileRows;
    *x0 = tx * kGridTileCols;
  };

  if (warp >= kGridConsumerWarps) {
    // ---- producer warpgroup: its first warp stages, the others leave ----
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kGridProducerRegs));
    if (warp != kGridConsumerWarps) return;
    int64_t n = 0;
    int t = 0;
    for (int64_t item = blockIdx.x; item < gp.items; item += gridDim.x, ++t) {
      int64_t unit_local, y0, x0, b, h, s;
      item_of(item, &unit_local, &y0, &x0);
      unit_coords(g, g.unit0 + unit_local, &b, &h, &s);
      const float* qf = a.qfac + unit_local * g.Nq + gstart;
      const float* kf = a.kfac + unit_local * g.Nk;
      const int qs = t & 1;
      mbar_wait(qempty(qs), static_cast<uint32_t>((t >> 1) & 1) ^ 1u);
      for (int i = lane; i < L::QROWS; i += 32) {
        const int64_t y = y0 + i / kGridTileCols, x = x0 + i % kGridTileCols;
        qfs[qs * L::QROWS + i] = y < GH && x < GW ? qf[y * GW + x] : 0.0f;
      }
      if (lane == 0) {
        mbar_expect_tx(qfull(qs), L::QBYTES);
        int c[4];
        grid_map_coords(gp.qo, static_cast<int>(x0), static_cast<int>(y0), h, b, c);
#pragma unroll
        for (int blk = 0; blk < L::BLOCKS; ++blk) {
          tensor_copy_5d(sbase + L::QBUF + qs * L::QBYTES + blk * L::QBLOCK, &gp.q, static_cast<int>(s * D) + 64 * blk,
                         c, qfull(qs));
        }
      } else {
        mbar_arrive(qfull(qs));
      }
      for (int i = 0; i < per_tile; ++i, ++n) {
        const int slot = static_cast<int>(n % kGridRing);
        mbar_wait(empty(slot), static_cast<uint32_t>((n / kGridRing) & 1) ^ 1u);
        const bool window = i < nwin;
        const int64_t ky0 = window ? y0 - r + kGridStageRows * grid_stage_at(r, i) : 0, kx0 = x0 - r;
        const int64_t tok0 = window ? 0 : static_cast<int64_t>(i - nwin) * kGridStageKeys;
        for (int kk = lane; kk < kGridStageKeys; kk += 32) {
          float f = 0.0f;
          if (window) {
            const int64_t ky = ky0 + kk / kGridPatchCols, kx = kx0 + kk % kGridPatchCols;
            if (ky >= 0 && ky < GH && kx >= 0 && kx < GW) f = kf[gstart + ky * GW + kx];
          } else if (tok0 + kk < text_len) {
            f = kf[tok0 + kk];
          }
          kfs[slot * kGridStageKeys + kk] = f;
        }
        if (lane == 0) {
          const uint32_t kdst = sbase + slot * L::SLOT, vdst = kdst + L::KBYTES;
          mbar_expect_tx(full(slot), L::SLOT);
          if (window) {
            int ck[4], cv[4];
            grid_map_coords(gp.ko, static_cast<int>(kx0), static_cast<int>(ky0), h, b, ck);
            grid_map_coords(gp.vo, static_cast<int>(kx0), static_cast<int>(ky0), h, b, cv);
#pragma unroll
            for (int blk = 0; blk < L::BLOCKS; ++blk) {
              tensor_copy_5d(kdst + blk * L::KBLOCK, &gp.k, static_cast<int>(s * D) + 64 * blk, ck, full(slot));
              tensor_copy_5d(vdst + blk * L::KBLOCK, &gp.v, static_cast<int>(s * D) + 64 * blk, cv, full(slot));
            }
          } else {
            int ck[3], cv[3];
            tma_token_coords(gp.kto, tok0, h, b, ck);
            tma_token_coords(gp.vto, tok0, h, b, cv);
#pragma unroll
            for (int blk = 0; blk < L::BLOCKS; ++blk) {
              tensor_copy_4d(kdst + blk * L::KBLOCK, &gp.kt, static_cast<int>(s * D) + 64 * blk, ck[0], ck[1], ck[2],
                             full(slot));
              tensor_copy_4d(vdst + blk * L::KBLOCK, &gp.vt, static_cast<int>(s * D) + 64 * blk, cv[0], cv[1], cv[2],
                             full(slot));
            }
          }
        } else {
          mbar_arrive(full(slot));
        }
      }
    }
    return;
  }

  // ---- consumer warpgroups ----
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kGridConsumerRegs));
  const int wg = warp / 4, w4 = warp % 4, gid = lane >> 2;
  // Window stages (by load index) this warpgroup computes; the others it only releases.
  uint32_t uses = 0;
  for (int i = 0; i < nwin; ++i) uses |= (grid_stage_used(r, wg, grid_stage_at(r, i)) ? 1u : 0u) << i;
  // This thread's query rows in the tile: local row 8 wg + 2 w4 + i, column gid (i = 0, 1:
  // accumulator rows gid and gid + 8 of the warp's 16).
  const int qrow0 = kGridWgRows * wg + 2 * w4;
  RowStats stats;
  int64_t n = 0;
  int t = 0;
  for (int64_t item = blockIdx.x; item < gp.items; item += gridDim.x, ++t) {
    int64_t unit_local, y0, x0, b, h, s;
    item_of(item, &unit_local, &y0, &x0);
    unit_coords(g, g.unit0 + unit_local, &b, &h, &s);
    bool has_row[2];
    int64_t qi[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t qy = y0 + qrow0 + i, qx = x0 + gid;
      has_row[i] = qy < GH && qx < GW;
      qi[i] = gstart + qy * GW + qx;
    }
    const int qs = t & 1;
    mbar_wait(qfull(qs), static_cast<uint32_t>(t >> 1) & 1u);
    WindowRows rs;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      rs.qf[i] = qfs[qs * L::QROWS + 64 * wg + 16 * w4 + gid + 8 * i];
      rs.m[i] = rs.mx[i] = rs.ml[i] = rs.l[i] = 0.0f;
      rs.em[i] = ex2_approx(-0.0f);
    }
    float acc[DT][4];
#pragma unroll
    for (int j = 0; j < DT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    auto& acc_flat = *reinterpret_cast<float(*)[4 * DT]>(&acc[0][0]);
    const uint32_t qaddr = sbase + L::QBUF + qs * L::QBYTES + wg * (L::QBLOCK / 2);

    // A stage this warpgroup does not use: wait for it (so the empty barrier's phases stay in
    // step with the producer's) and release it.
    auto pass_over = [&](int64_t at) {
      const int slot = static_cast<int>(at % kGridRing);
      mbar_wait(full(slot), static_cast<uint32_t>((at / kGridRing) & 1));
      __syncwarp();
      if (lane == 0) mbar_arrive(empty(slot));
    };
    int i = 0;
    while (true) {
      while (i < nwin && ((uses >> i) & 1u) == 0) {
        pass_over(n);
        ++i;
        ++n;
      }
      if (i >= per_tile) break;
      const int slot = static_cast<int>(n % kGridRing);
      mbar_wait(full(slot), static_cast<uint32_t>((n / kGridRing) & 1));
      const uint32_t kaddr = sbase + slot * L::SLOT, vaddr = kaddr + L::KBYTES;

      // S = Q K^T: both operands K-major in the 128-byte swizzle; k-step k is 32 bytes into
      // 64-column block k / 4.
      float sc[8][4];
#pragma unroll
      for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
      auto& s_flat = *reinterpret_cast<float(*)[32]>(&sc[0][0]);
      wgmma_fence();
      pin_acc(s_flat);
#pragma unroll
      for (int k = 0; k < KS; ++k) {
        wgmma_attn_ss<T>(s_flat, smem_desc_sw128_at(qaddr + (k >> 2) * L::QBLOCK + (k & 3) * 32, 16, 1024),
                         smem_desc_sw128_at(kaddr + (k >> 2) * L::KBLOCK + (k & 3) * 32, 16, 1024));
      }
      wgmma_commit();
      wgmma_wait<0>();
      pin_acc(s_flat);

      if (i < nwin) {
        // Keys outside the query's window score 0. Element e of n-tile j: key 8 j + 2 tig +
        // (e & 1) of the stage = patch row 4 ps + (j >> 1), patch column 8 (j & 1) + 2 tig +
        // (e & 1); query row qrow0 + (e >> 1), column gid.
        const int prow = kGridStageRows * grid_stage_at(r, i) - qrow0;
        const int pcol = 2 * (lane & 3) - gid;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            if (!grid_patch_exact(r, prow + (j >> 1), pcol + 8 * (j & 1) + (e & 1), e >> 1, 0)) sc[j][e] = 0.0f;
          }
        }
      }
      window_settle<D, 8, 8, false>(sc, kfs + slot * kGridStageKeys, nullptr, acc, rs, 0, 0, 0u, false, true, lane);
      uint32_t pa[4][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) window_weights<T, D, 8, 8>(sc, kk, rs, inv_fact, true, w.P, pa[kk]);

      // P V: values MN-major; keys 16 kk .. 16 kk + 15 are two atoms from kk 2048 bytes on,
      // LBO = the next 64 value columns (one block of 64 tokens).
      wgmma_fence();
      pin_acc(acc_flat);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        wgmma_attn_rs<T, 1>(acc_flat, pa[kk], smem_desc_sw128_at(vaddr + kk * 2048, L::KBLOCK, 1024));
      }
      wgmma_commit();
      wgmma_wait<0>();
      pin_acc(acc_flat);
      __syncwarp();
      if (lane == 0) mbar_arrive(empty(slot));
      ++i;
      ++n;
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(qempty(qs));

    window_close_rows<D>(rs, acc);
    window_finish_rows<T, D>(a, rs, acc, has_row, qi, true, unit_local, b, h, s, lane & 3, stats);
  }
  stats.flush(a);
#endif
}

}  // namespace ta::cuda
