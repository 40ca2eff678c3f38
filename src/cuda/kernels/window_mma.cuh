// Tensor-core window kernel of the local-exact hybrid (f16 / bf16 inputs): a flash-
// attention pass restricted to each query's exact set. A block takes one WindowTile
// (up to 64 consecutive queries sharing a candidate key list: text queries, or a run of
// one grid row) of one unit; 4 warps own 16 queries each. The candidates are staged in
// chunks of 32 keys, scores q.k come from mma.m16n8k16 on the raw 16-bit inputs (fp32
// accumulation; the per-token scale factors multiply the fp32 scores), keys outside a
// query's exact set get weight 0, and P.V runs on tensor cores too (P rounded to the
// input type, as flash attention does). A warp skips the chunks of window rows whose
// columns are out of reach of its 16 queries.
#pragma once

#include <climits>

#include "cuda/kernels/window.cuh"

namespace ta::cuda {

constexpr int kWindowWarps = kWindowTileQueries / 16;
constexpr int kWindowKeyChunk = 32;
// Largest slice dim (q/k and v) the kernel is instantiated for; wider slices take the
// SIMT kernel.
constexpr int kWindowMmaMaxDim = 128;

// Column tags of a staged key: a text key (exact for every query of the tile), a masked
// or padding key (exact for none), else the key's grid column.
constexpr int64_t kAllColumns = LLONG_MAX;
constexpr int64_t kNoColumn = LLONG_MIN;

// Copies rows [tok0, tok0 + n) of a 16-bit operand (`width` elements of the slice that
// starts at element offset base) into dst[row * ST + c] as raw bits, zero-filling rows
// n..rows-1, columns width..D-1 and the rows for which skip(row) holds.
template <int D, int ST, class Skip>
__device__ __forceinline__ void stage_rows16(const Strided& x, int64_t base, int64_t tok0, int n, int rows, int width,
                                             int vec, uint16_t* dst, Skip&& skip) {
  const auto* src = static_cast<const uint16_t*>(x.data);
  if (vec) {  // contiguous rows, 8-element aligned, width a multiple of 8
    constexpr int V = D / 8;
    for (int e = threadIdx.x; e < rows * V; e += blockDim.x) {
      const int r = e / V, c0 = (e % V) * 8;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (r < n && c0 < width && !skip(r)) val = *reinterpret_cast<const uint4*>(src + base + (tok0 + r) * x.s2 + c0);
      *reinterpret_cast<uint4*>(dst + r * ST + c0) = val;
    }
    return;
  }
  for (int e = threadIdx.x; e < rows * D; e += blockDim.x) {
    const int r = e / D, c = e % D;
    uint16_t val = 0;
    if (r < n && c < width && !skip(r)) val = src[base + (tok0 + r) * x.s2 + c * x.s3];
    dst[r * ST + c] = val;
  }
}

__device__ __forceinline__ uint32_t lds32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// T: __half or __nv_bfloat16 (the inputs' type); D: the slice dims ds and dvs padded to
// a multiple of 16 (32, 64 or 128).
template <class T, int D>
__global__ void __launch_bounds__(kWindowWarps * 32) window_mma(PassArgs a, WindowArgs w) {
  constexpr int BK = kWindowKeyChunk, ST = D + 8, NT = BK / 8, DT = D / 8, KS = D / 16;
  static_assert(kWindowTileQueries == 2 * BK, "the query tile is staged in the key and value buffers");
  // Rows padded by 8 elements: the 32-bit B-fragment loads and ldmatrix rows hit distinct banks.
  __shared__ __align__(16) uint16_t kv[2 * BK * ST];
  __shared__ int64_t kcol[BK];
  __shared__ float kfs[BK];
  uint16_t* ks = kv;            // [BK][ST] key chunk
  uint16_t* vs = kv + BK * ST;  // [BK][ST] value chunk
  const Geometry& g = a.g;
  const int ds = g.ds, dvs = g.dvs;
  const WindowTile tile = w.tiles[blockIdx.x];
  const int64_t unit_local = blockIdx.y;
  int64_t b, h, s;
  unit_coords(g, g.unit0 + unit_local, &b, &h, &s);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;

  // The tile's raw query vectors as A fragments (their scale factors multiply the scores).
  const int64_t qbase = b * a.q.s0 + h * a.q.s1 + s * static_cast<int64_t>(ds) * a.q.s3;
  stage_rows16<D, ST>(a.q, qbase, tile.q0, tile.count, kWindowTileQueries, ds, a.vec_q, kv, [](int) { return false; });
  __syncthreads();
  uint32_t qa[KS][4];
  {
    const uint16_t* r1 = kv + (warp * 16 + gid) * ST + 2 * tig;
    const uint16_t* r2 = r1 + 8 * ST;
#pragma unroll
    for (int k = 0; k < KS; ++k) {
      qa[k][0] = lds32(r1 + k * 16);
      qa[k][1] = lds32(r2 + k * 16);
      qa[k][2] = lds32(r1 + k * 16 + 8);
      qa[k][3] = lds32(r2 + k * 16 + 8);
    }
  }

  // This thread's two query rows (gid and gid + 8 of the warp's 16).
  const int lr1 = warp * 16 + gid, lr2 = lr1 + 8;
  const bool row1 = lr1 < tile.count, row2 = lr2 < tile.count;
  const int64_t q1 = tile.q0 + lr1, q2 = tile.q0 + lr2;
  const float* qf = a.qfac + unit_local * g.Nq;
  const float qf1 = row1 ? qf[q1] : 0.0f, qf2 = row2 ? qf[q2] : 0.0f;
  const bool taylor = tile.grid >= 0 || w.text_queries == 0;
  // Window columns of each row: |c - x| <= radius (text tiles only see kAllColumns keys).
  const int64_t lo1 = tile.x0 + lr1 - w.radius, hi1 = tile.x0 + lr1 + w.radius;
  const int64_t lo2 = lo1 + 8, hi2 = hi1 + 8;
  // Columns any of the warp's queries can reach.
  const bool warp_has_rows = warp * 16 < tile.count;
  const int64_t reach_lo = tile.x0 + warp * 16 - w.radius;
  const int64_t reach_hi = tile.x0 + min(tile.count, warp * 16 + 16) - 1 + w.radius;

  const int64_t kbase = b * a.k.s0 + h * a.k.s1 + s * static_cast<int64_t>(ds) * a.k.s3;
  const int64_t vbase = b * a.v.s0 + h * a.v.s1 + s * static_cast<int64_t>(dvs) * a.v.s3;
  const float* kf = a.kfac + unit_local * g.Nk;
  float m1 = 0.0f, m2 = 0.0f, l1 = 0.0f, l2 = 0.0f;
  float acc[DT][4];
#pragma unroll
  for (int n = 0; n < DT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

  // The candidates in chunks of BK keys: the text keys, then each window row's columns.
  // One loop with one body (no lambda called from two places), so acc stays in registers.
  const TileKeys tk = tile_keys(w, tile, g.Nk);
  const int64_t text_chunks = (tk.text_len + BK - 1) / BK, row_chunks = (tk.cols + BK - 1) / BK;
  const int64_t chunks = text_chunks + tk.rows * row_chunks;
  for (int64_t ci = 0; ci < chunks; ++ci) {
    int64_t tok0, col0;  // first key, its grid column (kAllColumns for text keys)
    int n;
    if (ci < text_chunks) {
      tok0 = ci * BK;
      n = static_cast<int>(min64(BK, tk.text_len - tok0));
      col0 = kAllColumns;
    } else {
      int64_t r = 0, c = 0;
      divmod(ci - text_chunks, row_chunks, &r, &c);
      c *= BK;
      tok0 = tk.row_tok0 + r * tk.W + c;
      n = static_cast<int>(min64(BK, tk.cols - c));
      col0 = tk.col_lo + c;
    }
    __syncthreads();  // every warp is done with the previous chunk (or the query tile)
    stage_rows16<D, ST>(a.k, kbase, tok0, n, BK, ds, a.vec_k, ks, [](int) { return false; });
    // Masked keys' values are zeroed: their weight is 0, and 0 * NaN would not be.
    stage_rows16<D, ST>(a.v, vbase, tok0, n, BK, dvs, a.vec_v, vs,
                        [&](int r) { return !key_attends(a, b, tok0 + r); });
    for (int j = threadIdx.x; j < BK; j += blockDim.x) {
      const bool ok = j < n && key_attends(a, b, tok0 + j);
      kcol[j] = !ok ? kNoColumn : (col0 == kAllColumns ? kAllColumns : col0 + j);
      kfs[j] = ok ? kf[tok0 + j] : 0.0f;
    }
    __syncthreads();
    if (!warp_has_rows) continue;
    if (col0 != kAllColumns && (col0 + n - 1 < reach_lo || col0 > reach_hi)) continue;
    float sc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int k = 0; k < KS; ++k) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint16_t* kp = ks + (nt * 8 + gid) * ST + k * 16 + 2 * tig;
        Mma16<T>::run(sc[nt], qa[k], lds32(kp), lds32(kp + 8));
      }
    }
    // Scores, exactness (bit nt * 4 + e) and the rows' new stabilisers.
    unsigned int exact = 0;
    float c1 = m1, c2 = m2;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = nt * 8 + 2 * tig + (e & 1);
        const bool top = e < 2;
        const int64_t col = kcol[j];
        const bool in_set = (top ? row1 : row2) &&
                            (col == kAllColumns || (col >= (top ? lo1 : lo2) && col <= (top ? hi1 : hi2)));
        const float sv = sc[nt][e] * (top ? qf1 : qf2) * kfs[j];
        sc[nt][e] = sv;
        if (in_set) {
          exact |= 1u << (nt * 4 + e);
          if (top) c1 = fmaxf(c1, sv); else c2 = fmaxf(c2, sv);
        }
      }
    }
    // The four threads of a quad hold the same two rows.
