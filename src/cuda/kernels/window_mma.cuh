// Tensor-core window kernel of the local-exact hybrid (f16 / bf16 inputs): a flash-
// attention pass restricted to each query's exact set, walked as window_plan.h describes.
//
// A block (8 warps, 16 queries each) takes one WindowTile of one unit: a grid tile of
// `rows` grid rows x `width` columns, or up to 128 text queries (with text_queries, one
// key range of them when the text rows are split; a second kernel merges the ranges).
// Its candidate keys stream through shared memory in stages, double-buffered with
// cp.async (one barrier per stage): the tile's text keys 64 at a time, then each key row
// of the window in pieces of 72 columns. In a text stage every warp computes all 8
// n-tiles; in a window stage a warp computes only the n-tiles its 16 queries reach (3 at
// radius <= 4) and skips key rows more than r away from its grid row.
// Scores come from mma.m16n8k16 on the raw 16-bit inputs (fp32 accumulation; the per-token
// scale factors multiply the fp32 scores), K fragments by ldmatrix, P.V on tensor cores
// from the weights in registers (rounded to the input type, as flash attention does), V
// fragments by ldmatrix.trans. On sm_90a (WG) the text stages run on warpgroup MMA instead
// (window_text_stage_wg): the same scores, weights and roundings, K and V read by the
// tensor cores from the same shared-memory layout (128-byte swizzle, see WindowSmem).
// Keys outside a query's exact set, padding and masked keys need no per-element branch
// in rows with a Taylor part: their score is set to 0 (padding and masked keys are staged
// as zeros with scale 0), whose weight e^{0-m} - e^{-m} T_P(0) is exactly 0 when both
// exponentials come from the same instruction and operand (ex2_approx). Rows exact over
// every key (text rows with text_queries) give such keys a score of -inf instead.
#pragma once

#include <cuda.h>

#include "cuda/kernels/wgmma.cuh"
#include "cuda/kernels/window.cuh"

