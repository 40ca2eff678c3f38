// The local-exact hybrid's grid queries (and, with text_queries, its text rows exact over
// every key) on Hopper warpgroup MMA (sm_90a): a persistent, warp-specialised kernel for
// radius 1..4 (window_plan.h, "the 2-D grid kernel").
//
// Why a second kernel: window_mma computes a window stage on mma.sync, each warp the 3
// n-tiles its 16 queries of one grid row reach, at one block of 8 warps per SM with a barrier
// and per-warp bookkeeping per stage; it ran at ~10% of the tensor cores' rate there
// (perf-notes, window v4). Here a warpgroup owns a square 8 x 8 block of queries, so every
// key of a 4-row x 16-column stage of the patch around it is a candidate for all 64 queries:
// a stage is one m64n64 Q K^T and one m64nD P V, as for text keys (256 computed scores per
// query for the 81 exact ones at r = 4, with the whole stage on wgmma).
//
// Shape: warps 0..7 are two consumer warpgroups; warp 8 (of a third warpgroup that gives its
// registers to the others) is the producer. Work items: first the text items (with
// text_queries: 128 text rows x one key range, as window_mma's split text tiles, partials
// merged by window_merge), then the grid items (unit x 16 x 8 tile, tiles row by row), which
// CTAs take from a counter in the workspace (the long text items first, the rest balancing
// out). The producer takes an item, stages its queries (by TMA, with their scale factors and
// the item's index) into one of two query slots, then its stages into a ring of kGridRing
// slots, running ahead across items: per stage the keys' scale factors (0 outside the grid or
// the key range) and "attends" flags into the slot, and the keys and values by TMA (boxes of
// 64 columns x 16 x 4 tokens of the grid map, or 64 tokens of the token map; the 128-byte
// swizzle, out-of-range tokens as zeros). Full barriers count the producer warp's 32 arrivals
// plus the bytes; empty barriers one arrival per consumer thread, after its last read (a
// warpgroup that does not use a stage still waits for it to land and releases it, so the
// phases stay in step). An item index past the end tells the consumers to stop.
//
// Grid items: warpgroup 0 takes the top 8 x 8 queries of the tile, warpgroup 1 the bottom 8 x
// 8. Keys outside a query's window and out-of-grid keys score 0 (masked, or zero rows), whose
// weight e^{-m} - e^{-m} T_P(0) is exactly 0 (window_mma.cuh); every grid row has a Taylor
// part. Text items: warpgroup w takes rows 64 w .. 64 w + 63 of the 128; keys outside the
// range score -inf (no Taylor part). Settle, weights, finish and partials are window_mma's
// (window_settle, window_weights, window_finish_rows, window_store_partials): the same
// formula, guards and statistics. Only unmasked calls with 16-bit q, k, v of exactly D = 64 or
// 128 columns per slice and TMA maps for each come here.
#pragma once

#include <cuda.h>

#include "cuda/kernels/window_mma.cuh"

