// fp32 SIMT kernels of the local-exact hybrid: the window kernel for f32 inputs,
// force_fp32 and slices the tensor-core kernel does not cover (the plain reference the
// tensor-core kernel is tested against), and the early probe's hybrid denominators.
#pragma once

#include "cuda/kernels/window.cuh"
#include "cuda/limits.h"

namespace ta::cuda {

// Queries one warp finishes one after the other: its statistics are flushed once for
// all of them, which keeps the atomics on the call's totals at one set per 4 rows.
constexpr int kWindowSimtQueriesPerWarp = 4;
// Value columns per lane (lanes stride over the slice's value columns).
constexpr int kWindowSimtCols = static_cast<int>((kMaxValueSliceDim + 31) / 32);

// Shared memory of one warp: the query vector and a chunk of 32 key vectors (rows padded
// to ds + 1 floats, so lane j reading row j hits distinct banks).
__host__ __device__ inline int64_t window_simt_warp_floats(int ds) { return ds + 32 * (ds + 1); }

// One warp per query at a time. E(i) is walked in chunks of 32 keys: the chunk's scaled
// key vectors are staged (lanes over coordinates, coalesced), lane j scores key j, the
// warp updates the stabiliser, then accumulates the chunk's value rows with lanes over
// columns.
__global__ void __launch_bounds__(128) window_simt(PassArgs a, WindowArgs w) {
  extern __shared__ float smem[];
  const Geometry& g = a.g;
  const int ds = g.ds, dvs = g.dvs, kst = ds + 1;
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* qv = smem + warp * window_simt_warp_floats(ds);  // [ds]
  float* kb = qv + ds;                                    // [32][ds + 1]
  const int64_t unit_local = blockIdx.y;
  int64_t b, h, s;
  unit_coords(g, g.unit0 + unit_local, &b, &h, &s);
  const int64_t qbase = b * a.q.s0 + h * a.q.s1 + s * static_cast<int64_t>(ds) * a.q.s3;
  const int64_t kbase = b * a.k.s0 + h * a.k.s1 + s * static_cast<int64_t>(ds) * a.k.s3;
  const int64_t vbase = b * a.v.s0 + h * a.v.s1 + s * static_cast<int64_t>(dvs) * a.v.s3;
  const int64_t obase = b * a.out.s0 + h * a.out.s1 + s * static_cast<int64_t>(dvs) * a.out.s3;
  const float* qf = a.qfac + unit_local * g.Nq;
  const float* kf = a.kfac + unit_local * g.Nk;
  RowStats st;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * warps + warp) * kWindowSimtQueriesPerWarp;
  for (int qq = 0; qq < kWindowSimtQueriesPerWarp; ++qq) {
    const int64_t qi = first + qq;
    if (qi >= g.Nq) break;
    __syncwarp();  // the previous row is done with qv
    for (int c = lane; c < ds; c += 32) qv[c] = load_f(a.q.data, qbase + qi * a.q.s2 + c * a.q.s3, a.q.dtype) * qf[qi];
    const ExactSet es = exact_set(w, qi, g.Nk);
    const bool taylor = !row_all_exact(w, qi);
    float m = 0.0f, l = 0.0f, acc[kWindowSimtCols] = {};
    for (int64_t k0 = 0; k0 < es.count; k0 += 32) {
      const int n = static_cast<int>(min64(32, es.count - k0));
      const int64_t tok = lane < n ? es.key(k0 + lane) : 0;  // lane j's key, shared by shuffles
      __syncwarp();  // qv written, the previous chunk's kb read
      for (int j = 0; j < n; ++j) {
        const int64_t tj = __shfl_sync(0xffffffffu, tok, j);
        const float f = kf[tj];
        for (int c = lane; c < ds; c += 32) {
          kb[j * kst + c] = load_f(a.k.data, kbase + tj * a.k.s2 + c * a.k.s3, a.k.dtype) * f;
        }
      }
      __syncwarp();
      const bool valid = lane < n && key_attends(a, b, tok);  // masked keys are not in E(i)
      float sc = 0.0f;
      if (valid) {
        for (int c = 0; c < ds; ++c) sc = fmaf(qv[c], kb[lane * kst + c], sc);
      }
      float cmax = valid ? sc : 0.0f;  // the stabiliser never drops below 0
#pragma unroll
      for (int o = 16; o > 0; o /= 2) cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, o));
      const float m_new = fmaxf(m, cmax);
      const float rescale = expf(m - m_new), em = expf(-m_new);
      float wgt = 0.0f;
      if (valid) wgt = expf(sc - m_new) - (taylor ? em * taylor_poly(w.P, sc) : 0.0f);
      float wsum = wgt;
#pragma unroll
      for (int o = 16; o > 0; o /= 2) wsum += __shfl_xor_sync(0xffffffffu, wsum, o);
      l = fmaf(l, rescale, wsum);
#pragma unroll
      for (int i = 0; i < kWindowSimtCols; ++i) acc[i] *= rescale;
      for (int j = 0; j < n; ++j) {
        const float wj = __shfl_sync(0xffffffffu, wgt, j);
        const int64_t tj = __shfl_sync(0xffffffffu, tok, j);
        if (wj == 0.0f) continue;  // masked keys (whose values may be anything) add nothing
#pragma unroll
        for (int i = 0; i < kWindowSimtCols; ++i) {
          const int c = lane + 32 * i;
          if (c < dvs) acc[i] = fmaf(wj, load_f(a.v.data, vbase + tj * a.v.s2 + c * a.v.s3, a.v.dtype), acc[i]);
        }
      }
      m = m_new;
    }
    const float den_all = taylor ? a.wden[unit_local * g.Nq + qi] : 0.0f;
    const float em = expf(-m);
    float den = taylor ? fmaf(em, den_all, l) : l;
    if (lane == 0) {
      den = st.account(a, den);
    } else if (den <= a.eps && isfinite(den)) {
      den = a.eps;
    }
    const float carrier = carrier_denominator(den_all);