namespace ta::cuda {

// The wgmma kernel's K and V staging by the TMA unit (on: unmasked 16-bit calls whose slices
// are exactly D = 64 or 128 wide, with 16-byte aligned rows and a map for each): one thread
// copies each stage's key and value rows as boxes of 64 columns x KROWS tokens straight into
// the swizzled layout (win_sw is the TMA's 128-byte swizzle), completing on the buffer's
// mbarrier, instead of 16-byte cp.async from every thread (which stalled the MMA warps on
// the copies' operand registers, ncu v4). Rows outside the stage's keys then hold
// neighbouring tokens (or zeros past either end), not zeros: their scale factor is 0 as
// before, so their scores are exact zeros for finite inputs and their weights exactly 0.
struct WindowMaps {
  CUtensorMap k, v;
  uint32_t order;  // tma_token_coords order of k (bits 0..5) and of v (bits 8..13)
  int32_t on;
};

// Largest slice dim (q/k and v) the kernel is instantiated for; wider slices take the
// SIMT kernel.
constexpr int kWindowMmaMaxDim = 128;
constexpr int kWindowThreads = kWindowWarps * 32;
// How far (natural-log units) a row's running maximum may pass its stabiliser m before the
// accumulator is rescaled: weights e^{s - m} then stay below e^8 ~ 2981, far from the
// overflow of the fp32 sums and of the f16 / bf16 weights fed to the tensor cores.
constexpr float kWindowLazyRescale = 8.0f;
// Kernels with 64- and 128-dim slices (one block per SM) use the lazy stabiliser, the
// centre-out stage order, the unrolled T_P and the vectorised finish; the 32-dim kernel (two
// blocks per SM under a 128-register cap) keeps the plain versions, which fit without
// spills on sm_80 .. sm_90.
constexpr bool window_lazy(int D) { return D > 32; }
// Stage descriptors a block works out once and keeps in shared memory (40 bytes each).
constexpr int kWindowCachedStages = 64;
static_assert(kWindowTextKeys % 32 == 0, "text stages are sub-stages of 4 n-tiles");
static_assert(kWindowPieceKeys / 8 % 3 == 0, "window stages are sub-stages of 3 n-tiles");

// Shared memory of one block: two stage buffers, each kWindowStageRows key rows then
// kWindowStageRows + 8 value rows (the last 8 always zero). Keys and values are stored in
// wgmma's 128-byte-swizzle layout (win_sw): each row cut into 128-byte blocks of 64
// elements (D = 128: two; D <= 64: one, half used at D = 32), a region (keys or values) block
// after block, the eight 16-byte chunks of a block row permuted by XOR with the row's low 3
// bits. So a warp stages two rows into four 128-byte lines of shared memory from four full
// global lines, an ldmatrix 8x8 matrix (8 rows, one chunk) hits 8 distinct bank groups, and
// the wgmma text stages read K (K-major) and V (MN-major) by swizzled descriptors. (Measured
// on the H100: 8 x 8 core matrices, padded or not, made the kernel 26% slower than rows
// padded by 16 bytes, whatever the staging order; this layout keeps rows contiguous.) The
// query tile is staged once in the second buffer, in rows padded by 8 elements (ST). Then per
// stage buffer the keys' scale factors and "attends" flags, and 1/k! for T_P. The buffers
// start 1024-byte aligned (the swizzle atom, 8 rows x 128 bytes).

// Element offset of the 8-element chunk (row r, chunk ch) in a region of ROWS rows.
template <int ROWS>
__device__ __forceinline__ int win_sw(int r, int ch) {
  return (ch >> 3) * ROWS * 64 + r * 64 + (((ch & 7) ^ (r & 7)) << 3);
}

template <int D>
struct WindowSmem {
  static constexpr int ST = D + 8;
  static constexpr int BLOCKS = D > 64 ? D / 64 : 1;  // 128-byte blocks per key row
  static constexpr int KROWS = kWindowStageRows;
  static constexpr int VROWS = kWindowStageRows + kWindowPadRows;
  static constexpr int KV = BLOCKS * KROWS * 64;  // elements of the key region (values follow)
  static constexpr int BUF = BLOCKS * (KROWS + VROWS) * 64;  // 16-bit elements of one stage buffer
  static constexpr size_t bytes = 1024 + size_t{2} * BUF * 2 + size_t{2} * 2 * KROWS * 4 + 16 * 4;
  static_assert((ST * 2) % 16 == 0, "cp.async and ldmatrix rows are 16-byte aligned");
  static_assert(kWindowTileQueries * ST <= BUF, "the query tile is staged in one stage buffer");
  static_assert(KROWS % 8 == 0 && VROWS % 8 == 0 && BUF * 2 % 1024 == 0, "whole swizzle atoms");
};

__device__ __forceinline__ uint32_t win_lds32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Dynamic plus static (the stage cache) shared memory within the opt-in limit of every
// supported card (99 KB on sm_86 / sm_89 / sm_120).
static_assert(WindowSmem<128>::bytes + 2560 <= 101376 && WindowSmem<64>::bytes <= WindowSmem<128>::bytes &&
                  WindowSmem<32>::bytes <= WindowSmem<64>::bytes,
              "window kernel shared memory fits every card");

// 16-byte global -> shared copy that bypasses registers; src_bytes = 0 writes 16 zero
// bytes and reads nothing.
__device__ __forceinline__ void win_cp_async16(void* smem, const void* gmem, int src_bytes) {
  const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void win_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void win_cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Four 8x8 16-bit matrices from shared memory: lanes 8m..8m+7 give the row addresses of
// matrix m, register m receives its fragment (the B operand of mma.m16n8k16 from a
// row-major [n][k] tile, i.e. K rows).
__device__ __forceinline__ void win_ldmatrix_x4(uint32_t (&r)[4], const void* row_address) {
  const auto addr = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Stages buffer rows [0, KROWS) of one stage: the keys (ds of D columns) at dst and the
// values (dvs) at dst + KV, as raw bits in the swizzled layout (win_sw). Row i holds token
// k.tok_first + (i - k.row_first) when k.row_first <= i < k.row_first + k.n and the key
// attends; other rows, masked keys and the columns past ds / dvs are zeros.
// Vector path (contiguous aligned rows, widths multiples of 8): each thread owns one
// 16-byte column chunk and every (256 / (D / 8))-th row, so the loop has a compile-time
// trip count and each row's validity is computed once for both operands. (ncu at 5b3e143: the generic element loop, run twice per stage,
// was about a third of the kernel's instructions.) Else synchronous element loads.
template <int D>
__device__ __forceinline__ void stage_kv16(const PassArgs& a, int64_t kbase, int64_t vbase, int ds, int dvs,
                                           int64_t b, const StageKeys& k, uint16_t* dst) {
  constexpr int KROWS = WindowSmem<D>::KROWS, VROWS = WindowSmem<D>::VROWS;
  const auto* ksrc = static_cast<const uint16_t*>(a.k.data);
  const auto* vsrc = static_cast<const uint16_t*>(a.v.data);
  uint16_t* vdst = dst + WindowSmem<D>::KV;
  const int64_t tok0 = k.tok_first - k.row_first;  // token of buffer row 0 (may be < 0: never read)
  if (a.vec_k && a.vec_v) {
    constexpr int V = D / 8, RPI = kWindowThreads / V;
    static_assert(kWindowThreads % V == 0, "whole rows per pass");
    const int cg = static_cast<int>(threadIdx.x) % V, c0 = cg * 8, r0 = static_cast<int>(threadIdx.x) / V;
    static_assert(RPI % 8 == 0, "a thread's rows share their swizzle");
    const bool kcol = c0 < ds, vcol = c0 < dvs;
    const int koff0 = win_sw<KROWS>(r0, cg), voff0 = win_sw<VROWS>(r0, cg);  // row r0 + it RPI: + it RPI 64
    if constexpr (window_lazy(D)) {
      // 64- and 128-dim slices: the row offsets advance by one 64-bit add per pass and the
      // mask is looked at only when there is one (ncu at 997deaa: ~56 instructions per
      // pass, most of them 64-bit address arithmetic and the mask test). The 32-dim kernel
      // has no registers for the extra offsets.
      const bool masked = a.keep != nullptr;
      int64_t koff = kbase + (tok0 + r0) * a.k.s2 + c0, voff = vbase + (tok0 + r0) * a.v.s2 + c0;
      const int64_t kstep = RPI * a.k.s2, vstep = RPI * a.v.s2;
#pragma unroll
      for (int it = 0; it < (KROWS + RPI - 1) / RPI; ++it) {
        const int r = r0 + it * RPI;
        if (KROWS % RPI != 0 && r >= KROWS) break;
        bool row = static_cast<unsigned>(r - k.row_first) < static_cast<unsigned>(k.n);
        if (masked && row) row = key_attends(a, b, tok0 + r);
        const bool kok = row && kcol, vok = row && vcol;
        win_cp_async16(dst + koff0 + it * RPI * 64, kok ? ksrc + koff : ksrc, kok ? 16 : 0);
        win_cp_async16(vdst + voff0 + it * RPI * 64, vok ? vsrc + voff : vsrc, vok ? 16 : 0);
        koff += kstep;
        voff += vstep;
      }
    } else {
#pragma unroll
      for (int it = 0; it < (KROWS + RPI - 1) / RPI; ++it) {
        const int r = r0 + it * RPI;
        if (KROWS % RPI != 0 && r >= KROWS) break;
        const bool row =
            static_cast<unsigned>(r - k.row_first) < static_cast<unsigned>(k.n) && key_attends(a, b, tok0 + r);
        const int64_t tok = row ? tok0 + r : 0;
        const bool kok = row && kcol, vok = row && vcol;
        win_cp_async16(dst + koff0 + it * RPI * 64, kok ? ksrc + kbase + tok * a.k.s2 + c0 : ksrc, kok ? 16 : 0);
        win_cp_async16(vdst + voff0 + it * RPI * 64, vok ? vsrc + vbase + tok * a.v.s2 + c0 : vsrc, vok ? 16 : 0);
      }
    }
    return;
  }
  for (int e = threadIdx.x; e < KROWS * D; e += kWindowThreads) {
    const int r = e / D, c = e % D;
    const bool row = static_cast<unsigned>(r - k.row_first) < static_cast<unsigned>(k.n) && key_attends(a, b, tok0 + r);
    uint16_t kv = 0, vv = 0;
    if (row && c < ds) kv = ksrc[kbase + (tok0 + r) * a.k.s2 + c * a.k.s3];
    if (row && c < dvs) vv = vsrc[vbase + (tok0 + r) * a.v.s2 + c * a.v.s3];
    dst[win_sw<KROWS>(r, c >> 3) + (c & 7)] = kv;
    vdst[win_sw<VROWS>(r, c >> 3) + (c & 7)] = vv;
  }
}

// The running state of one thread's two query rows (gid and gid + 8 of its warp's 16).
struct WindowRows {
  float qf[2];  // the rows' scale factors
  float m[2];   // stabilisers (>= 0)
  float mx[2];  // the rows' running maxima (>= m: the stabiliser may lag, see window_stage)
  float ml[2];  // m log2(e)
  float em[2];  // e^{-m}, as ex2_approx(-ml)
  float l[2];   // this thread's part of sum_j w_j
};

// Moves the rows' stabilisers to `to` (>= m), rescaling l and acc.
template <int D>
__device__ __forceinline__ void window_rescale(WindowRows& rs, float (&acc)[D / 8][4], const float (&to)[2]) {
  float r[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float ml = to[i] * kLog2e;
    r[i] = ex2_approx(rs.ml[i] - ml);
    rs.m[i] = to[i];
    rs.ml[i] = ml;
    rs.em[i] = ex2_approx(-ml);
    rs.l[i] *= r[i];
  }
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    acc[n][0] *= r[0];
    acc[n][1] *= r[0];
    acc[n][2] *= r[1];
    acc[n][3] *= r[1];
  }
}

// The epilogue of a stage's scores sc (NW n-tiles from buffer row 8 nt0 on, in the mma C
// layout; NWP = NW rounded up to even): scaled scores, keys outside the exact set (and the
// n-tile completing the last k-step) at `fill`, keys that do not attend at -inf where
// need_ok, then the rows' new stabilisers. COLCHECK: a window stage (keys outside a query's
// columns get score `fill`). need_ok: rows exact over every key, stage holding keys that do
// not attend (masked, or past the range).
template <int D, int NW, int NWP, bool COLCHECK>
__device__ __forceinline__ void window_settle(float (&sc)[NWP][4], const float* kfc, const float* okc,
                                              float (&acc)[D / 8][4], WindowRows& rs, int nt0, int colbase,
                                              unsigned two_r, bool need_ok, bool taylor, int lane) {
  const int tig = lane & 3;
  // Element e of n-tile j: row gid + 8 (e >> 1), buffer row 8 (nt0 + j) + 2 tig + (e & 1).
  const float fill = taylor ? 0.0f : -INFINITY;
  const float* kfp = kfc + nt0 * 8 + 2 * tig;
#pragma unroll
  for (int j = 0; j < NWP; ++j) {
    if (j >= NW) {
      sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = fill;
      continue;
    }
    const float2 f = *reinterpret_cast<const float2*>(kfp + j * 8);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int bottom = e >> 1;
      float sv = sc[j][e] * rs.qf[bottom] * ((e & 1) ? f.y : f.x);
      if constexpr (COLCHECK) {
        if (static_cast<unsigned>(colbase + j * 8 + (e & 1) - 8 * bottom) > two_r) sv = fill;
      }
      sc[j][e] = sv;
    }
  }
  if (need_ok) {
    const float* okp = okc + nt0 * 8 + 2 * tig;
#pragma unroll
    for (int j = 0; j < NW; ++j) {
      const float2 o = *reinterpret_cast<const float2*>(okp + j * 8);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (((e & 1) ? o.y : o.x) == 0.0f) sc[j][e] = -INFINITY;
      }
    }
  }

