// Query pass: o_i = phi(q_i) S[:, :dv] / phi(q_i) z for a tile of queries, features of
// the queries generated on the fly, denominators and their statistics reduced in the
// same pass, the output written once in its dtype. With the local-exact hybrid the pass
// only stores num / den and den (PassArgs::wden); kernels/window_*.cuh finish the rows.
#pragma once

#include "cuda/kernels/passes_common.cuh"

namespace ta::cuda {

constexpr int kStateChunk = 32;  // feature rows of S staged per step

// Writes one query row's outputs given its numerators (fetched by num(col)) and its
// denominator; returns the flags it raised.
template <class Num>
__device__ __forceinline__ unsigned int emit_row(const PassArgs& a, int64_t b, int64_t h, int64_t s, int64_t qi,
                                                 int col_begin, int col_step, int col_count, float den, Num&& num) {
  unsigned int flags = 0;
  const int64_t base = b * a.out.s0 + h * a.out.s1 + qi * a.out.s2 + s * static_cast<int64_t>(a.g.dvs) * a.out.s3;
#pragma unroll
  for (int k = 0; k < col_count; ++k) {
    const int col = col_begin + k * col_step;
    if (col >= a.g.dvs) continue;
    const float stored = store_f(a.out.data, base + col * a.out.s3, a.out.dtype, num(k) / den);
    if (!isfinite(stored)) flags |= kFlagNonFiniteOut;
  }
  return flags;
}

// Stages `count` query vectors from q0 on, scaled by their factors, into xq (fp32).
__device__ __forceinline__ void stage_queries(const PassArgs& a, int64_t unit_local, int64_t qbase, int64_t q0,
                                              int count, float* xq, int xst) {
  const int ds = a.g.ds;
  const float* qf = a.qfac + unit_local * a.g.Nq;
  if (a.vec_q) {
    const int per = vector_elems(a.q.dtype), vecs = ds / per;
    for (int e = threadIdx.x; e < count * vecs; e += blockDim.x) {
      const int i = e / vecs, c0 = (e % vecs) * per;
      const int64_t qi = q0 + i;
      float* dst = xq + i * xst + c0;
      if (qi < a.g.Nq) {
        const float f = qf[qi];
        load_vector(a.q.data, qbase + qi * a.q.s2 + c0, a.q.dtype, [&](int j, float x) { dst[j] = x * f; });
      } else {
        for (int j = 0; j < per; ++j) dst[j] = 0.0f;
      }
    }
    return;
  }
  for (int e = threadIdx.x; e < count * ds; e += blockDim.x) {
    const int i = e / ds, c = e % ds;
    const int64_t qi = q0 + i;
    xq[i * xst + c] = qi < a.g.Nq ? load_f(a.q.data, qbase + qi * a.q.s2 + c * a.q.s3, a.q.dtype) * qf[qi] : 0.0f;
  }
}

// Tensor-core path: WARPS warps x 16 queries, all NC columns per warp.
template <int NC, int WARPS, int DMAX>
__global__ void __launch_bounds__(WARPS * 32) query_pass_mma(PassArgs a) {
  constexpr int BQ = WARPS * 16, BR = kStateChunk, NT = NC / 8, SST = BR + 8;
  extern __shared__ float smem[];
  const int ds = a.g.ds, xst = ds + 1;
  float* xq = smem;                                                         // [BQ][ds+1]
  float* den_s = xq + BQ * xst;                                             // [BQ][2]
  uint8_t* ids_s = reinterpret_cast<uint8_t*>(den_s + 2 * BQ);              // [BR][16]
  __nv_bfloat16* st = reinterpret_cast<__nv_bfloat16*>(ids_s + BR * 16);    // [NC][BR+8]
  const int64_t unit_local = blockIdx.y;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * BQ;
  const int64_t qbase = b * a.q.s0 + h * a.q.s1 + s * static_cast<int64_t>(ds) * a.q.s3;
  stage_queries(a, unit_local, qbase, q0, BQ, xq, xst);
  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  const __nv_bfloat16* St_unit = a.St + unit_local * NC * a.Rpad;
  const int r1 = warp * 16 + gid, r2 = r1 + 8;  // this thread's query rows in the tile
  for (int64_t f0 = 0; f0 < a.g.R; f0 += BR) {
    for (int e = threadIdx.x; e < BR; e += blockDim.x) {
      uint4 v = make_uint4(0, 0, 0, 0);
      if (f0 + e < a.g.R) v = *reinterpret_cast<const uint4*>(a.ids + (f0 + e) * 16);
      *reinterpret_cast<uint4*>(ids_s + e * 16) = v;
    }
    // B operand chunk: BR features of each of the NC columns, 16-byte copies.
    for (int e = threadIdx.x; e < NC * (BR / 8); e += blockDim.x) {
      const int col = e / (BR / 8), part = e % (BR / 8);
      *reinterpret_cast<uint4*>(st + col * SST + part * 8) =
          *reinterpret_cast<const uint4*>(St_unit + col * a.Rpad + f0 + part * 8);
    }
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < BR; ks += 16) {
      const int fa = ks + 2 * tig;
      uint8_t i0[16], i1[16], i8[16], i9[16];
      *reinterpret_cast<uint4*>(i0) = *reinterpret_cast<const uint4*>(ids_s + fa * 16);
      *reinterpret_cast<uint4*>(i1) = *reinterpret_cast<const uint4*>(ids_s + (fa + 1) * 16);
      *reinterpret_cast<uint4*>(i8) = *reinterpret_cast<const uint4*>(ids_s + (fa + 8) * 16);
      *reinterpret_cast<uint4*>(i9) = *reinterpret_cast<const uint4*>(ids_s + (fa + 9) * 16);
      const float* x1 = xq + r1 * xst;
      const float* x2 = xq + r2 * xst;
      uint32_t af[4];
      af[0] = pack_bf16(feature_value<DMAX>(i0, x1, 1), feature_value<DMAX>(i1, x1, 1));
      af[1] = pack_bf16(feature_value<DMAX>(i0, x2, 1), feature_value<DMAX>(i1, x2, 1));
      af[2] = pack_bf16(feature_value<DMAX>(i8, x1, 1), feature_value<DMAX>(i9, x1, 1));
      af[3] = pack_bf16(feature_value<DMAX>(i8, x2, 1), feature_value<DMAX>(i9, x2, 1));
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const __nv_bfloat16* col = st + (n * 8 + gid) * SST + fa;
        mma_bf16_16816(acc[n], af, *reinterpret_cast<const uint32_t*>(col),
                       *reinterpret_cast<const uint32_t*>(col + 8));
      }
    }
    __syncthreads();
  }

  // Denominator columns (dvs, and dvs + 1 when z is split) go through shared memory to
  // every thread that holds a numerator of the same row.
  const int dvs = a.g.dvs;
  for (int e = threadIdx.x; e < 2 * BQ; e += blockDim.x) den_s[e] = 0.0f;
  __syncthreads();
