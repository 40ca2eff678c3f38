// Prepares the P = 4 prefix x block key pass's inputs for a batch of units, one 64-token
// tile per block (blockIdx.x = tile, blockIdx.y = unit), laid out per tile as the key pass's
// ring stage, so that pass stages each array as one contiguous run (cp.async or bulk copy):
//   y[unit][tile] yT [32][72]: bf16(k * kfac) of token 64 tile + j at [c][j], dim c
//                             (transposed; columns 64..71 zero: the stage's row pad)
//   y[unit][tile] yP [32][64]: the same values, positions permuted within each 16 tokens
//                             (position 4t + jj holds token 2t + (jj & 1) + 8 (jj >> 1)), so
//                             a thread's prefix coordinates of tokens (2t, 2t+1) and
//                             (2t+8, 2t+9) of a k-step are one 8-byte load
//   vx[unit][64 tile + j][0..39] = [bf16(v), 1, 0 x 7], all zero for masked keys
// Tokens beyond Nk are zero everywhere (the pass copies whole tiles). Masked keys' rows are
// zero in vx only: their features meet zero values and a zero "1" column. k and v are read
// through their strides with pb_load8 and the token factors of prep.cuh (sqrt|c|, 1/norm),
// exactly as the P = 3 preparation (pb_prep.cuh).
#pragma once

#include "cuda/kernels/passes_common.cuh"
#include "cuda/kernels/pb4_common.cuh"

namespace ta::cuda {

constexpr int kPb4PrepThreads = 256;

// Token of position p (0..63) of a yP row: group p / 16, thread slot t = (p % 16) / 4, and
// jj = p % 4 picks tokens 2t, 2t+1, 2t+8, 2t+9 of the group.
__device__ __forceinline__ int pb4_prefix_token(int p) {
  const int q = p & 15, slot = q >> 2, jj = q & 3;
  return (p & ~15) + 2 * slot + (jj & 1) + 8 * (jj >> 1);
}

__global__ void __launch_bounds__(kPb4PrepThreads)
    pb4_prep_keys(PassArgs a, __nv_bfloat16* __restrict__ y, __nv_bfloat16* __restrict__ vx) {
  // y of the tile transposed through shared memory: [32 dims][64 tokens + 8] (144-byte rows,
  // 16-byte aligned for the uint4 reads below).
  __shared__ __align__(16) __nv_bfloat16 ys[kPb4Dim][kPb4YtStride];
  const Geometry& g = a.g;
  const int64_t unit_local = blockIdx.y, tile = blockIdx.x;
  const int64_t tiles = pb4_key_tiles(g.Nk), tok0 = tile * kPb4KeyTile;
  const int tid = threadIdx.x;
  int64_t b, h, s;
  unit_coords(g, g.unit0 + unit_local, &b, &h, &s);

  {  // Keys: thread = (token r = tid / 4, dims 8 (tid % 4) .. +7); 256 threads = 64 tokens.
    const int r = tid >> 2, c0 = (tid & 3) * 8;
    const int64_t t = tok0 + r;
    float x[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (t < g.Nk) {
      const int64_t base = b * a.k.s0 + h * a.k.s1 + t * a.k.s2 + s * static_cast<int64_t>(kPb4Dim) * a.k.s3;
      pb_load8(a.k, base, c0, a.vec_k, x);
      const float f = a.kfac[unit_local * g.Nk + t];
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] *= f;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) ys[c0 + i][r] = __float2bfloat16_rn(x[i]);
  }

  // Value rows: 5 chunks of 8 columns per token (the fifth = [1, 0 x 7]), written directly.
  __nv_bfloat16* vt = vx + (unit_local * tiles + tile) * kPb4KeyTile * kPb4Cols;
  for (int e = tid; e < kPb4KeyTile * (kPb4Cols / 8); e += kPb4PrepThreads) {
    const int r = e / (kPb4Cols / 8), chunk = e % (kPb4Cols / 8);
    const int64_t t = tok0 + r;
    float x[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (t < g.Nk && key_attends(a, b, t)) {
      if (chunk * 8 < kPb4ValueDim) {
        const int64_t base = b * a.v.s0 + h * a.v.s1 + t * a.v.s2 + s * static_cast<int64_t>(kPb4ValueDim) * a.v.s3;
        pb_load8(a.v, base, chunk * 8, a.vec_v, x);
      } else {
        x[0] = 1.0f;  // the "1" column: z
      }
    }
    *reinterpret_cast<uint4*>(vt + r * kPb4Cols + chunk * 8) =
        make_uint4(pack_bf16(x[0], x[1]), pack_bf16(x[2], x[3]), pack_bf16(x[4], x[5]), pack_bf16(x[6], x[7]));
  }
  __syncthreads();

  // yT and yP: thread = (dim c = tid / 8, positions 8 (tid % 8) .. +7): 32 x 8 = 256 threads,
  // one 16-byte store each.
  __nv_bfloat16* yt = y + (unit_local * tiles + tile) * kPb4TileElems;
  const int c = tid >> 3, p0 = (tid & 7) * 8;
  *reinterpret_cast<uint4*>(yt + c * kPb4YtStride + p0) = *reinterpret_cast<const uint4*>(&ys[c][p0]);
  if (p0 == kPb4KeyTile - 8) *reinterpret_cast<uint4*>(yt + c * kPb4YtStride + kPb4KeyTile) = make_uint4(0u, 0u, 0u, 0u);
  uint16_t bits[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) bits[i] = __bfloat16_as_ushort(ys[c][pb4_prefix_token(p0 + i)]);
  *reinterpret_cast<uint4*>(yt + kPb4YtElems + c * kPb4KeyTile + p0) =
      make_uint4(bits[0] | static_cast<uint32_t>(bits[1]) << 16, bits[2] | static_cast<uint32_t>(bits[3]) << 16,
                 bits[4] | static_cast<uint32_t>(bits[5]) << 16, bits[6] | static_cast<uint32_t>(bits[7]) << 16);
}

}  // namespace ta::cuda