  // New stabilisers (fills never raise them: m >= 0); rescale only when one grew.
  float c[2] = {rs.m[0], rs.m[1]};
#pragma unroll
  for (int j = 0; j < NW; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) c[e >> 1] = fmaxf(c[e >> 1], sc[j][e]);
  }
#pragma unroll
  for (int o = 1; o <= 2; o *= 2) {  // the four threads of a quad hold the same two rows
    c[0] = fmaxf(c[0], __shfl_xor_sync(0xffffffffu, c[0], o));
    c[1] = fmaxf(c[1], __shfl_xor_sync(0xffffffffu, c[1], o));
  }
  // D > 32: lazily, only when a row's maximum passed its stabiliser by more than
  // kWindowLazyRescale (any stabiliser is exact as long as e^{s - m} cannot overflow; here
  // it stays below e^8); the kernel brings m to the maximum at the end. ncu at ee4a18d:
  // rescaling at every growth ran in 95% of the window stages. D = 32 (two blocks per SM
  // under a 128-register cap) has no room for the maxima and rescales at every growth.
  if constexpr (window_lazy(D)) {
    rs.mx[0] = fmaxf(rs.mx[0], c[0]);
    rs.mx[1] = fmaxf(rs.mx[1], c[1]);
    if (__any_sync(0xffffffffu, c[0] > rs.m[0] + kWindowLazyRescale || c[1] > rs.m[1] + kWindowLazyRescale)) {
      window_rescale<D>(rs, acc, rs.mx);
    }
  } else if (__any_sync(0xffffffffu, c[0] > rs.m[0] || c[1] > rs.m[1])) {
    window_rescale<D>(rs, acc, c);
  }
}

// The weights w = e^{s - m} - e^{-m} T_P(s) of k-step kk (n-tiles 2 kk and 2 kk + 1 of sc;
// no Taylor term in rows exact over every key) as the A fragment of P.V, added to l.
template <class T, int D, int NW, int NWP>
__device__ __forceinline__ void window_weights(const float (&sc)[NWP][4], int kk, WindowRows& rs,
                                               const float* inv_fact, bool taylor, int P, uint32_t (&pa)[4]) {
  // An odd NW leaves the second half of the last k-step without keys: its weights are 0
  // by construction (no exp, no Taylor term computed for them).
  const int JJ = 2 * kk + 1 < NW ? 2 : 1;  // a constant once the caller's kk loop is unrolled
  float wv[2][4];
#pragma unroll
  for (int e = 0; e < 4; ++e) wv[1][e] = 0.0f;
#pragma unroll
  for (int jj = 0; jj < JJ; ++jj) {
#pragma unroll
    for (int e = 0; e < 4; ++e) wv[jj][e] = ex2_approx(fmaf(sc[2 * kk + jj][e], kLog2e, -rs.ml[e >> 1]));
  }
  if (taylor) {
    // T_P(s) = sum_{p<P} s^p / p! by Horner's rule. P = 3 and 4 (the cheap setting and
    // the node's) unrolled with the coefficients inv_fact holds (1/k! in fp32); other P
    // by the loop.
    float t[2][4];
    if (window_lazy(D) && P == 3) {
#pragma unroll
      for (int jj = 0; jj < JJ; ++jj) {
#pragma unroll
        for (int e = 0; e < 4; ++e) t[jj][e] = fmaf(fmaf(0.5f, sc[2 * kk + jj][e], 1.0f), sc[2 * kk + jj][e], 1.0f);
      }
    } else if (window_lazy(D) && P == 4) {
#pragma unroll
      for (int jj = 0; jj < JJ; ++jj) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float x = sc[2 * kk + jj][e];
          t[jj][e] = fmaf(fmaf(fmaf(1.0f / 6.0f, x, 0.5f), x, 1.0f), x, 1.0f);
        }
      }
    } else {
      const float c_top = inv_fact[P - 1];
#pragma unroll
      for (int jj = 0; jj < JJ; ++jj) t[jj][0] = t[jj][1] = t[jj][2] = t[jj][3] = c_top;
      for (int p = P - 2; p >= 0; --p) {
        const float cp = inv_fact[p];
#pragma unroll
        for (int jj = 0; jj < JJ; ++jj) {
#pragma unroll
          for (int e = 0; e < 4; ++e) t[jj][e] = fmaf(t[jj][e], sc[2 * kk + jj][e], cp);
        }
      }
    }
