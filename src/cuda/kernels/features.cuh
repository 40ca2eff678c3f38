// Feature tables on the device: for every feature r (in the engine-wide order of
// core/combinatorics.h) its monomial's indices i1 <= ... <= ip (uint8, slot 15 holds
// the degree p) and its weight 1/prod(c_u!). Built per call by one small kernel, so
// no global state and no host-to-device copies are needed.
#pragma once

#include "cuda/kernels/common.cuh"

namespace ta::cuda {

constexpr int kMaxDegreeSlots = 15;  // P <= 16

struct FeatureTableArgs {
  int64_t R;
  int32_t d, P;
  int64_t degree_offset[17];
};

__device__ __forceinline__ uint64_t binom_dev(uint64_t n, uint32_t k) {
  if (k > n) return 0;
  uint64_t c = 1;
  for (uint32_t i = 1; i <= k; ++i) c = c * (n - k + i) / i;
  return c;
}

// Multisets of size `level` drawn from {0..j}: C(j + level, level).
__device__ __forceinline__ uint64_t multisets_upto(uint32_t j, uint32_t level) { return binom_dev(j + level, level); }

__global__ void build_feature_table(FeatureTableArgs a, uint8_t* __restrict__ idx, float* __restrict__ weight) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= a.R) return;
  int p = 0;
  while (p + 1 < a.P && r >= a.degree_offset[p + 1]) ++p;
  uint64_t s = static_cast<uint64_t>(r - a.degree_offset[p]);
  uint8_t ids[kMaxDegreeSlots];
  // Unrank: the degree-`level` list is grouped by last index j ascending, group j
  // starting at C(j - 1 + level, level); inside it, the degree-(level-1) prefix.
  for (int level = p; level >= 1; --level) {
    uint32_t lo = 0, hi = static_cast<uint32_t>(a.d - 1);
    while (lo < hi) {  // smallest j with multisets_upto(j, level) > s
      const uint32_t mid = (lo + hi) / 2;
      if (multisets_upto(mid, static_cast<uint32_t>(level)) > s) hi = mid; else lo = mid + 1;
    }
    const uint32_t j = lo;
    if (j > 0) s -= multisets_upto(j - 1, static_cast<uint32_t>(level));
    ids[level - 1] = static_cast<uint8_t>(j);
  }
  float w = 1.0f;
  int run = 0;
  for (int m = 0; m < p; ++m) {
    run = (m > 0 && ids[m] == ids[m - 1]) ? run + 1 : 1;
    w /= static_cast<float>(run);
  }
  uint8_t* row = idx + r * 16;
  for (int m = 0; m < kMaxDegreeSlots; ++m) row[m] = m < p ? ids[m] : 0;
  row[15] = static_cast<uint8_t>(p);
  weight[r] = w;
}

// Value of a feature for one token: the product of its p coordinates (degree 0 = 1).
// xs points at the token's pre-scaled vector (stride `step` between coordinates).
// DMAX = P - 1 is the top degree: a compile-time constant for the common degrees
// (<= 3), kMaxDegreeSlots for the generic path.
template <int DMAX>
__device__ __forceinline__ float feature_value(const uint8_t (&ids)[16], const float* xs, int step) {
  const int p = ids[15];
  float v = 1.0f;
#pragma unroll
  for (int m = 0; m < DMAX; ++m) {
    if (m < p) v *= xs[ids[m] * step];
  }
  return v;
}

__device__ __forceinline__ void load_ids(const uint8_t* table, int64_t r, uint8_t (&ids)[16]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(table + r * 16);
  *reinterpret_cast<uint4*>(ids) = raw;
}

}  // namespace ta::cuda
