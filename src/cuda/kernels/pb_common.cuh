// Device pieces the prefix x block key and query passes share (cuda/prefix_block_plan.h has
// the math and the block list): the list in constant memory, cp.async, ldmatrix, the
// per-row bf16 scaling of fragments, and the 17 n-tile mma sweep over one 16-row slab.
//
// Fragment facts relied on (PTX ISA 9.0, 9.7.14.5.8 and 9.7.14.5.15), lane = 4 g + t:
// A (16x16 .row bf16): reg0 = (row g, cols 2t, 2t+1), reg1 = (row g+8, same), reg2 = (row g,
// cols 2t+8, 2t+9), reg3 = (row g+8, cols 2t+8, 2t+9), low half = lower column. B (16x8 .col):
// reg0 = (rows 2t, 2t+1, col g), reg1 = (rows 2t+8, 2t+9, col g). C: c0, c1 = (row g, cols 2t,
// 2t+1), c2, c3 = (row g+8, same). ldmatrix .m8n8: lanes 8m..8m+7 give the rows of matrix m;
// register m gets (row l/4, cols 2(l%4), +1), with .trans (rows 2(l%4), +1, col l/4).
// dev/cuda/README.md lists every address formula; the harness validated them on the H100.
#pragma once

#include "cuda/kernels/passes_common.cuh"
#include "cuda/prefix_block_plan.h"

namespace ta::cuda {

// Built at compile time (and checked there: prefix_block_plan.h), so no upload per device.
__constant__ PbBlockList c_pb_list = pb_block_list();

constexpr int kPbNT = kPbCols / 8;  // 17 n-tiles of m16n8k16 over the state columns
constexpr uint32_t kBf16One = 0x3F80u;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy to the shared byte address dst (smem_u32); valid = false zero-fills
// the destination (rows beyond the tokens). Hot loops keep shared addresses as 32-bit byte
// offsets computed once per thread: converting a generic pointer costs a special-register
// read (the CTA's shared window) that ptxas otherwise repeats per use.
__device__ __forceinline__ void cp_async16_at(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async16_at(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  cp_async16_at(smem_u32(dst), src, valid);
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldsm_x4_at(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans_at(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) { ldsm_x4_at(r, smem_u32(p)); }
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) { ldsm_x4_trans_at(r, smem_u32(p)); }
__device__ __forceinline__ void ldsm_x2_trans(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(p))
               : "memory");
}

__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

// Scales the two bf16 halves of v by s_lo / s_hi in fp32 and rounds once: the feature
// x_a * x_b is the exact product of two bf16 values rounded to bf16 a single time.
__device__ __forceinline__ uint32_t scale_bf16x2(uint32_t v, float s_lo, float s_hi) {
  return pack_bf16(__uint_as_float(v << 16) * s_lo, __uint_as_float(v & 0xFFFF0000u) * s_hi);
}

// Two bf16 products, each rounded to bf16 once (mul.rn.bf16x2; fma.rn.bf16x2 with -0 before
// sm_90; the _rn form is never contracted into an fma): the prefix x_a x_b of two tokens /
// rows, or a feature = prefix x coordinate. One instruction per register, and the same bits
// as scale_bf16x2 (the fp32 product of two bf16 values is exact; both round it once).
__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t x, uint32_t y) {
  __nv_bfloat162 a, b;
  memcpy(&a, &x, 4);
  memcpy(&b, &y, 4);
  const __nv_bfloat162 r = __hmul2_rn(a, b);
  uint32_t out;
  memcpy(&out, &r, 4);
  return out;
}

// The fast path's coordinate: the input times its token factor (sqrt|c|, the query side's
// sign, 1/norm), rounded to bf16 once. The key prep, the query staging and the probe all
// use it, so the probe sees the query pass's exact inputs.
__device__ __forceinline__ float pb_coordinate(float x, float factor) {
  return __bfloat162float(__float2bfloat16_rn(x * factor));
}

