// What the local-exact hybrid's kernels share (core/window.h has the definition).
// The query pass leaves num_all / carrier(den_all) in the output and den_all in
// PassArgs::wden (Taylor over every key). A window kernel then walks each query's exact
// set E(i) with a running stabiliser m (starting at 0, so it ends as max(0, max_E s)) and
// accumulates, for the keys of E(i),
//   l   = sum_j w_j,  acc = sum_j w_j v_j,  w_j = e^{s_j - m} - e^{-m} T_P(s_j)
// (the second term only for rows with a Taylor part), rescaling both when m grows. The
// row is then num = e^{-m} num_all + acc, den = e^{-m} den_all + l, which is window.h's
//   e^{-m} (Taylor over keys outside E) + sum_E e^{s - m} (v or 1).
// Rows whose exact set is every key (row_all_exact) have no Taylor part: num = acc,
// den = l. The denominator guards and statistics apply to this den.
#pragma once

#include "cuda/kernels/passes_common.cuh"
#include "cuda/window_plan.h"

namespace ta::cuda {

// T_P(s) = sum_{p<P} s^p / p! by Horner's rule: 1 + s (1 + s/2 (1 + ... (1 + s/(P-1)))).
__device__ __forceinline__ float taylor_poly(int P, float s) {
  float t = 1.0f;
  for (int p = P - 1; p >= 1; --p) t = fmaf(__fdividef(s, static_cast<float>(p)), t, 1.0f);
  return t;
}

// 2^x on the special-function unit (about 2 ulp; subnormal results flush to 0). The
// tensor-core kernel forms e^{s - m} as 2^{s log2(e) - m log2(e)}, and e^{-m} as the same
// instruction on the same operand, so a score of exactly 0 gets e^{-m} - e^{-m} T_P(0) = 0.
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
constexpr float kLog2e = 1.4426950408889634f;

// Brings the 128-byte line holding p into L2 (no register, no wait).
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// True when query i's exact set is every key (no Taylor part to complete).
__device__ __forceinline__ bool row_all_exact(const WindowArgs& w, int64_t i) {
  return i < w.text && w.text_queries != 0;
}

// The denominator statistics of the rows one thread finishes, flushed once per warp.
struct RowStats {
  unsigned int flags = 0, count = 0, le = 0, nonfin = 0;
  float dmin = INFINITY, dmax = -INFINITY;
  double dsum = 0.0;
  __device__ float account(const PassArgs& a, float den) {
    return account_denominator(a, den, &flags, &dmin, &dmax, &dsum, &count, &le, &nonfin);
  }
  __device__ void flush(const PassArgs& a) { flush_stats(a.stats, flags, dmin, dmax, dsum, count, le, nonfin); }
};

// Completes one output element of a finished row and stores it; returns the flag raised.
// num_all comes back from the output the query pass wrote (num_all / carrier).
__device__ __forceinline__ unsigned int finish_element(const PassArgs& a, int64_t off, bool taylor, float carrier,
                                                       float em, float acc, float den) {
  const float num_all = taylor ? load_f(a.out.data, off, a.out.dtype) * carrier : 0.0f;
  const float stored = store_f(a.out.data, off, a.out.dtype, fmaf(em, num_all, acc) / den);
  return isfinite(stored) ? 0u : static_cast<unsigned int>(kFlagNonFiniteOut);
}

// The same with rden = 1 / den (one division per row instead of one per element, within
// about an fp32 ulp of the quotient); the quotient itself where rden overflows (den 0 or
// subnormal).
__device__ __forceinline__ unsigned int finish_element_rcp(const PassArgs& a, int64_t off, bool taylor, float carrier,
                                                           float em, float acc, float den, float rden) {
  const float num_all = taylor ? load_f(a.out.data, off, a.out.dtype) * carrier : 0.0f;
  const float num = fmaf(em, num_all, acc);
  const float stored = store_f(a.out.data, off, a.out.dtype, isfinite(rden) ? num * rden : num / den);
  return isfinite(stored) ? 0u : static_cast<unsigned int>(kFlagNonFiniteOut);
}

}  // namespace ta::cuda