#pragma unroll
    for (int o = 1; o <= 2; o *= 2) {
      c1 = fmaxf(c1, __shfl_xor_sync(0xffffffffu, c1, o));
      c2 = fmaxf(c2, __shfl_xor_sync(0xffffffffu, c2, o));
    }
    const float rescale1 = __expf(m1 - c1), rescale2 = __expf(m2 - c2);
    const float em1 = __expf(-c1), em2 = __expf(-c2);
    m1 = c1;
    m2 = c2;
    l1 *= rescale1;
    l2 *= rescale2;
#pragma unroll
    for (int n = 0; n < DT; ++n) {
      acc[n][0] *= rescale1;
      acc[n][1] *= rescale1;
      acc[n][2] *= rescale2;
      acc[n][3] *= rescale2;
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool top = e < 2;
        float wgt = 0.0f;
        if (exact & (1u << (nt * 4 + e))) {
          const float sv = sc[nt][e];
          wgt = __expf(sv - (top ? m1 : m2));
          if (taylor) wgt -= (top ? em1 : em2) * taylor_poly(w.P, sv);
        }
        sc[nt][e] = wgt;
        if (top) l1 += wgt; else l2 += wgt;
      }
    }
    // P.V: the score accumulators of key tiles 2kk and 2kk+1 are the A fragment of k-step kk.
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = Mma16<T>::pack(sc[2 * kk][0], sc[2 * kk][1]);
      pa[1] = Mma16<T>::pack(sc[2 * kk][2], sc[2 * kk][3]);
      pa[2] = Mma16<T>::pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
      pa[3] = Mma16<T>::pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
      // Lanes 8m..8m+7 address matrix m: keys +0..7 / +8..15, value columns +0..7 / +8..15.
      const uint16_t* vrow = vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ST + (lane >> 4) * 8;
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bv[4];
        ldmatrix_x4_trans(bv, vrow + np * 16);
        Mma16<T>::run(acc[2 * np], pa, bv[0], bv[1]);
        Mma16<T>::run(acc[2 * np + 1], pa, bv[2], bv[3]);
      }
    }
  }

  // Finish the rows: quad sums of l, then window.cuh's formula, guards and statistics.
