// Pieces shared by the key and query passes of both paths: arguments, the staging
// of key/value chunks into shared memory, and the per-row epilogue.
#pragma once

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/features.cuh"

namespace ta::cuda {

struct PassArgs {
  Geometry g;
  Strided q, k, v;
  StridedOut out;
  const uint8_t* ids;      // [R][16] feature table
  const float* weight;     // [R]
  const float* qfac;       // [units_in_batch][Nq]
  const float* kfac;       // [units_in_batch][Nk]
  const uint8_t* keep;     // key mask [Bm][Nk] or NULL (all keys attend)
  float* S;                // [units_in_batch][R][NC] fp32; column dvs is z
  int64_t keys_per_split;  // key pass: tokens handled by one blockIdx.z
  int denom_split;         // query pass: z as bf16 hi + lo columns (denom_fp32)
  float eps;
  int fallback_on_negative;
  DeviceStats* stats;
};

__device__ __forceinline__ bool key_attends(const PassArgs& a, int64_t b, int64_t t) {
  return a.keep == nullptr || a.keep[b * a.g.mask_batch_stride + t] != 0;
}

// Stages BK tokens starting at t0 (up to t_end) of unit `unit_local`: scaled key
// coordinates into xs[t * xstride + c] (fp32) and [v, 1] into vbuf via put(col, t, val).
// Masked and out-of-range keys get zero values and a zero "1" column, so they add
// nothing even though their degree-0 feature is 1.
template <int BK, class Put>
__device__ __forceinline__ void stage_keys(const PassArgs& a, int64_t unit_local, int64_t b, int64_t h, int64_t s,
                                           int64_t t0, int64_t t_end, float* xs, int xstride, int nc, Put&& put) {
  const Geometry& g = a.g;
  const int ds = g.ds;
  const int64_t kbase = b * a.k.s0 + h * a.k.s1 + s * static_cast<int64_t>(ds) * a.k.s3;
  for (int e = threadIdx.x; e < BK * ds; e += blockDim.x) {
    const int t = e / ds, c = e % ds;
    const int64_t tok = t0 + t;
    float val = 0.0f;
    if (tok < t_end) val = load_f(a.k.data, kbase + tok * a.k.s2 + c * a.k.s3, a.k.dtype) * a.kfac[unit_local * g.Nk + tok];
    xs[t * xstride + c] = val;
  }
  const int64_t vbase = b * a.v.s0 + h * a.v.s1 + s * static_cast<int64_t>(g.dvs) * a.v.s3;
  for (int e = threadIdx.x; e < BK * nc; e += blockDim.x) {
    const int t = e / nc, col = e % nc;
    const int64_t tok = t0 + t;
    float val = 0.0f;
    if (tok < t_end && key_attends(a, b, tok)) {
      if (col < g.dvs) val = load_f(a.v.data, vbase + tok * a.v.s2 + col * a.v.s3, a.v.dtype);
      else if (col == g.dvs) val = 1.0f;
    }
    put(col, t, val);
  }
}

// Stages rows [r0, r0 + BR) of the unit's state as the B operand: put(col, rr, val)
// with column dvs = z (or its bf16 high part) and dvs + 1 = z's low part when split.
template <int BR, class Put>
__device__ __forceinline__ void stage_state(const PassArgs& a, const float* S_unit, int64_t r0, int nc, bool split_z,
                                            Put&& put) {
  const int dvs = a.g.dvs;
  for (int e = threadIdx.x; e < BR * nc; e += blockDim.x) {
    const int rr = e / nc, col = e % nc;
    const int64_t r = r0 + rr;
    float val = 0.0f;
    if (r < a.g.R) {
      if (col <= dvs) {
        val = S_unit[r * nc + col];
        if (split_z && col == dvs) val = __bfloat162float(__float2bfloat16_rn(val));
      } else if (split_z && col == dvs + 1) {
        const float z = S_unit[r * nc + dvs];
        val = z - __bfloat162float(__float2bfloat16_rn(z));
      }
    }
    put(col, rr, val);
  }
}

// Folds one row's denominator into the statistics and decides its fate; returns the
// denominator to divide by (clamped at eps when fallback_on_negative is off).
__device__ __forceinline__ float account_denominator(const PassArgs& a, float den, unsigned int* flags,
                                                     float* dmin, float* dmax, double* dsum,
                                                     unsigned int* count, unsigned int* le, unsigned int* nonfin) {
  *count += 1;
  if (!isfinite(den)) {
    *nonfin += 1;
    *flags |= kFlagDenInvalid;
    return den;
  }
  *dmin = fminf(*dmin, den);
  *dmax = fmaxf(*dmax, den);
  *dsum += den;
  if (den <= a.eps) {
    *le += 1;
    if (a.fallback_on_negative) *flags |= kFlagDenTooSmall;
    return a.eps;
  }
  return den;
}

// Warp-reduces per-thread statistics and adds them to the call's totals.
__device__ __forceinline__ void flush_stats(DeviceStats* st, unsigned int flags, float dmin, float dmax, double dsum,
                                            unsigned int count, unsigned int le, unsigned int nonfin) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    flags |= __shfl_xor_sync(0xffffffffu, flags, o);
    dmin = fminf(dmin, __shfl_xor_sync(0xffffffffu, dmin, o));
    dmax = fmaxf(dmax, __shfl_xor_sync(0xffffffffu, dmax, o));
    dsum += __shfl_xor_sync(0xffffffffu, dsum, o);
    count += __shfl_xor_sync(0xffffffffu, count, o);
    le += __shfl_xor_sync(0xffffffffu, le, o);
    nonfin += __shfl_xor_sync(0xffffffffu, nonfin, o);
  }
  if ((threadIdx.x & 31) != 0 || count == 0) return;
  if (flags) atomicOr(&st->flags, flags);
  if (dmin <= dmax) {
    atomicMin(&st->den_min_bits, ordered_bits(dmin));
    atomicMax(&st->den_max_bits, ordered_bits(dmax));
  }
  atomicAdd(&st->den_sum, dsum);
  atomicAdd(&st->den_count, static_cast<unsigned long long>(count));
  atomicAdd(&st->le_eps, static_cast<unsigned long long>(le));
  atomicAdd(&st->non_finite, static_cast<unsigned long long>(nonfin));
}

}  // namespace ta::cuda