#pragma unroll
    for (int jj = 0; jj < JJ; ++jj) {
#pragma unroll
      for (int e = 0; e < 4; ++e) wv[jj][e] = fmaf(-rs.em[e >> 1], t[jj][e], wv[jj][e]);
    }
  }
#pragma unroll
  for (int jj = 0; jj < 2; ++jj) {
    rs.l[0] += wv[jj][0] + wv[jj][1];
    rs.l[1] += wv[jj][2] + wv[jj][3];
  }
  pa[0] = Mma16<T>::pack(wv[0][0], wv[0][1]);
  pa[1] = Mma16<T>::pack(wv[0][2], wv[0][3]);
  pa[2] = Mma16<T>::pack(wv[1][0], wv[1][1]);
  pa[3] = Mma16<T>::pack(wv[1][2], wv[1][3]);
}

// One stage of one warp on mma.sync: scores of NW n-tiles from buffer row 8 nt0 on
// (window_settle has the rest of the arguments), weights, and P.V into acc.
template <class T, int D, int NW, bool COLCHECK>
__device__ __forceinline__ void window_stage(const uint16_t* ks, const uint16_t* vs, const float* kfc,
                                             const float* okc, const float* inv_fact, const uint32_t (&qa)[D / 16][4],
                                             float (&acc)[D / 8][4], WindowRows& rs, int nt0, int colbase,
                                             unsigned two_r, bool need_ok, bool taylor, int P, int lane) {
  constexpr int KS = D / 16, NWP = (NW + 1) / 2 * 2;
  // Few n-tiles: two accumulator sets (even and odd k-steps) for more mma in flight.
  constexpr bool kTwoSets = NW <= 4;
  float sc[NWP][4], sb[kTwoSets ? NW : 1][4];
#pragma unroll
  for (int j = 0; j < NWP; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
#pragma unroll
  for (int j = 0; j < (kTwoSets ? NW : 1); ++j) sb[j][0] = sb[j][1] = sb[j][2] = sb[j][3] = 0.0f;

  // S = Q K^T: one ldmatrix.x4 gives an n-tile's B fragments for two k-steps (matrix m =
  // lanes 8m..8m+7: column group 4 k2 + m of the n-tile's 8 keys).
  constexpr int KROWS = WindowSmem<D>::KROWS, VROWS = WindowSmem<D>::VROWS;
  // Row nt0 8 + (lane & 7) of n-tile 0; chunk 4 k2 + m of it at block k2 / 2, slot
  // (4 (k2 & 1) + m) ^ (lane & 7) = xk ^ 4 (k2 & 1).
  const uint16_t* krow = ks + (nt0 * 8 + (lane & 7)) * 64;
  const int xk = ((lane >> 3) ^ (lane & 7)) << 3;
#pragma unroll
  for (int k2 = 0; k2 < KS / 2; ++k2) {
#pragma unroll
    for (int j = 0; j < NW; ++j) {
      uint32_t kb[4];
      win_ldmatrix_x4(kb, krow + j * 8 * 64 + (k2 >> 1) * KROWS * 64 + (xk ^ ((k2 & 1) << 5)));
      Mma16<T>::run(sc[j], qa[2 * k2], kb[0], kb[1]);
      if constexpr (kTwoSets) {
        Mma16<T>::run(sb[j], qa[2 * k2 + 1], kb[2], kb[3]);
      } else {
        Mma16<T>::run(sc[j], qa[2 * k2 + 1], kb[2], kb[3]);
      }
    }
  }
  if constexpr (kTwoSets) {
#pragma unroll
    for (int j = 0; j < NW; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) sc[j][e] += sb[j][e];
    }
  }
  window_settle<D, NW, NWP, COLCHECK>(sc, kfc, okc, acc, rs, nt0, colbase, two_r, need_ok, taylor, lane);

  // P.V: the weights of n-tiles 2kk and 2kk+1 are the A fragment of k-step kk.
#pragma unroll
  for (int kk = 0; kk < NWP / 2; ++kk) {
    uint32_t pa[4];
    window_weights<T, D, NW, NWP>(sc, kk, rs, inv_fact, taylor, P, pa);
    // Lanes 8m..8m+7 address matrix m: keys +0..7 / +8..15, value columns +0..7 / +8..15.
    // Key (nt0 + 2 kk) 8 + (lane & 7) + 8 ((lane >> 3) & 1); chunk 2 np + (lane >> 4) of it at
    // block np / 4, slot (2 (np & 3)) ^ xv.
    const uint16_t* vrow = vs + ((nt0 + 2 * kk) * 8 + (lane & 7) + ((lane >> 3) & 1) * 8) * 64;
    const int xv = (lane >> 4) ^ (lane & 7);
#pragma unroll
    for (int np = 0; np < D / 16; ++np) {
      uint32_t bv[4];
      ldmatrix_x4_trans(bv, vrow + (np >> 2) * VROWS * 64 + (((2 * (np & 3)) ^ xv) << 3));
      Mma16<T>::run(acc[2 * np], pa, bv[0], bv[1]);
      Mma16<T>::run(acc[2 * np + 1], pa, bv[2], bv[3]);
    }
  }
}