#pragma unroll
  for (int o = 1; o <= 2; o *= 2) {
    l1 += __shfl_xor_sync(0xffffffffu, l1, o);
    l2 += __shfl_xor_sync(0xffffffffu, l2, o);
  }
  RowStats st;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    if (!(half ? row2 : row1)) continue;
    const int64_t qi = half ? q2 : q1;
    const float den_all = taylor ? a.wden[unit_local * g.Nq + qi] : 0.0f;
    const float em = expf(-(half ? m2 : m1)), l = half ? l2 : l1;
    float den = taylor ? fmaf(em, den_all, l) : l;
    if (tig == 0) {
      den = st.account(a, den);
    } else if (den <= a.eps && isfinite(den)) {
      den = a.eps;
    }
    const float carrier = carrier_denominator(den_all);
    const int64_t obase = b * a.out.s0 + h * a.out.s1 + qi * a.out.s2 + s * static_cast<int64_t>(dvs) * a.out.s3;
#pragma unroll
    for (int n = 0; n < DT; ++n) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int col = n * 8 + 2 * tig + j;
        if (col < dvs) st.flags |= finish_element(a, obase + col * a.out.s3, taylor, carrier, em, acc[n][half * 2 + j], den);
      }
    }
  }
  st.flush(a);
}

}  // namespace ta::cuda