#pragma unroll
    for (int i = 0; i < kWindowSimtCols; ++i) {
      const int c = lane + 32 * i;
      if (c < dvs) st.flags |= finish_element(a, obase + qi * a.out.s2 + c * a.out.s3, taylor, carrier, em, acc[i], den);
    }
  }
  st.flush(a);
}

// Early probe with the hybrid: turns the sampled rows' Taylor denominators (probe_den,
// from probe_denominators) into the hybrid's and checks those, as the full pass will.
// One block of 32 warps per (unit, sampled row). A warp scores kProbeWindowKeys keys of E(i)
// at a time (a text row may span every key), lanes over the coordinates (coalesced loads,
// a shuffle sum per key), and keeps its own stabiliser; the block merges the warps. (The
// first version had each thread walk whole key rows, 32 rows per load instruction, with
// 4 warps: ~3 ms for one sampled text row at N = 65,792.)
constexpr int kProbeWindowThreads = 1024;
constexpr int kProbeWindowKeys = 4;  // keys in flight per warp
__global__ void __launch_bounds__(kProbeWindowThreads) probe_window(PassArgs a, WindowArgs w,
                                                                    const int64_t* __restrict__ rows, int32_t nrows) {
  constexpr int kWarps = kProbeWindowThreads / 32;
  extern __shared__ float qv[];  // [ds]
  __shared__ float red_m[kWarps], red_l[kWarps], red_t[kWarps];
  const Geometry& g = a.g;
  const int ds = g.ds;
  const int64_t item = blockIdx.x;
  const int64_t unit_local = item / nrows;
  const int64_t qi = rows[item % nrows];
  int64_t b, h, s;
  unit_coords(g, g.unit0 + unit_local, &b, &h, &s);
  const int64_t qbase = b * a.q.s0 + h * a.q.s1 + qi * a.q.s2 + s * static_cast<int64_t>(ds) * a.q.s3;
  const int64_t kbase = b * a.k.s0 + h * a.k.s1 + s * static_cast<int64_t>(ds) * a.k.s3;
  const float qf = a.qfac[unit_local * g.Nq + qi];
  const float* kf = a.kfac + unit_local * g.Nk;
  for (int c = threadIdx.x; c < ds; c += blockDim.x) qv[c] = load_f(a.q.data, qbase + c * a.q.s3, a.q.dtype) * qf;
  __syncthreads();
  const ExactSet es = exact_set(w, qi, g.Nk);
  const bool taylor = !row_all_exact(w, qi);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Stabiliser, sum of e^{s - m}, sum of T_P(s): the same in every lane of a warp.
  float m = 0.0f, l = 0.0f, t = 0.0f;
  for (int64_t k0 = static_cast<int64_t>(warp) * kProbeWindowKeys; k0 < es.count;
       k0 += static_cast<int64_t>(kWarps) * kProbeWindowKeys) {
    float part[kProbeWindowKeys];
    int64_t tok[kProbeWindowKeys];
    bool use[kProbeWindowKeys];
#pragma unroll
    for (int j = 0; j < kProbeWindowKeys; ++j) {
      use[j] = k0 + j < es.count;
      tok[j] = use[j] ? es.key(k0 + j) : 0;
      use[j] = use[j] && key_attends(a, b, tok[j]);
      part[j] = 0.0f;
    }
    for (int c = lane; c < ds; c += 32) {
      const float qc = qv[c];
#pragma unroll
      for (int j = 0; j < kProbeWindowKeys; ++j) {
        if (use[j]) part[j] = fmaf(qc, load_f(a.k.data, kbase + tok[j] * a.k.s2 + c * a.k.s3, a.k.dtype), part[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < kProbeWindowKeys; ++j) {
#pragma unroll
      for (int o = 16; o > 0; o /= 2) part[j] += __shfl_xor_sync(0xffffffffu, part[j], o);
    }
#pragma unroll
    for (int j = 0; j < kProbeWindowKeys; ++j) {
      if (!use[j]) continue;  // warp-uniform
      const float sc = part[j] * kf[tok[j]];
      if (sc > m) {
        l = fmaf(l, expf(m - sc), 1.0f);
        m = sc;
      } else {
        l += expf(sc - m);  // a NaN score lands here and makes the denominator NaN
      }
      if (taylor) t += taylor_poly(w.P, sc);
    }
  }
  if (lane == 0) {
    red_m[warp] = m;
    red_l[warp] = l;
    red_t[warp] = t;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  float M = 0.0f;
  for (int i = 0; i < kWarps; ++i) M = fmaxf(M, red_m[i]);
  float L = 0.0f, T = 0.0f;
  for (int i = 0; i < kWarps; ++i) {
    L += red_l[i] * expf(red_m[i] - M);
    T += red_t[i];
  }
  const float den = taylor ? fmaf(expf(-M), a.probe_den[item] - T, L) : L;
  unsigned int flags = 0;
  if (!isfinite(den)) flags |= kFlagDenInvalid;
  else if (den <= a.eps && a.fallback_on_negative) flags |= kFlagDenTooSmall;
  if (flags) atomicOr(&a.stats->probe_flags, flags);
  if (isfinite(den)) atomicMin(&a.stats->probe_min_bits, ordered_bits(den));
}

}  // namespace ta::cuda