// Before the barrier that publishes a stage: makes this thread's cp.async and plain stores
// to shared memory visible to the wgmma text stages (the async proxy) of a WG kernel.
template <bool WG>
__device__ __forceinline__ void window_publish_fence() {
#if TA_WGMMA_DEVICE
  if constexpr (WG) fence_proxy_async();
#endif
}

#if TA_WGMMA_DEVICE
// A text stage (kWindowTextKeys keys, every one computed by every row) on Hopper warpgroup
// MMA: the four warps of a warpgroup (64 query rows, warp w supplying rows 16 w .. 16 w + 15
// from its Q fragments) compute S = Q K^T as m64n64k16 wgmmas with K read by descriptor
// (K-major), settle and weight the scores as window_stage does, and add P V as m64nDk16
// wgmmas with P from registers and V read by descriptor (MN-major). Each wgmma accumulator's
// per-warp registers are exactly the mma.sync C layout (wgmma.cuh), so sc and acc are the
// arrays window_stage uses. Every warp of the block must call it (the wgmmas are warpgroup
// collectives); warps without queries compute on their zero Q rows (scale factor 0).
template <class T, int D>
__device__ __forceinline__ void window_text_stage_wg(const uint16_t* ks, const uint16_t* vs, const float* kfc,
                                                     const float* okc, const float* inv_fact,
                                                     const uint32_t (&qa)[D / 16][4], float (&acc)[D / 8][4],
                                                     WindowRows& rs, bool need_ok, bool taylor, int P, int lane) {
  constexpr int KS = D / 16, DT = D / 8, NT = kWindowTextKeys / 8;
  constexpr int KROWS = WindowSmem<D>::KROWS, VROWS = WindowSmem<D>::VROWS;
  static_assert(NT == 8, "a text stage is one m64n64 tile of scores");
  // 128-byte-swizzle descriptors (wgmma.cuh) of win_sw's layout. Keys, K-major: k-step k is
  // 32 bytes into block k / 4 (the hardware swizzles by address inside the 1024-byte atom),
  // SBO (next 8 keys) = 1024 bytes, LBO unused. Values, MN-major: keys 16 kk .. 16 kk + 15
  // are two atoms from kk 2048 bytes on, SBO (next 8 keys) = 1024 bytes, LBO (next 64 value
  // columns) = one block of VROWS rows.
  float sc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
  auto& s_flat = *reinterpret_cast<float(*)[4 * NT]>(&sc[0][0]);
  auto& acc_flat = *reinterpret_cast<float(*)[4 * DT]>(&acc[0][0]);

  wgmma_fence();
  pin_acc(s_flat);
#pragma unroll
  for (int k = 0; k < KS; ++k) {
    wgmma_attn_rs<T, 0>(s_flat, qa[k], smem_desc_sw128(ks + (k >> 2) * KROWS * 64 + (k & 3) * 16, 16, 1024));
  }
  wgmma_commit();
  wgmma_wait<0>();
  pin_acc(s_flat);

  window_settle<D, NT, NT, false>(sc, kfc, okc, acc, rs, 0, 0, 0u, need_ok, taylor, lane);
  uint32_t pa[NT / 2][4];
#pragma unroll
  for (int kk = 0; kk < NT / 2; ++kk) window_weights<T, D, NT, NT>(sc, kk, rs, inv_fact, taylor, P, pa[kk]);

  wgmma_fence();
  pin_acc(acc_flat);
#pragma unroll
  for (int kk = 0; kk < NT / 2; ++kk) {
    wgmma_attn_rs<T, 1>(acc_flat, pa[kk], smem_desc_sw128(vs + kk * 16 * 64, VROWS * 128, 1024));
  }
  wgmma_commit();
  wgmma_wait<0>();
  pin_acc(acc_flat);
}
#endif  // TA_WGMMA_DEVICE

// After a row's last stage: brings the stabiliser to the one the row's denominator is
// defined with (core/window.h: m = max(0, max_E s)), which the statistics and the eps guard
// see (the lazy one may lag behind it), and sums l over the quad (the four threads of a quad
// hold different keys of the same rows).
template <int D>
__device__ __forceinline__ void window_close_rows(WindowRows& rs, float (&acc)[D / 8][4]) {
  if constexpr (window_lazy(D)) {
    if (__any_sync(0xffffffffu, rs.mx[0] > rs.m[0] || rs.mx[1] > rs.m[1])) window_rescale<D>(rs, acc, rs.mx);
  }
#pragma unroll
  for (int o = 1; o <= 2; o *= 2) {
    rs.l[0] += __shfl_xor_sync(0xffffffffu, rs.l[0], o);
    rs.l[1] += __shfl_xor_sync(0xffffffffu, rs.l[1], o);
  }
}

// One key range of text rows exact over every key (splits > 1): this thread's (m, l, acc)
// of its rows into the partials, for window_merge.
template <int D>
__device__ __forceinline__ void window_store_partials(const WindowArgs& w, const WindowRows& rs,
                                                      const float (&acc)[D / 8][4], const bool (&has_row)[2],
                                                      const int64_t (&qi)[2], int64_t unit_local, int64_t split,
                                                      int dvs, int tig) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!has_row[i]) continue;
    float* part = w.partials + ((unit_local * w.text + qi[i]) * w.splits + split) * (dvs + 2);
    if (tig == 0) {
      part[0] = rs.m[i];
      part[1] = rs.l[i];
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int col = n * 8 + 2 * tig + j;
        if (col < dvs) part[2 + col] = acc[n][2 * i + j];
      }
    }
  }
}