namespace ta::cuda {

// One grid's launch of the 2-D kernel.
struct WindowGridParams {
  CUtensorMap q, k, v;     // the grid's maps (make_grid_map): boxes of 64 columns x 8 x 16 (q), x 16 x 4 (k, v) tokens
  CUtensorMap qt, kt, vt;  // token maps of q, k and v with 64-token boxes (text items and stages)
  uint32_t qo, ko, vo;     // grid_map_coords orders of q, k, v
  uint32_t qto, kto, vto;  // tma_token_coords orders of qt, kt, vt
  int32_t grid;            // index into WindowArgs' grids
  int64_t tiles_x, tiles_y;
  // Set per launch: the text items it takes first (units x text tiles x live key ranges; 0
  // but in the first grid's launch with text_queries), all items, and its work counter.
  int64_t text_items, items;
  unsigned int* next;
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
// then values; per 64-column block [64 tokens][128 bytes], swizzled), two query slots (per
// block [128 queries][128 bytes]: warpgroup 0's 64 rows, then warpgroup 1's), the stage
// slots' key scale factors and "attends" flags, the query slots' scale factors and item
// indices, 1/k!, the barriers.
template <int D>
struct GridSmem {
  static constexpr int BLOCKS = D / 64;
  static constexpr int KBLOCK = kGridStageKeys * 128;  // one 64-column block of a stage's keys
  static constexpr int KBYTES = BLOCKS * KBLOCK;       // a stage's keys (its values follow)
  static constexpr int SLOT = 2 * KBYTES;
  static constexpr int QROWS = kGridTileRows * kGridTileCols;
  static constexpr int QBLOCK = QROWS * 128;
  static constexpr int QBYTES = BLOCKS * QBLOCK;
  static constexpr int QBUF = kGridRing * SLOT;
  static constexpr int KF = QBUF + 2 * QBYTES;
  static constexpr int OK = KF + kGridRing * kGridStageKeys * 4;
  static constexpr int QF = OK + kGridRing * kGridStageKeys * 4;
  static constexpr int ITEM = QF + 2 * QROWS * 4;
  static constexpr int FACT = ITEM + 2 * 8;
  static constexpr int BARS = FACT + 16 * 4;
  static constexpr int NBARS = 2 * kGridRing + 4;  // full[ring], empty[ring], qfull[2], qempty[2]
  static constexpr size_t bytes = 1024 + BARS + NBARS * 8;
  static_assert(D == 64 || D == 128, "64-column TMA boxes");
  static_assert(QROWS == 128 && BARS % 8 == 0 && ITEM % 8 == 0, "128 queries per item; aligned barriers");
};
static_assert(GridSmem<128>::bytes <= 227 * 1024, "one CTA per SM within the opt-in limit");

// A work item of a launch: text rows [q0, q0 + 128) x keys [k0, k1), or the grid tile at (y0,
// x0). For both, the query slot's row i is query q0 + i (text) or (y0 + i / 8, x0 + i % 8).
struct GridItem {
  bool text;
  int64_t unit_local, split;
  int64_t q0, k0, k1;
  int64_t y0, x0;
  int stages;
};

__device__ __forceinline__ GridItem grid_item(const WindowArgs& w, const WindowGridParams& gp, int64_t item,
                                              int64_t Nk, int nwin, int text_stages) {
  GridItem it{};
  if (item < gp.text_items) {
    const int64_t live = window_live_splits(w, Nk), per_unit = w.text_tiles * live;
    int64_t rest = 0, tile = 0;
    divmod(item, per_unit, &it.unit_local, &rest);
    divmod(rest, live, &tile, &it.split);
    it.text = true;
    it.q0 = tile * kWindowTileQueries;
    it.k0 = w.splits > 1 ? it.split * w.split_keys : 0;
    it.k1 = w.splits > 1 ? min64(it.k0 + w.split_keys, Nk) : Nk;
    it.stages = static_cast<int>((it.k1 - it.k0 + kGridStageKeys - 1) / kGridStageKeys);
    return it;
  }
  int64_t rest = 0, ty = 0, tx = 0;
  divmod(item - gp.text_items, gp.tiles_x * gp.tiles_y, &it.unit_local, &rest);
  divmod(rest, gp.tiles_x, &ty, &tx);
  it.y0 = ty * kGridTileRows;
  it.x0 = tx * kGridTileCols;
  it.stages = nwin + text_stages;
  return it;
}

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
  float* oks = reinterpret_cast<float*>(base + L::OK);
  float* qfs = reinterpret_cast<float*>(base + L::QF);
  int64_t* items = reinterpret_cast<int64_t*>(base + L::ITEM);
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
  const int text_stages = static_cast<int>((text_len + kGridStageKeys - 1) / kGridStageKeys);
  const int64_t GH = w.grid_height[gp.grid], GW = w.grid_width[gp.grid], gstart = w.grid_start[gp.grid];

