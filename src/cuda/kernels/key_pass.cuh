// Key pass: S[r, :] = w_r * sum_t phi_r(k_t) [v_t, 1] for a tile of feature rows,
// features generated on the fly from the staged key chunk, never stored globally.
#pragma once

#include "cuda/kernels/passes_common.cuh"

namespace ta::cuda {

constexpr int kKeyChunk = 32;  // tokens per staged chunk (two k-steps of the mma)

// Tensor-core path: WARPS warps, each owning MT x 16 feature rows x NC columns of S.
// A = features (rows x tokens) built in registers straight from shared memory;
// B = [v, 1] chunk transposed in shared memory (bf16), each B fragment reused by the
// warp's MT row tiles; fp32 accumulators.
template <int NC, int WARPS, int MT, int DMAX>
__global__ void __launch_bounds__(WARPS * 32) key_pass_mma(PassArgs a) {
  constexpr int BM = WARPS * 16 * MT, BK = kKeyChunk, NT = NC / 8, VST = BK + 8;
  extern __shared__ float smem[];
  const int ds = a.g.ds, xst = ds + 1;
  float* xs = smem;                                                             // [BK][ds+1]
  __nv_bfloat16* vt = reinterpret_cast<__nv_bfloat16*>(smem + BK * xst);       // [NC][BK+8]
  const int64_t unit_local = blockIdx.y;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * BM + warp * 16 * MT + gid;
  uint8_t ids[MT][2][16];
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = row0 + m * 16 + half * 8;
      *reinterpret_cast<uint4*>(ids[m][half]) = make_uint4(0, 0, 0, 0);
      if (row < a.g.R) load_ids(a.ids, row, ids[m][half]);
    }
  }

  float acc[MT][NT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int n = 0; n < NT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

  const int64_t t_begin = blockIdx.z * a.keys_per_split;
  const int64_t t_end = min(a.g.Nk, t_begin + a.keys_per_split);
  for (int64_t t0 = t_begin; t0 < t_end; t0 += BK) {
    stage_keys<BK>(a, unit_local, b, h, s, t0, t_end, xs, xst, NC,
                   [&](int col, int t, float val) { vt[col * VST + t] = __float2bfloat16_rn(val); });
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < BK; ks += 16) {
      const int ta = ks + 2 * tig;
      const float* x0 = xs + ta * xst;
      const float* x1 = x0 + xst;
      const float* x8 = xs + (ta + 8) * xst;
      const float* x9 = x8 + xst;
      uint32_t af[MT][4];
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        af[m][0] = pack_bf16(feature_value<DMAX>(ids[m][0], x0, 1), feature_value<DMAX>(ids[m][0], x1, 1));
        af[m][1] = pack_bf16(feature_value<DMAX>(ids[m][1], x0, 1), feature_value<DMAX>(ids[m][1], x1, 1));
        af[m][2] = pack_bf16(feature_value<DMAX>(ids[m][0], x8, 1), feature_value<DMAX>(ids[m][0], x9, 1));
        af[m][3] = pack_bf16(feature_value<DMAX>(ids[m][1], x8, 1), feature_value<DMAX>(ids[m][1], x9, 1));
      }
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const __nv_bfloat16* col = vt + (n * 8 + gid) * VST + ta;
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(col);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(col + 8);
#pragma unroll
        for (int m = 0; m < MT; ++m) mma_bf16_16816(acc[m][n], af[m], b0, b1);
      }
    }
    __syncthreads();
  }

  float* S_unit = a.S + unit_local * a.g.R * NC;
  const bool split = gridDim.z > 1;
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = row0 + m * 16 + half * 8;
      if (row >= a.g.R) continue;
      const float w = a.weight[row];
#pragma unroll
      for (int n = 0; n < NT; ++n) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          float* dst = S_unit + row * NC + n * 8 + 2 * tig + j;
          const float val = acc[m][n][half * 2 + j] * w;
          if (split) atomicAdd(dst, val); else *dst = val;
        }
      }
    }
  }
}

// fp32 SIMT path (force_fp32, and the plain reference the fast path is tested
// against): 32 feature rows x NC columns per block of 256 threads.
template <int NC, int DMAX>
__global__ void __launch_bounds__(256) key_pass_simt(PassArgs a) {
  constexpr int BK = kKeyChunk, ROWS = 32, CPT = (NC + 7) / 8;
  extern __shared__ float smem[];
  const int ds = a.g.ds, xst = ds + 1;
  float* xs = smem;                  // [BK][ds+1]
  float* vs = xs + BK * xst;         // [BK][NC]
  float* phi = vs + BK * NC;         // [ROWS][BK]
  const int64_t unit_local = blockIdx.y;
  int64_t b, h, s;
  unit_coords(a.g, a.g.unit0 + unit_local, &b, &h, &s);
  const int f = threadIdx.x / 8, cg = threadIdx.x % 8;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * ROWS;
  float acc[CPT] = {};
  const int64_t t_begin = blockIdx.z * a.keys_per_split;
  const int64_t t_end = min(a.g.Nk, t_begin + a.keys_per_split);
  for (int64_t t0 = t_begin; t0 < t_end; t0 += BK) {
    stage_keys<BK>(a, unit_local, b, h, s, t0, t_end, xs, xst, NC,
                   [&](int col, int t, float val) { vs[t * NC + col] = val; });
    __syncthreads();
    for (int e = threadIdx.x; e < ROWS * BK; e += blockDim.x) {
      const int rr = e / BK, t = e % BK;
      const int64_t r = row0 + rr;
      uint8_t ids[16] = {};
      if (r < a.g.R) load_ids(a.ids, r, ids);
      phi[rr * BK + t] = r < a.g.R ? feature_value<DMAX>(ids, xs + t * xst, 1) : 0.0f;
    }
    __syncthreads();
    for (int t = 0; t < BK; ++t) {
      const float ph = phi[f * BK + t];
#pragma unroll
      for (int j = 0; j < CPT; ++j) {
        const int col = cg + 8 * j;
        if (col < NC) acc[j] += ph * vs[t * NC + col];
      }
    }
    __syncthreads();
  }
  const int64_t row = row0 + f;
  if (row >= a.g.R) return;
  const float w = a.weight[row];
  float* dst = a.S + unit_local * a.g.R * NC + row * NC;
#pragma unroll
  for (int j = 0; j < CPT; ++j) {
    const int col = cg + 8 * j;
    if (col >= NC) continue;
    if (gridDim.z > 1) atomicAdd(dst + col, acc[j] * w); else dst[col] = acc[j] * w;
  }
}

}  // namespace ta::cuda