// Finishes this thread's two rows (query tokens qi of unit (b, h, s), those with has_row) by
// window.cuh's formula, with the denominator guards and statistics, and stores them.
template <class T, int D>
__device__ __forceinline__ void window_finish_rows(const PassArgs& a, const WindowRows& rs,
                                                   const float (&acc)[D / 8][4], const bool (&has_row)[2],
                                                   const int64_t (&qi)[2], bool taylor, int64_t unit_local,
                                                   int64_t b, int64_t h, int64_t s, int tig, RowStats& stats) {
  constexpr int DT = D / 8;
  const int dvs = a.g.dvs;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!has_row[i]) continue;
    const float den_all = taylor ? a.wden[unit_local * a.g.Nq + qi[i]] : 0.0f;
    float den = taylor ? fmaf(rs.em[i], den_all, rs.l[i]) : rs.l[i];
    if (tig == 0) {
      den = stats.account(a, den);
    } else if (den <= a.eps && isfinite(den)) {
      den = a.eps;
    }
    const float carrier = carrier_denominator(den_all), rden = 1.0f / den;
    const int64_t obase = b * a.out.s0 + h * a.out.s1 + qi[i] * a.out.s2 + s * static_cast<int64_t>(dvs) * a.out.s3;
    // This thread's columns come in pairs (2 tig, 2 tig + 1 of each n-tile): with a
    // contiguous, 4-byte aligned output row (out has q's dtype, T) one 32-bit load of
    // num_all and one store per pair, every load issued before the first use. (ncu at
    // 5b3e143: the element-wise finish, a dtype switch per element, was 12% of the
    // instructions.)
    uint16_t* orow = static_cast<uint16_t*>(a.out.data) + obase;
    if (window_lazy(D) && a.out.s3 == 1 && dvs % 2 == 0 && reinterpret_cast<uintptr_t>(orow) % 4 == 0 &&
        isfinite(rden)) {
      uint32_t prev[DT];
#pragma unroll
      for (int n = 0; n < DT; ++n) {
        const int col = n * 8 + 2 * tig;
        prev[n] = taylor && col < dvs ? *reinterpret_cast<const uint32_t*>(orow + col) : 0u;
      }
#pragma unroll
      for (int n = 0; n < DT; ++n) {
        const int col = n * 8 + 2 * tig;
        if (col >= dvs) continue;
        const float2 all = Mma16<T>::unpack(prev[n]);
        // finish_element_rcp's arithmetic exactly.
        const uint32_t out = Mma16<T>::pack(fmaf(rs.em[i], all.x * carrier, acc[n][2 * i]) * rden,
                                            fmaf(rs.em[i], all.y * carrier, acc[n][2 * i + 1]) * rden);
        *reinterpret_cast<uint32_t*>(orow + col) = out;
        const float2 stored = Mma16<T>::unpack(out);
        if (!isfinite(stored.x) || !isfinite(stored.y)) stats.flags |= kFlagNonFiniteOut;
      }
      continue;
    }
#pragma unroll
    for (int n = 0; n < DT; ++n) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int col = n * 8 + 2 * tig + j;
        if (col < dvs) {
          stats.flags |= finish_element_rcp(a, obase + col * a.out.s3, taylor, carrier, rs.em[i], acc[n][2 * i + j],
                                            den, rden);
        }
      }
    }
  }
}