  if (threadIdx.x == 0) {
    for (int i = 0; i < kGridRing; ++i) {
      mbar_init(full(i), 32);
      mbar_init(empty(i), kGridConsumerWarps * 32);
    }
    for (int i = 0; i < 2; ++i) {
      mbar_init(qfull(i), 32);
      mbar_init(qempty(i), kGridConsumerWarps * 32);
    }
    mbar_init_fence();
  }
  if (threadIdx.x < 16) {
    float f = 1.0f;
    for (int k = 2; k <= static_cast<int>(threadIdx.x); ++k) f *= static_cast<float>(k);
    inv_fact[threadIdx.x] = 1.0f / f;
  }
  __syncthreads();

  if (warp >= kGridConsumerWarps) {
    // ---- producer warpgroup: its first warp stages, the others leave ----
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kGridProducerRegs));
    if (warp != kGridConsumerWarps) return;
    int64_t n = 0;
    for (int t = 0;; ++t) {
      const int qs = t & 1;
      mbar_wait(qempty(qs), static_cast<uint32_t>((t >> 1) & 1) ^ 1u);
      int64_t item = 0;
      if (lane == 0) item = atomicAdd(gp.next, 1u);
      item = __shfl_sync(0xffffffffu, item, 0);
      if (item >= gp.items) {  // the consumers' stop
        if (lane == 0) items[qs] = -1;
        mbar_arrive(qfull(qs));
        break;
      }
      const GridItem it = grid_item(w, gp, item, g.Nk, nwin, text_stages);
      int64_t b, h, s;
      unit_coords(g, g.unit0 + it.unit_local, &b, &h, &s);
      const float* qf = a.qfac + it.unit_local * g.Nq;
      const float* kf = a.kfac + it.unit_local * g.Nk;
      for (int i = lane; i < L::QROWS; i += 32) {
        float f = 0.0f;
        if (it.text) {
          if (it.q0 + i < w.text) f = qf[it.q0 + i];
        } else {
          const int64_t y = it.y0 + i / kGridTileCols, x = it.x0 + i % kGridTileCols;
          if (y < GH && x < GW) f = qf[gstart + y * GW + x];
        }
        qfs[qs * L::QROWS + i] = f;
      }
      if (lane == 0) {
        items[qs] = item;
        mbar_expect_tx(qfull(qs), L::QBYTES);
        const uint32_t qdst = sbase + L::QBUF + qs * L::QBYTES;
        if (it.text) {
          int c0[3], c1[3];
          tma_token_coords(gp.qto, it.q0, h, b, c0);
          tma_token_coords(gp.qto, it.q0 + 64, h, b, c1);
#pragma unroll
          for (int blk = 0; blk < L::BLOCKS; ++blk) {
            const int col = static_cast<int>(s * D) + 64 * blk;
            tensor_copy_4d(qdst + blk * L::QBLOCK, &gp.qt, col, c0[0], c0[1], c0[2], qfull(qs));
            tensor_copy_4d(qdst + blk * L::QBLOCK + L::QBLOCK / 2, &gp.qt, col, c1[0], c1[1], c1[2], qfull(qs));
          }
        } else {
          int c[4];
          grid_map_coords(gp.qo, static_cast<int>(it.x0), static_cast<int>(it.y0), h, b, c);
#pragma unroll
          for (int blk = 0; blk < L::BLOCKS; ++blk) {
            tensor_copy_5d(qdst + blk * L::QBLOCK, &gp.q, static_cast<int>(s * D) + 64 * blk, c, qfull(qs));
          }
        }
      } else {
        mbar_arrive(qfull(qs));
      }
      for (int i = 0; i < it.stages; ++i, ++n) {
        const int slot = static_cast<int>(n % kGridRing);
        mbar_wait(empty(slot), static_cast<uint32_t>((n / kGridRing) & 1) ^ 1u);
        const bool window = !it.text && i < nwin;
        const int64_t ky0 = window ? it.y0 - r + kGridStageRows * grid_stage_at(r, i) : 0, kx0 = it.x0 - r;
        // Token stages: keys [tok0, tok0 + 64) of [k0, k1) (text items) or of the text keys.
        const int64_t tok0 = it.text ? it.k0 + static_cast<int64_t>(i) * kGridStageKeys
                                     : static_cast<int64_t>(i - nwin) * kGridStageKeys;
        const int64_t tok_end = it.text ? it.k1 : text_len;
        for (int kk = lane; kk < kGridStageKeys; kk += 32) {
          bool ok = false;
          int64_t tok = tok0 + kk;
          if (window) {
            const int64_t ky = ky0 + kk / kGridPatchCols, kx = kx0 + kk % kGridPatchCols;
            ok = ky >= 0 && ky < GH && kx >= 0 && kx < GW;
            tok = gstart + ky * GW + kx;
          } else {
            ok = tok < tok_end;
          }
          kfs[slot * kGridStageKeys + kk] = ok ? kf[tok] : 0.0f;
          oks[slot * kGridStageKeys + kk] = ok ? 1.0f : 0.0f;
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
  uint32_t grid_uses = 0;
  for (int i = 0; i < nwin; ++i) grid_uses |= (grid_stage_used(r, wg, grid_stage_at(r, i)) ? 1u : 0u) << i;
  // This thread's query rows: accumulator rows gid and gid + 8 of the warp's 16, query slot
  // rows 64 wg + 16 w4 + gid (+ 8); on a grid tile local row 8 wg + 2 w4 (+ 1), column gid.
  const int qrow0 = kGridWgRows * wg + 2 * w4, slot_row = 64 * wg + 16 * w4 + gid;
  // Which of this thread's 32 scores of window stage i are exact (the same for every tile),
  // bit 4 j + e: element e of n-tile j is key 8 j + 2 tig + (e & 1) of the stage, i.e. patch
  // row 4 ps + (j >> 1), column 8 (j & 1) + 2 tig + (e & 1), for query row qrow0 + (e >> 1),
  // column gid.
  uint32_t win_mask[kGridMaxWindowStages];
#pragma unroll
  for (int i = 0; i < kGridMaxWindowStages; ++i) {
    win_mask[i] = 0;
    const int prow = kGridStageRows * grid_stage_at(r, i) - qrow0, pcol = 2 * (lane & 3) - gid;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool in = grid_patch_exact(r, prow + (j >> 1), pcol + 8 * (j & 1) + (e & 1), e >> 1, 0);
        win_mask[i] |= (in ? 1u : 0u) << (4 * j + e);
      }
    }
  }
  RowStats stats;
  int64_t n = 0;
  for (int t = 0;; ++t) {
    const int qs = t & 1;
    mbar_wait(qfull(qs), static_cast<uint32_t>(t >> 1) & 1u);
    const int64_t item = items[qs];
    if (item < 0) break;
    const GridItem it = grid_item(w, gp, item, g.Nk, nwin, text_stages);
    int64_t b, h, s;
    unit_coords(g, g.unit0 + it.unit_local, &b, &h, &s);
    bool has_row[2];
    int64_t qi[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      if (it.text) {
        qi[i] = it.q0 + slot_row + 8 * i;
        has_row[i] = qi[i] < w.text;
      } else {
        const int64_t qy = it.y0 + qrow0 + i, qx = it.x0 + gid;
        has_row[i] = qy < GH && qx < GW;
        qi[i] = gstart + qy * GW + qx;
      }
    }
    // Text items: rows exact over every key (no Taylor part, keys outside the range at -inf).
    const bool taylor = !it.text;
    if (taylor) {
      // The finish reads num_all from the output and den_all: fetched into L2 now, so the
      // item's end (both warpgroups at once) does not wait for DRAM.
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        if (!has_row[i]) continue;
        const auto* orow = static_cast<const uint16_t*>(a.out.data) + b * a.out.s0 + h * a.out.s1 + qi[i] * a.out.s2 +
                           s * static_cast<int64_t>(g.dvs) * a.out.s3;
        for (int line = lane & 3; line * 64 < g.dvs && a.out.s3 == 1; line += 4) prefetch_l2(orow + line * 64);
        if ((lane & 3) == 0) prefetch_l2(a.wden + it.unit_local * g.Nq + qi[i]);
      }
    }
    const int win_stages = it.text ? 0 : nwin;
    const uint32_t uses = it.text ? 0u : grid_uses;
    WindowRows rs;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      rs.qf[i] = qfs[qs * L::QROWS + slot_row + 8 * i];
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
      mbar_arrive(empty(slot));
    };
    // S = Q K^T of the stage at `at` into sc: both operands K-major in the 128-byte swizzle;
    // k-step k is 32 bytes into 64-column block k / 4. Issued; the caller waits.
    auto issue_scores = [&](float (&sc)[8][4], int64_t at) {
      const int slot = static_cast<int>(at % kGridRing);
      mbar_wait(full(slot), static_cast<uint32_t>((at / kGridRing) & 1));
      const uint32_t kaddr = sbase + slot * L::SLOT;
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
      pin_acc(s_flat);
    };
    // Moves (i, n) to the next stage this warpgroup computes, releasing the ones it skips;
    // false at the end of the item (every item has stages for both warpgroups).
    int i = 0;
    auto advance = [&]() {
      while (i < win_stages && ((uses >> i) & 1u) == 0) {
        pass_over(n);
        ++i;
        ++n;
      }
      return i < it.stages;
    };
    // One stage at a time: Q K^T, the scores settled and weighted, P V. (Issuing the next
    // stage's Q K^T before this one's weights, as flash attention 3 does, measured 5-10%
    // slower here: the warpgroup then waits for the next stage to land before it has done
    // this one's work, and the two warpgroups already overlap each other's MMAs.)
    float sc[8][4];
    while (advance()) {
      const int cur_i = i, slot = static_cast<int>(n % kGridRing);
      issue_scores(sc, n);
      wgmma_wait<0>();
      pin_acc(*reinterpret_cast<float(*)[32]>(&sc[0][0]));
      if (cur_i < win_stages) {
        // Keys outside the query's window score 0 (win_mask: bit 4 j + e of stage cur_i).
        uint32_t bits = 0;
#pragma unroll
        for (int k = 0; k < kGridMaxWindowStages; ++k) bits = k == cur_i ? win_mask[k] : bits;  // registers, not a stack array
#pragma unroll
        for (int j = 0; j < 8; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            if (((bits >> (4 * j + e)) & 1u) == 0) sc[j][e] = 0.0f;
          }
        }
      }
      window_settle<D, 8, 8, false>(sc, kfs + slot * kGridStageKeys, oks + slot * kGridStageKeys, acc, rs, 0, 0, 0u,
                                    !taylor, taylor, lane);
      uint32_t pa[4][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) window_weights<T, D, 8, 8>(sc, kk, rs, inv_fact, taylor, w.P, pa[kk]);

      // P V: values MN-major; keys 16 kk .. 16 kk + 15 are two atoms from kk 2048 bytes on,
      // LBO = the next 64 value columns (one block of 64 tokens).
      const uint32_t vaddr = sbase + slot * L::SLOT + L::KBYTES;
      wgmma_fence();
      pin_acc(acc_flat);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        wgmma_attn_rs<T, 1>(acc_flat, pa[kk], smem_desc_sw128_at(vaddr + kk * 2048, L::KBLOCK, 1024));
      }
      wgmma_commit();
      wgmma_wait<0>();
      pin_acc(acc_flat);
      mbar_arrive(empty(slot));
      ++i;
      ++n;
    }
    mbar_arrive(qempty(qs));

    window_close_rows<D>(rs, acc);
    if (it.text && w.splits > 1) {
      window_store_partials<D>(w, rs, acc, has_row, qi, it.unit_local, it.split, g.dvs, lane & 3);
    } else {
      window_finish_rows<T, D>(a, rs, acc, has_row, qi, taylor, it.unit_local, b, h, s, lane & 3, stats);
    }
  }
  stats.flush(a);
#endif
}

}  // namespace ta::cuda
