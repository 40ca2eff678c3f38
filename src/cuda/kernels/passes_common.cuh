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
  const __nv_bfloat16* St; // query pass: S as bf16 B operand, [units_in_batch][NC][Rpad] (z split hi/lo)
  int64_t Rpad;            // R rounded up to the query pass's feature chunk
  int vec_q, vec_k, vec_v; // 16-byte vector loads allowed (last dim contiguous, aligned)
  int64_t keys_per_split;  // key pass: tokens handled by one blockIdx.z
  int denom_split;         // query pass: z as bf16 hi + lo columns (denom_fp32)
  float eps;
  int fallback_on_negative;
  DeviceStats* stats;
  // Local-exact hybrid only (NULL otherwise). wden [units_in_batch][Nq]: the query pass's
  // Taylor denominators over all keys, which the window kernel completes; probe_den
  // [units_in_batch][probe rows]: the same for the probe's sampled rows.
  float* wden;
  float* probe_den;
};

__device__ __forceinline__ bool key_attends(const PassArgs& a, int64_t b, int64_t t) {
  return a.keep == nullptr || a.keep[b * a.g.mask_batch_stride + t] != 0;
}

// Stages BK tokens starting at t0 (up to t_end) of unit `unit_local`: scaled key
// coordinates into xs[t * xstride + c] (fp32) and [v, 1] into vbuf via put(col, t, val).
// Masked and out-of-range keys get zero values and a zero "1" column, so they add
// nothing even though their degree-0 feature is 1.
// Loads the 16-byte vector at element offset off and hands its values to put(i, value).
template <class Put>
__device__ __forceinline__ int load_vector(const void* base, int64_t off, int dtype, Put&& put) {
  if (dtype == 2) {
    const float4 f = *reinterpret_cast<const float4*>(static_cast<const float*>(base) + off);
    put(0, f.x), put(1, f.y), put(2, f.z), put(3, f.w);
    return 4;
  }
  const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(base) + off);
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (dtype == 1) {
      put(2 * i, __uint_as_float(w[i] << 16));
      put(2 * i + 1, __uint_as_float(w[i] & 0xffff0000u));
    } else {
      const __half2 h = *reinterpret_cast<const __half2*>(&w[i]);
      const float2 f = __half22float2(h);
      put(2 * i, f.x);
      put(2 * i + 1, f.y);
    }
  }
  return 8;
}

__device__ __forceinline__ int vector_elems(int dtype) { return dtype == 2 ? 4 : 8; }

template <int BK, class Put>
__device__ __forceinline__ void stage_keys(const PassArgs& a, int64_t unit_local, int64_t b, int64_t h, int64_t s,
                                           int64_t t0, int64_t t_end, float* xs, int xstride, int nc, Put&& put) {
  const Geometry& g = a.g;
  const int ds = g.ds;
  const int64_t kbase = b * a.k.s0 + h * a.k.s1 + s * static_cast<int64_t>(ds) * a.k.s3;
  const float* kf = a.kfac + unit_local * g.Nk;
  if (a.vec_k) {
    const int per = vector_elems(a.k.dtype), vecs = ds / per;
    for (int e = threadIdx.x; e < BK * vecs; e += blockDim.x) {
      const int t = e / vecs, c0 = (e % vecs) * per;
      const int64_t tok = t0 + t;
      float* dst = xs + t * xstride + c0;
      if (tok < t_end) {
        const float f = kf[tok];
        load_vector(a.k.data, kbase + tok * a.k.s2 + c0, a.k.dtype, [&](int i, float x) { dst[i] = x * f; });
      } else {
        for (int i = 0; i < per; ++i) dst[i] = 0.0f;
      }
    }
  } else {
    for (int e = threadIdx.x; e < BK * ds; e += blockDim.x) {
      const int t = e / ds, c = e % ds;
      const int64_t tok = t0 + t;
      float val = 0.0f;
      if (tok < t_end) val = load_f(a.k.data, kbase + tok * a.k.s2 + c * a.k.s3, a.k.dtype) * kf[tok];
      xs[t * xstride + c] = val;
    }
  }
  const int64_t vbase = b * a.v.s0 + h * a.v.s1 + s * static_cast<int64_t>(g.dvs) * a.v.s3;
  if (a.vec_v) {
    const int per = vector_elems(a.v.dtype), vecs = g.dvs / per;
    for (int e = threadIdx.x; e < BK * vecs; e += blockDim.x) {
      const int t = e / vecs, c0 = (e % vecs) * per;
      const int64_t tok = t0 + t;
      if (tok < t_end && key_attends(a, b, tok)) {
        load_vector(a.v.data, vbase + tok * a.v.s2 + c0, a.v.dtype, [&](int i, float x) { put(c0 + i, t, x); });
      } else {
        for (int i = 0; i < per; ++i) put(c0 + i, t, 0.0f);
      }
    }
    // The "1" column (z) and the zero padding.
    for (int e = threadIdx.x; e < BK * (nc - g.dvs); e += blockDim.x) {
      const int t = e / (nc - g.dvs), col = g.dvs + e % (nc - g.dvs);
      const int64_t tok = t0 + t;
      put(col, t, (col == g.dvs && tok < t_end && key_attends(a, b, tok)) ? 1.0f : 0.0f);
    }
    return;
  }
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

// S (fp32, [R][NC]) into the query pass's B operand: bf16, column-major [NC][Rpad],
// z split into a bf16 high part (column dvs) and low part (column dvs + 1) when asked.
template <int NC>
__global__ void state_to_bf16(const float* __restrict__ S, __nv_bfloat16* __restrict__ St, int64_t R, int64_t Rpad,
                              int dvs, int split_z, int64_t units) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= units * Rpad) return;
  const int64_t unit = i / Rpad, r = i % Rpad;
  const float* src = S + (unit * R + r) * NC;
  __nv_bfloat16* dst = St + unit * NC * Rpad + r;
#pragma unroll 8
  for (int col = 0; col < NC; ++col) {
    float val = 0.0f;
    if (r < R) {
      if (col <= dvs) {
        val = src[col];
      } else if (split_z && col == dvs + 1) {
        const float z = src[dvs];
        val = z - __bfloat162float(__float2bfloat16_rn(z));
      }
    }
    dst[col * Rpad] = __float2bfloat16_rn(val);
  }
}

// Hybrid mode: the query pass stores num / carrier(den) in the output (in its dtype) and
// den itself in wden; the window kernel recovers num as out * carrier(den). Any finite,
// not tiny divisor works; den keeps the stored values at the plain output's scale.
__device__ __forceinline__ float carrier_denominator(float den) {
  return isfinite(den) && fabsf(den) >= 1e-20f ? den : 1.0f;
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