// T: __half or __nv_bfloat16 (the inputs' type); D: the slice dims ds and dvs padded to
// 32, 64 or 128. One block per (unit, tile, key range); blockIdx.x runs over the text
// blocks of every unit first (the longest, started first), then each unit's grid tiles.
// Registers (ptxas, sm_90): D=128 248, D=64 201 (one block per SM), D=32 capped at 128
// for two blocks per SM without spills (D=64 would spill ~100 bytes under that cap).
// WG: the text stages on warpgroup MMA (window_text_stage_wg; D = 64 and 128 on an sm_90a
// build, selected on compute capability 9.0; elsewhere the kernel traps and is never
// selected); the window stages stay on mma.sync (a warp computes only the 3 n-tiles its
// queries reach).
template <class T, int D, bool WG>
__global__ void __launch_bounds__(kWindowThreads, D == 32 ? 2 : 1)
    window_mma(PassArgs a, WindowArgs w, const __grid_constant__ WindowMaps maps) {
  static_assert(!WG || D >= 64, "the 32-dim kernel has no wgmma text stages");
#if !TA_WGMMA_DEVICE
  if constexpr (WG) {
    __trap();
    return;
  }
#endif
  using L = WindowSmem<D>;
  constexpr int ST = L::ST, KS = D / 16, DT = D / 8, KROWS = L::KROWS, VROWS = L::VROWS;
  extern __shared__ __align__(16) unsigned char window_smem[];
  // [2][BUF] from the first 1024-byte boundary (the bytes reserve it).
  uint16_t* bufs = reinterpret_cast<uint16_t*>(window_smem + ((1024 - (smem_u32(window_smem) & 1023)) & 1023));
  float* kfs = reinterpret_cast<float*>(bufs + 2 * L::BUF);    // [2][KROWS] scale factor, 0 for no key
  float* oks = kfs + 2 * KROWS;                                // [2][KROWS] 1 for a key that attends
  float* inv_fact = oks + 2 * KROWS;                           // [16] 1/k!

  const Geometry& g = a.g;
  const int ds = g.ds, dvs = g.dvs;
  const int64_t text_blocks = w.text_tiles * w.splits, blk = blockIdx.x;
  int64_t unit_local = 0, tile_index = 0, split = 0;
  if (blk < w.units * text_blocks) {
    unit_local = blk / text_blocks;
    const int64_t r = blk % text_blocks;
    tile_index = r / w.splits;
    split = r % w.splits;
  } else {
    const int64_t grid_tiles = w.tile_count - w.text_tiles, j = blk - w.units * text_blocks;
    unit_local = j / grid_tiles;
    tile_index = w.text_tiles + j % grid_tiles;
  }
  const WindowTile tile = w.tiles[tile_index];
  int64_t b, h, s;
  unit_coords(g, g.unit0 + unit_local, &b, &h, &s);
  const TilePlan plan = tile_plan(w, tile, split, g.Nk);
  const bool taylor = tile.grid >= 0 || w.text_queries == 0;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
  const WarpRows wr = warp_rows(tile, warp);

  const int64_t qbase = b * a.q.s0 + h * a.q.s1 + s * static_cast<int64_t>(ds) * a.q.s3;
  const int64_t kbase = b * a.k.s0 + h * a.k.s1 + s * static_cast<int64_t>(ds) * a.k.s3;
  const int64_t vbase = b * a.v.s0 + h * a.v.s1 + s * static_cast<int64_t>(dvs) * a.v.s3;
  const float* kf = a.kfac + unit_local * g.Nk;

  // Thread t < KROWS loads key t's scale factor and flag for the next stage into
  // registers; they go to shared memory after the current stage's math.
  float kf_next = 0.0f, ok_next = 0.0f;
  auto fetch_factors = [&](const StageKeys& k) {
    if (threadIdx.x < KROWS) {
      const int j = static_cast<int>(threadIdx.x) - k.row_first;
      const bool ok = j >= 0 && j < k.n && key_attends(a, b, k.tok_first + j);
      kf_next = ok ? kf[k.tok_first + j] : 0.0f;
      ok_next = ok ? 1.0f : 0.0f;
    }
  };
  auto store_factors = [&](int buf) {
    if (threadIdx.x < KROWS) {
      kfs[buf * KROWS + threadIdx.x] = kf_next;
      oks[buf * KROWS + threadIdx.x] = ok_next;
    }
  };
  // TMA staging (WindowMaps): buffer j's barrier completes its n-th fill with parity n & 1.
#if TA_WGMMA_DEVICE
  __shared__ __align__(8) uint64_t kv_bars[2];
  const bool tma = WG && maps.on != 0;
  if (tma) {
    if (threadIdx.x == 0) {
      mbar_init(smem_u32(&kv_bars[0]), 1);
      mbar_init(smem_u32(&kv_bars[1]), 1);
      mbar_init_fence();
    }
    __syncthreads();
  }
#endif
  auto stage = [&](const StageKeys& k, int buf) {
#if TA_WGMMA_DEVICE
    if (tma) {
      if (threadIdx.x == 0) {
        const uint32_t bar = smem_u32(&kv_bars[buf]), kdst = smem_u32(bufs + buf * L::BUF), vdst = kdst + 2 * L::KV;
        mbar_expect_tx(bar, 2 * L::BLOCKS * KROWS * 128);
        int ck[3], cv[3];
        tma_token_coords(maps.order & 63u, k.tok_first - k.row_first, h, b, ck);
        tma_token_coords((maps.order >> 8) & 63u, k.tok_first - k.row_first, h, b, cv);
#pragma unroll
        for (int blk = 0; blk < L::BLOCKS; ++blk) {
          tensor_copy_4d(kdst + blk * KROWS * 128, &maps.k, static_cast<int>(s * ds) + 64 * blk, ck[0], ck[1], ck[2],
                         bar);
          tensor_copy_4d(vdst + blk * VROWS * 128, &maps.v, static_cast<int>(s * dvs) + 64 * blk, cv[0], cv[1], cv[2],
                         bar);
        }
      }
      fetch_factors(k);
      return;
    }
#endif
    // Masked keys' values are zeros too: their weight is 0, and 0 * NaN would not be.
    stage_kv16<D>(a, kbase, vbase, ds, dvs, b, k, bufs + buf * L::BUF);
    fetch_factors(k);
  };
  // Stage st's keys and values have landed in buffer st & 1.
  auto wait_staged = [&](int64_t st) {
    win_cp_async_wait_all();
#if TA_WGMMA_DEVICE
    if (tma) mbar_wait(smem_u32(&kv_bars[st & 1]), static_cast<uint32_t>(st >> 1) & 1u);
#endif
  };

  // Prologue: the query tile (buffer row 16 w + l: warp w's query l) into buffer 1,
  // stage 0 into buffer 0, buffer 0's value pad rows (never staged) zeroed, 1/k!.
  {
    uint16_t* qdst = bufs + L::BUF;
    const auto* src = static_cast<const uint16_t*>(a.q.data);
    constexpr int V = D / 8;
    for (int e = threadIdx.x; e < kWindowTileQueries * (a.vec_q ? V : D); e += kWindowThreads) {
      const int per = a.vec_q ? V : D;
      const int r = e / per, c = (e % per) * (a.vec_q ? 8 : 1);
      const WarpRows qr = warp_rows(tile, r / 16);
      const int lc = qr.lc0 + r % 16;
      const bool ok = qr.active && lc < tile.cols && c < ds;
      const int64_t tok = tile.q0 + qr.wy * plan.W + lc;
      if (a.vec_q) {
        win_cp_async16(qdst + r * ST + c, ok ? src + qbase + tok * a.q.s2 + c : src, ok ? 16 : 0);
      } else {
        qdst[r * ST + c] = ok ? src[qbase + tok * a.q.s2 + c * a.q.s3] : uint16_t{0};
      }
    }
  }
  // Every thread needs each stage's keys twice (to stage it, then to compute on it): with
  // at most kWindowCachedStages stages (every Flux tile, every text split) the 64- and
  // 128-dim kernels work them out once per block, one thread per stage, instead of in each
  // thread per stage (ncu at 997deaa: that arithmetic was ~8% of the instructions).
  __shared__ StageKeys stage_cache[kWindowCachedStages];
  const bool cached = window_lazy(D) && plan.stages <= kWindowCachedStages;  // not in the 32-dim kernel: spills
  auto walk = [&](int64_t st) { return window_lazy(D) ? window_stage_order(plan, tile, st) : st; };
  auto keys_of = [&](int64_t st) { return cached ? stage_cache[st] : stage_keys(plan, walk(st)); };
  if (cached) {
    for (int64_t st = threadIdx.x; st < plan.stages; st += kWindowThreads) stage_cache[st] = stage_keys(plan, walk(st));
  }
  if (plan.stages > 0) stage(stage_keys(plan, walk(0)), 0);
  win_cp_async_commit();
  // Value rows KROWS .. KROWS + 7 of a buffer (never staged) to zeros: buffer 0's now,
  // buffer 1's once the query tile (which may cover them) is in registers.
  auto zero_pad_rows = [&](int buf) {
    for (int e = threadIdx.x; e < L::BLOCKS * kWindowPadRows * 64; e += kWindowThreads) {
      const int blk = e / (kWindowPadRows * 64), at = e % (kWindowPadRows * 64);
      bufs[buf * L::BUF + L::KV + blk * VROWS * 64 + KROWS * 64 + at] = 0;
    }
  };
  zero_pad_rows(0);
  if (threadIdx.x < 16) {
    float f = 1.0f;
    for (int k = 2; k <= static_cast<int>(threadIdx.x); ++k) f *= static_cast<float>(k);
    inv_fact[threadIdx.x] = 1.0f / f;
  }
  if (plan.stages > 0) {
    wait_staged(0);
  } else {
    win_cp_async_wait_all();
  }
  store_factors(0);
  window_publish_fence<WG>();
  __syncthreads();
  uint32_t qa[KS][4];
  {
    const uint16_t* r1 = bufs + L::BUF + (warp * 16 + gid) * ST + 2 * tig;
    const uint16_t* r2 = r1 + 8 * ST;
#pragma unroll
    for (int k = 0; k < KS; ++k) {
      qa[k][0] = win_lds32(r1 + k * 16);
      qa[k][1] = win_lds32(r2 + k * 16);
      qa[k][2] = win_lds32(r1 + k * 16 + 8);
      qa[k][3] = win_lds32(r2 + k * 16 + 8);
    }
  }
  window_publish_fence<WG>();  // the query tile's reads before stage 1's copies into buffer 1
  __syncthreads();             // buffer 1 is free for stage 1
  zero_pad_rows(1);  // published by the barrier that ends stage 0, before stage 1 reads it

  // This thread's two query rows: tile columns lc and lc + 8 of the warp's row.
  const int lc1 = wr.lc0 + gid;
  const bool has_row[2] = {wr.active && lc1 < tile.cols, wr.active && lc1 + 8 < tile.cols};
  const int64_t q1 = tile.q0 + wr.wy * plan.W + lc1;
  const int64_t qi[2] = {q1, q1 + 8};
  const float* qf = a.qfac + unit_local * g.Nq;
  WindowRows rs;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    rs.qf[i] = has_row[i] ? qf[qi[i]] : 0.0f;
    rs.m[i] = rs.mx[i] = rs.ml[i] = rs.l[i] = 0.0f;
    rs.em[i] = ex2_approx(-0.0f);
  }
  float acc[DT][4];
