// Device helpers shared by the kernels: typed strided loads and stores, bf16 packing,
// the m16n8k16 tensor-core instructions and ldmatrix, order-preserving float atomics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace ta::cuda {

// A strided 4-D operand as the kernels see it: element strides, dtype by template.
struct Strided {
  const void* data;
  int64_t s0, s1, s2, s3;
  int dtype;
};

struct StridedOut {
  void* data;
  int64_t s0, s1, s2, s3;
  int dtype;
};

// Problem geometry of one launch; a unit is one (batch, head, slice).
struct Geometry {
  int64_t B, H, G, Nq, Nk;
  int32_t ds, dvs, P;
  int64_t R;
  int64_t unit0;  // first global unit of this batch of units
  int64_t mask_batch_stride;  // Nk when the key mask differs per batch entry, else 0
};

__device__ __forceinline__ void unit_coords(const Geometry& g, int64_t unit, int64_t* b, int64_t* h, int64_t* s) {
  *s = unit % g.G;
  *h = (unit / g.G) % g.H;
  *b = unit / (g.G * g.H);
}

// dtype codes follow ta_dtype: 0 f16, 1 bf16, 2 f32. A runtime switch per element is
// cheap next to the feature math and keeps the number of kernel instantiations small.
__device__ __forceinline__ float load_f(const void* base, int64_t off, int dtype) {
  if (dtype == 2) return static_cast<const float*>(base)[off];
  if (dtype == 1) return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[off]);
  return __half2float(static_cast<const __half*>(base)[off]);
}

// Stores v in the output dtype and returns the value actually stored (for the
// non-finite check: a finite float can overflow f16).
__device__ __forceinline__ float store_f(void* base, int64_t off, int dtype, float v) {
  if (dtype == 2) {
    static_cast<float*>(base)[off] = v;
    return v;
  }
  if (dtype == 1) {
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    static_cast<__nv_bfloat16*>(base)[off] = h;
    return __bfloat162float(h);
  }
  const __half h = __float2half_rn(v);
  static_cast<__half*>(base)[off] = h;
  return __half2float(h);
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low 16 bits) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}

// D = A(16x16, row) * B(16x8, col) + D, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The same with f16 inputs (the window kernel keeps f16 inputs in f16: converting them to
// bf16 would drop three mantissa bits).
__device__ __forceinline__ void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16-bit operand types of the tensor-core instruction, by input type.
template <class T>
struct Mma16;
template <>
struct Mma16<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_bf16_16816(d, a, b0, b1);
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) { return pack_bf16(lo, hi); }
  static __device__ __forceinline__ float2 unpack(uint32_t v) {
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
  }
};
template <>
struct Mma16<__half> {
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_f16_16816(d, a, b0, b1);
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);  // .x (low 16 bits) = lo
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t v) {
    return __half22float2(*reinterpret_cast<const __half2*>(&v));
  }
};

// Four 8x8 16-bit matrices from shared memory, transposed: lanes 8m..8m+7 give the row
// addresses of matrix m, register m receives its transposed fragment (the B operand of
// mma.m16n8k16 from a row-major [k][n] tile).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row_address) {
  const auto addr = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Floats mapped to unsigned ints whose order matches the floats' order, for atomicMin/Max.
__device__ __forceinline__ unsigned int ordered_bits(float f) {
  const unsigned int u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Reason flags raised by kernels, turned into ta_reason on the host (first set bit wins
// in the order below, which is also the CPU engine's precedence per row).
enum ReasonFlag : unsigned int {
  kFlagDenInvalid = 1u,
  kFlagDenTooSmall = 2u,
  kFlagNonFiniteOut = 4u,
};

// Device-side statistics of one call (all units).
struct DeviceStats {
  unsigned int den_min_bits, den_max_bits;
  double den_sum;
  unsigned long long den_count, le_eps, non_finite;
  unsigned int flags;
  unsigned int probe_min_bits;
  unsigned int probe_flags;
};

}  // namespace ta::cuda