// Eight consecutive elements of a slice row (c0 a multiple of 8) as floats: one or two
// 16-byte loads when allowed (PassArgs::vec_*), else element by element. Every index is a
// compile-time constant after inlining, so out stays in registers.
__device__ __forceinline__ void pb_load8(const Strided& x, int64_t row_base, int c0, int vec, float (&out)[8]) {
  if (vec) {
    const int got = load_vector(x.data, row_base + c0, x.dtype, [&](int i, float val) { out[i] = val; });
    if (got == 4) load_vector(x.data, row_base + c0 + 4, x.dtype, [&](int i, float val) { out[4 + i] = val; });
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = load_f(x.data, row_base + (c0 + i) * x.s3, x.dtype);
}

// Element offset of the 8-value chunk (row r, column group cg) in a core-matrix tile of CG
// column groups (17 for the P = 3 state's 136 columns, 5 for P = 4's 40): the no-swizzle
// MN-major layout a wgmma B descriptor reads (kernels/wgmma.cuh).
template <int CG>
__device__ __forceinline__ int core_offset(int r, int cg) {
  return ((r >> 3) * CG + cg) * 64 + (r & 7) * 8;
}

// Element offset of (row r, column c) in a unit's S_pad. The mma.sync passes use rows of 136
// values; the wgmma passes (kImage) store each stage of the query pass (kPbWgStageRows rows,
// the last one 16) as the image of its shared-memory tile, in the core-matrix layout, so
// that one bulk copy stages it.
template <bool kImage>
__device__ __forceinline__ int64_t pb_state_at(int r, int c) {
  if constexpr (kImage) {
    return static_cast<int64_t>(r / kPbWgStageRows) * kPbWgStageRows * kPbCols +
           core_offset<kPbNT>(r % kPbWgStageRows, c >> 3) + (c & 7);
  } else {
    return static_cast<int64_t>(r) * kPbCols + c;
  }
}

// The key passes' epilogue: a warp's two blocks (list positions list0, list0 + 1) from
// accumulators in the mma C layout, weights folded in, stored as bf16 rows of the unit's
// S_pad su (layout: pb_state_at); z (col 128 of the accumulators) split into z_hi + z_lo
// (cols 128, 129). Rows of weight 0 (padding) are stored as exact zeros; null blocks are not
// stored.
template <bool kImage>
__device__ __forceinline__ void pb_store_state_rows(const float (&acc)[2][kPbNT][4], const uint32_t (&desc)[2],
                                                    int list0, __nv_bfloat16* su, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    if (pb_kind(desc[m]) == kPbNull) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int i = g + 8 * half;
      const float w = pb_weight(desc[m], i);
      const int r = (list0 + m) * 16 + i;
      auto put = [&](int c, uint32_t pair) { *reinterpret_cast<uint32_t*>(su + pb_state_at<kImage>(r, c)) = pair; };
#pragma unroll
      for (int n = 0; n < 16; ++n) {
        put(8 * n + 2 * t, w == 0.0f ? 0u : pack_bf16(acc[m][n][2 * half] * w, acc[m][n][2 * half + 1] * w));
      }
      const float z = acc[m][16][2 * half] * w;
      const float z_hi = __bfloat162float(__float2bfloat16_rn(z));
      put(kPbValueDim + 2 * t, t == 0 && w != 0.0f ? pack_bf16(z_hi, z - z_hi) : 0u);
    }
  }
}

// acc[m][n] += a[m] x B_n for the 17 n-tiles of one 16-row slab of a staged [rows][136] tile
// (rows along k). B fragments come from ldmatrix .trans: matrix 0 = k rows 0..7 / cols +0..7
// (b0 of n-tile 2np), 1 = k rows 8..15 / cols +0..7 (b1), 2 and 3 the same for cols +8..15
// (n-tile 2np + 1). Each B fragment serves the MT A fragments.
template <int MT>
__device__ __forceinline__ void pb_mma_slab(float (&acc)[MT][kPbNT][4], const uint32_t (&a)[MT][4],
                                            const __nv_bfloat16* slab, int lane) {
  const __nv_bfloat16* lrow = slab + ((lane & 7) + ((lane >> 3) & 1) * 8) * kPbTileStride + (lane >> 4) * 8;
#pragma unroll
  for (int np = 0; np < 8; ++np) {
    uint32_t b[4];
    ldsm_x4_trans(b, lrow + np * 16);
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      mma_bf16_16816(acc[m][2 * np], a[m], b[0], b[1]);
      mma_bf16_16816(acc[m][2 * np + 1], a[m], b[2], b[3]);
    }
  }
  // n-tile 16 (cols 128..135): an x2 load; lanes 16..31 repeat the addresses of lanes 0..15.
  uint32_t b[2];
  ldsm_x2_trans(b, slab + ((lane & 7) + ((lane >> 3) & 1) * 8) * kPbTileStride + 128);
#pragma unroll
  for (int m = 0; m < MT; ++m) mma_bf16_16816(acc[m][16], a[m], b[0], b[1]);
}

}  // namespace ta::cuda