#pragma unroll
  for (int n = 0; n < DT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  const int nw_window = window_stage_ntiles(w.radius);
  const auto two_r = static_cast<unsigned>(2 * w.radius);

  for (int64_t st = 0; st < plan.stages; ++st) {
    const int cur = static_cast<int>(st & 1);
    const bool more = st + 1 < plan.stages;
    if (more) stage(keys_of(st + 1), cur ^ 1);  // buffer cur^1 was released by the last barrier
    win_cp_async_commit();

    const StageKeys k = keys_of(st);
    const uint16_t* ks = bufs + cur * L::BUF;
    const uint16_t* vs = ks + L::KV;
    const float* kfc = kfs + cur * KROWS;
    const float* okc = oks + cur * KROWS;
    const bool need_ok = !taylor && (a.keep != nullptr || k.n < kWindowTextKeys);
    bool on_wgmma = false;
#if TA_WGMMA_DEVICE
    if constexpr (WG) {
      if (!k.window) {  // block-uniform: every warp joins its warpgroup's wgmmas
        window_text_stage_wg<T, D>(ks, vs, kfc, okc, inv_fact, qa, acc, rs, need_ok, taylor, w.P, lane);
        on_wgmma = true;
      }
    }
#endif
    const int nt0 = on_wgmma ? -1 : warp_first_ntile(w, plan, k, wr, k.window ? nw_window : kWindowTextKeys / 8);
    if (nt0 >= 0) {  // warp-uniform
      const int colbase = static_cast<int>(k.pc0 + nt0 * 8 - wr.lc0) + 2 * tig - gid;
      // In sub-stages of at most 4 n-tiles (fewer live scores; each has its own
      // stabiliser update, which online softmax allows in any order).
      if (!k.window) {
#pragma unroll 1
        for (int sub = 0; sub < kWindowTextKeys / 32; ++sub) {
          window_stage<T, D, 4, false>(ks, vs, kfc, okc, inv_fact, qa, acc, rs, 4 * sub, 0, two_r, need_ok, taylor,
                                       w.P, lane);
        }
      } else {
#pragma unroll 1
        for (int sub = 0; sub < nw_window / 3; ++sub) {
          window_stage<T, D, 3, true>(ks, vs, kfc, okc, inv_fact, qa, acc, rs, nt0 + 3 * sub, colbase + 24 * sub,
                                      two_r, false, true, w.P, lane);
        }
      }
    }
    if (more) {
      wait_staged(st + 1);
      store_factors(cur ^ 1);
    }
    window_publish_fence<WG>();  // with TMA staging: this stage's reads before the next copies into buffer cur
    __syncthreads();
  }

  window_close_rows<D>(rs, acc);

  if (tile.grid < 0 && w.splits > 1) {
    window_store_partials<D>(w, rs, acc, has_row, qi, unit_local, split, dvs, tig);
    return;
  }

  // Finish the rows: window.cuh's formula, guards and statistics.
  RowStats stats;
  window_finish_rows<T, D>(a, rs, acc, has_row, qi, taylor, unit_local, b, h, s, tig, stats);
  stats.flush(a);
}

// Merges the key ranges of text rows exact over every key (window_mma with splits > 1)
// and finishes those rows: one warp per (unit, text row), lane s holding range s.
__global__ void __launch_bounds__(256) window_merge(PassArgs a, WindowArgs w) {
  constexpr int kCols = (kWindowMmaMaxDim + 31) / 32;
  const int lane = threadIdx.x % 32;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (item >= w.units * w.text) return;  // whole warps
  const int64_t unit_local = item / w.text, qi = item % w.text;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int dvs = a.g.dvs, stride = dvs + 2;
  const float* part = w.partials + item * w.splits * stride;
  const int live = window_live_splits(w, a.g.Nk);  // empty ranges were never written
  const bool mine = lane < live;
  const float m = mine ? part[lane * stride] : 0.0f;
  float M = m;
#pragma unroll
  for (int o = 16; o > 0; o /= 2) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
  const float scale = mine ? ex2_approx((m - M) * kLog2e) : 0.0f;
  float den = mine ? part[lane * stride + 1] * scale : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o /= 2) den += __shfl_xor_sync(0xffffffffu, den, o);
  float acc[kCols] = {};
  for (int sp = 0; sp < live; ++sp) {
    const float f = __shfl_sync(0xffffffffu, scale, sp);
#pragma unroll
    for (int i = 0; i < kCols; ++i) {
      const int c = lane + 32 * i;
      if (c < dvs) acc[i] = fmaf(f, part[sp * stride + 2 + c], acc[i]);
    }
  }
  RowStats stats;
  if (lane == 0) {
    den = stats.account(a, den);
  } else if (den <= a.eps && isfinite(den)) {
    den = a.eps;
  }
  const int64_t obase = b * a.out.s0 + h * a.out.s1 + qi * a.out.s2 + s * static_cast<int64_t>(dvs) * a.out.s3;
  const float rden = 1.0f / den;
#pragma unroll
  for (int i = 0; i < kCols; ++i) {
    const int c = lane + 32 * i;
    if (c < dvs) stats.flags |= finish_element_rcp(a, obase + c * a.out.s3, false, 1.0f, 0.0f, acc[i], den, rden);
  }
  stats.flush(a);
}

}  // namespace ta::cuda