#pragma unroll
  for (int n = 0; n < NT; ++n) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int col = n * 8 + 2 * tig + j;
      if (col == dvs || (a.denom_split && col == dvs + 1)) {
        den_s[r1 * 2 + (col - dvs)] = acc[n][j];
        den_s[r2 * 2 + (col - dvs)] = acc[n][2 + j];
      }
    }
  }
  __syncthreads();
  unsigned int flags = 0, count = 0, le = 0, nonfin = 0;
  float dmin = INFINITY, dmax = -INFINITY;
  double dsum = 0.0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = half ? r2 : r1;
    const int64_t qi = q0 + r;
    if (qi >= a.g.Nq) continue;
    float den = den_s[r * 2] + den_s[r * 2 + 1];
    const bool hybrid = a.wden != nullptr;
    if (hybrid) {
      // Guards, statistics and the output check belong to the window kernel's result.
      if (tig == 0) a.wden[unit_local * a.g.Nq + qi] = den;
      den = carrier_denominator(den);
    } else if (tig == 0) {
      den = account_denominator(a, den, &flags, &dmin, &dmax, &dsum, &count, &le, &nonfin);
    } else if (den <= a.eps && isfinite(den)) {
      den = a.eps;
    }
    unsigned int row_flags = 0;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      row_flags |= emit_row(a, b, h, s, qi, n * 8 + 2 * tig, 1, 2, den, [&](int k) { return acc[n][half * 2 + k]; });
    }
    if (!hybrid) flags |= row_flags;
  }
  flush_stats(a.stats, flags, dmin, dmax, dsum, count, le, nonfin);
}

// fp32 SIMT path: 32 queries per block of 256 threads, thread (query, column group).
template <int NC, int DMAX>
__global__ void __launch_bounds__(256) query_pass_simt(PassArgs a) {
  constexpr int BQ = 32, BR = kStateChunk, CPT = (NC + 7) / 8;
  extern __shared__ float smem[];
  const int ds = a.g.ds, xst = ds + 1;
  float* xq = smem;                 // [BQ][ds+1]
  float* phi = xq + BQ * xst;       // [BQ][BR]
  float* ss = phi + BQ * BR;        // [BR][NC]
  float* den_s = ss + BR * NC;      // [BQ]
  const int64_t unit_local = blockIdx.y;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int qi_local = threadIdx.x / 8, cg = threadIdx.x % 8;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * BQ;
  const int64_t qbase = b * a.q.s0 + h * a.q.s1 + s * static_cast<int64_t>(ds) * a.q.s3;
  stage_queries(a, unit_local, qbase, q0, BQ, xq, xst);
  float acc[CPT] = {};
  const float* S_unit = a.S + unit_local * a.g.R * NC;
  __syncthreads();
  for (int64_t f0 = 0; f0 < a.g.R; f0 += BR) {
    for (int e = threadIdx.x; e < BQ * BR; e += blockDim.x) {
      const int i = e / BR, rr = e % BR;
      uint8_t ids[16] = {};
      const bool valid = f0 + rr < a.g.R;
      if (valid) load_ids(a.ids, f0 + rr, ids);
      phi[i * BR + rr] = valid ? feature_value<DMAX>(ids, xq + i * xst, 1) : 0.0f;
    }
    stage_state<BR>(a, S_unit, f0, NC, false, [&](int col, int rr, float val) { ss[rr * NC + col] = val; });
    __syncthreads();
    for (int rr = 0; rr < BR; ++rr) {
      const float ph = phi[qi_local * BR + rr];
#pragma unroll
      for (int j = 0; j < CPT; ++j) {
        const int col = cg + 8 * j;
        if (col < NC) acc[j] += ph * ss[rr * NC + col];
      }
    }
    __syncthreads();
  }
  const int dvs = a.g.dvs;
#pragma unroll
  for (int j = 0; j < CPT; ++j) {
    if (cg + 8 * j == dvs) den_s[qi_local] = acc[j];
  }
  __syncthreads();
  unsigned int flags = 0, count = 0, le = 0, nonfin = 0;
  float dmin = INFINITY, dmax = -INFINITY;
  double dsum = 0.0;
  const int64_t qi = q0 + qi_local;
  if (qi < a.g.Nq) {
    float den = den_s[qi_local];
    const bool hybrid = a.wden != nullptr;
    if (hybrid) {
      // As in the tensor-core pass: the window kernel guards the final denominators.
      if (cg == 0) a.wden[unit_local * a.g.Nq + qi] = den;
      den = carrier_denominator(den);
    } else if (cg == 0) {
      den = account_denominator(a, den, &flags, &dmin, &dmax, &dsum, &count, &le, &nonfin);
    } else if (den <= a.eps && isfinite(den)) {
      den = a.eps;
    }
    const unsigned int row_flags = emit_row(a, b, h, s, qi, cg, 8, CPT, den, [&](int k) { return acc[k]; });
    if (!hybrid) flags |= row_flags;
  }
  flush_stats(a.stats, flags, dmin, dmax, dsum, count, le, nonfin);
}

}  // namespace ta::cuda
