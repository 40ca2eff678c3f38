// Hopper warpgroup MMA (wgmma, sm_90a only) for the prefix x block passes (and, with
// wgmma_attn_rs and the swizzled descriptors, the window kernel's text stages): the B operand is
// read by the tensor cores from shared memory through a descriptor, A comes from registers
// in the mma.sync A layout (each warp of the warpgroup supplies 16 rows), and the MMAs run
// asynchronously while the warps build the next A. dev/cuda (v4, v5) validated every fact
// below on the H100 against the mma.sync kernels, bit for bit.
//
// B layout: no swizzle, MN-major (the `.trans` B of PTX 9.7.15.5.1), canonical
// ((T,1,m),(8,k)) : ((1,T,SBO),(1T,LBO)) in 16-byte units: 8x8 core matrices of 8 k rows x 8
// columns (16 contiguous bytes per k row, 128 bytes per core matrix). Core matrix (k-group
// kg, column group cg) of a staged [rows][8 CG] tile sits at (kg * CG + cg) * 128 bytes: SBO
// (next column group) = 128 bytes, LBO (next k-group) = CG * 128 bytes. Each 8-lane
// phase of a cp.async staging loop should cover 8 rows of one column group (distinct banks).
//
// ptxas serializes every wgmma of a kernel (info C7513) when a path skips one or a branch
// decides which registers feed A; the kernels avoid both, and the CTest CudaWgmmaPipelined
// (tests/cuda/check_wgmma_pipelined.cmake) fails if one comes back.
//
// Accumulators (m64n136 fp32): warp w of the group holds rows 16 w + g and 16 w + g + 8,
// register 4 n + {0, 1} / {2, 3} = those rows at cols 8 n + 2 t, + 1: per warp exactly the
// mma.sync C layout of 17 n-tiles, so a float[17][4] array is the 68 registers in order.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda/kernels/pb_common.cuh"

// Only an sm_90a build (TA_CUDA_ARCHITECTURES with 90a) has the instructions; kernels that
// use them compile to a trap elsewhere and are never selected there (device_has_wgmma).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TA_WGMMA_DEVICE 1
#else
#define TA_WGMMA_DEVICE 0
#endif

namespace ta::cuda {

// Descriptor of a no-swizzle tile at p (16-byte aligned shared memory) with explicit byte
// offsets (any multiple of 16): for a K-major B (the non-transposed B of PTX 9.7.15.5.1, 8 n
// rows of 16 contiguous k bytes per core matrix) LBO = next core matrix along k, SBO = next
// 8 n; for an MN-major B (as core_desc) LBO = next 8 k rows, SBO = next 8 columns.
// smem_desc_at takes the shared byte address (smem_u32) itself.
__device__ __forceinline__ uint64_t smem_desc_at(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return ((addr & 0x3FFFFull) >> 4) | uint64_t{(lbo >> 4) & 0x3FFFu} << 16 | uint64_t{(sbo >> 4) & 0x3FFFu} << 32;
}
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  return smem_desc_at(smem_u32(p), lbo, sbo);
}

// Descriptor of a core-matrix tile of CG column groups starting at p (16-byte aligned shared
// memory): SBO = 128 bytes (next column group), LBO = CG x 128 bytes (next 8 rows of k).
template <int CG>
__device__ __forceinline__ uint64_t core_desc(const void* p) {
  return smem_desc(p, CG * 128, 128);
}
template <int CG>
__device__ __forceinline__ uint64_t core_desc_at(uint32_t addr) {
  return smem_desc_at(addr, CG * 128, 128);
}

// smem_desc for a tile in the 128-byte swizzle layout (bits 62-63 = 1): rows of 128 bytes,
// 8-row atoms of 1024 bytes at 1024-byte aligned addresses, the 16-byte chunks of row r at
// position chunk ^ (r % 8). K-major: SBO = next 8 rows (n), LBO unused; MN-major: SBO =
// next 8 rows (k), LBO = next 64 columns (the next 128-byte block of every row).
__device__ __forceinline__ uint64_t smem_desc_sw128_at(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return smem_desc_at(addr, lbo, sbo) | uint64_t{1} << 62;
}
__device__ __forceinline__ uint64_t smem_desc_sw128(const void* p, uint32_t lbo, uint32_t sbo) {
  return smem_desc_sw128_at(smem_u32(p), lbo, sbo);
}

#if TA_WGMMA_DEVICE
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Shared memory written by cp.async or plain stores and read next by the tensor cores (the
// async proxy): each writing thread fences before the barrier that publishes it.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Bulk copies (the TMA unit, no tensor map) completing on an mbarrier. The barrier counts one
// arrival (the issuing thread's expect_tx) plus the copied bytes; waiters poll the phase's
// parity. Data a completed phase covers is visible to the waiting threads and to the tensor
// cores (both copy and wgmma are async-proxy accesses: no proxy fence between them).
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
// After initialising barriers, before the block barrier that publishes them.
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nTA_MBAR_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra TA_MBAR_WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// bytes (a multiple of 16; src and dst 16-byte aligned) from global src to shared dst.
__device__ __forceinline__ void bulk_copy_to_shared(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// A 4-d box of the tensor map at tmap (a __grid_constant__ kernel parameter) at coordinates
// c0..c3 (innermost first; out-of-range elements arrive as zeros) to shared dst, completing on
// bar.
__device__ __forceinline__ void tensor_copy_4d(uint32_t dst, const void* tmap, int c0, int c1, int c2, int c3,
                                               uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
      "%5}], [%6];\n" ::"r"(dst),
      "l"(tmap), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}
// The same for a 5-d box (the 2-D window kernel's grid maps: columns, then the grid's x, y,
// the head and the batch in the map's dim order).
__device__ __forceinline__ void tensor_copy_5d(uint32_t dst, const void* tmap, int c0, const int (&c)[4],
                                               uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
      "%5, %6}], [%7];\n" ::"r"(dst),
      "l"(tmap), "r"(c0), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(bar)
      : "memory");
}
// A plain arrival on a barrier (release: this thread's earlier shared-memory accesses happen
// before a waiter's acquire).
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Keeps the compiler from moving accumulator registers while wgmmas that own them are in
// flight (the asm below looks synchronous to it).
template <int N>
__device__ __forceinline__ void pin_acc(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D (64 x N fp32) += A (64 x 16 bf16, registers) x B (16 x N bf16, MN-major descriptor); N =
// 136 for P = 3 (128 values, z_hi, z_lo, 6 zeros), 40 for P = 4 on 32-wide slices. Always
// accumulates (scale-d = 1): the kernels zero their accumulators first.
__device__ __forceinline__ void wgmma_m64n136k16_rs(float (&d)[68], const uint32_t (&a)[4], uint64_t b_desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %73, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n136k16.f32.bf16.bf16 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,"
      "%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,"
      "%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,"
      "%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67}, "
      "{%68,%69,%70,%71}, %72, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1));
}

__device__ __forceinline__ void wgmma_m64n40k16_rs(float (&d)[20], const uint32_t (&a)[4], uint64_t b_desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %25, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n40k16.f32.bf16.bf16 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,"
      "%17,%18,%19}, "
      "{%20,%21,%22,%23}, %24, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1));
}

// One warpgroup step: the wgmmas of NS slots (accumulators acc[s] in the mma C layout of NT
// n-tiles, A fragments a[s]) against one B tile, issued as one commit group. The caller
// waits (wgmma_wait) before it rewrites a[] or reads acc[].
template <int NS, int NT>
__device__ __forceinline__ void wgmma_step(float (&acc)[NS][NT][4], const uint32_t (&a)[NS][4], uint64_t b_desc) {
  static_assert(NT == 17 || NT == 5, "m64n136k16 (P = 3) or m64n40k16 (P = 4)");
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < NS; ++s) pin_acc(*reinterpret_cast<float(*)[4 * NT]>(&acc[s][0][0]));
#pragma unroll
  for (int s = 0; s < NS; ++s) {
    auto& d = *reinterpret_cast<float(*)[4 * NT]>(&acc[s][0][0]);
    if constexpr (NT == 17) {
      wgmma_m64n136k16_rs(d, a[s], b_desc);
    } else {
      wgmma_m64n40k16_rs(d, a[s], b_desc);
    }
  }
  wgmma_commit();
#pragma unroll
  for (int s = 0; s < NS; ++s) pin_acc(*reinterpret_cast<float(*)[4 * NT]>(&acc[s][0][0]));
}

// Waits for every wgmma in flight; then acc may be read.
template <int NS, int NT>
__device__ __forceinline__ void wgmma_drain(float (&acc)[NS][NT][4]) {
  wgmma_wait<0>();
#pragma unroll
  for (int s = 0; s < NS; ++s) pin_acc(*reinterpret_cast<float(*)[4 * NT]>(&acc[s][0][0]));
}

// Operand lists of the attention-shaped wgmmas below (32 or 64 fp32 accumulators).
#define TA_WG_D32_REGS \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28," \
  "%29,%30,%31}, "
#define TA_WG_D32_OPS \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
  "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), \
  "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), \
  "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define TA_WG_D64_REGS \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28," \
  "%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55," \
  "%56,%57,%58,%59,%60,%61,%62,%63}, "
#define TA_WG_D64_OPS \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
  "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), \
  "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), \
  "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), \
  "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), \
  "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
  "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), \
  "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// D (64 x N fp32) += A (64 x 16 of T, registers in the mma.sync A layout) x B (16 x N of T,
// descriptor) for the window kernel's text stages: R = N / 2 accumulator registers per thread
// (N = 64 or 128), T = __half or __nv_bfloat16, TNSP_B = 0 for a K-major B (smem_desc:
// the keys of Q K^T), 1 for an MN-major one (the values of P V). Always accumulates.
template <class T, int TNSP_B, int R>
__device__ __forceinline__ void wgmma_attn_rs(float (&d)[R], const uint32_t (&a)[4], uint64_t b_desc) {
  static_assert(R == 32 || R == 64, "m64n64k16 or m64n128k16");
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  static_assert(kBf16 || std::is_same_v<T, __half>, "16-bit inputs");
  if constexpr (R == 32 && kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " TA_WG_D32_REGS
                 "{%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
                 : TA_WG_D32_OPS
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1), "n"(TNSP_B));
  } else if constexpr (R == 32) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " TA_WG_D32_REGS
                 "{%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
                 : TA_WG_D32_OPS
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1), "n"(TNSP_B));
  } else if constexpr (kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " TA_WG_D64_REGS
                 "{%64,%65,%66,%67}, %68, p, 1, 1, %70;\n}\n"
                 : TA_WG_D64_OPS
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1), "n"(TNSP_B));
  } else {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " TA_WG_D64_REGS
                 "{%64,%65,%66,%67}, %68, p, 1, 1, %70;\n}\n"
                 : TA_WG_D64_OPS
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1), "n"(TNSP_B));
  }
}
// D (64 x 64 fp32) += A (64 x 16 of T, K-major descriptor) x B (16 x 64 of T, K-major
// descriptor): Q K^T of the 2-D window kernel, with the query tile in shared memory.
template <class T>
__device__ __forceinline__ void wgmma_attn_ss(float (&d)[32], uint64_t a_desc, uint64_t b_desc) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  static_assert(kBf16 || std::is_same_v<T, __half>, "16-bit inputs");
  if constexpr (kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " TA_WG_D32_REGS
                 "%32, %33, p, 1, 1, 0, 0;\n}\n"
                 : TA_WG_D32_OPS
                 : "l"(a_desc), "l"(b_desc), "r"(1));
  } else {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " TA_WG_D32_REGS
                 "%32, %33, p, 1, 1, 0, 0;\n}\n"
                 : TA_WG_D32_OPS
                 : "l"(a_desc), "l"(b_desc), "r"(1));
  }
}
#undef TA_WG_D32_REGS
#undef TA_WG_D32_OPS
#undef TA_WG_D64_REGS
#undef TA_WG_D64_OPS
#endif  // TA_WGMMA_DEVICE

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// Thread block clusters (sm_90): the CTA's rank and the cluster's size (1 for a launch
// without clusters), a cluster-wide barrier (release / acquire: shared-memory stores before
// it are visible to every CTA of the cluster after it), and 16-byte loads from the shared
// memory of CTA `rank` of the cluster at the address p has in this CTA.
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
__device__ __forceinline__ uint32_t cluster_size() {
  uint32_t n;
  asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(n));
  return n;
}
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
__device__ __forceinline__ float4 ld_cluster_f4(const void* p, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(smem_u32(p)), "r"(rank));
  float4 v;
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(remote)
               : "memory");
  return v;
}

// Key split over a cluster: CTA ranks 1 .. n - 1 leave their accumulators (N floats per
// thread) in their own shared memory `smem` (free: every wgmma and stage read is done), rank
// 0 adds them to its own in rank order (deterministic) and alone goes on to store. Every CTA
// of the cluster must call it; returns whether this CTA holds the sums.
template <int N>
__device__ __forceinline__ bool cluster_reduce_acc(float* acc, float* smem) {
  const uint32_t n = cluster_size(), rank = cluster_rank();
  if (n == 1) return true;
  static_assert(N % 4 == 0, "float4 slots");
  float4* mine = reinterpret_cast<float4*>(smem) + threadIdx.x * (N / 4);
  __syncthreads();  // every warp is done with the stage buffers
  if (rank != 0) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) mine[i] = make_float4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]);
  }
  cluster_sync();
  if (rank == 0) {
    for (uint32_t r = 1; r < n; ++r) {
#pragma unroll
      for (int i = 0; i < N / 4; ++i) {
        const float4 v = ld_cluster_f4(mine + i, r);
        acc[4 * i] += v.x;
        acc[4 * i + 1] += v.y;
        acc[4 * i + 2] += v.z;
        acc[4 * i + 3] += v.w;
      }
    }
  }
  cluster_sync();  // the others' shared memory stays until rank 0 has read it
  return rank == 0;
}
#endif

// A token tensor map's coordinates after the column: the token, head and batch index each at
// the position `order` gives it (2 bits each, in that order; make_token_map in cuda_engine.cu).
__device__ __forceinline__ void tma_token_coords(uint32_t order, int64_t tok, int64_t h, int64_t b, int (&c)[3]) {
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    c[i] = static_cast<int>((order & 3u) == static_cast<uint32_t>(i)          ? tok
                            : ((order >> 2) & 3u) == static_cast<uint32_t>(i) ? h
                                                                               : b);
  }
}

// A grid tensor map's coordinates after the column: the grid column x, row y, head and batch
// index each at the position `order` gives it (2 bits each, in that order; make_grid_map).
__device__ __forceinline__ void grid_map_coords(uint32_t order, int x, int y, int64_t h, int64_t b, int (&c)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const auto at = static_cast<uint32_t>(i);
    c[i] = (order & 3u) == at            ? x
           : ((order >> 2) & 3u) == at   ? y
           : ((order >> 4) & 3u) == at   ? static_cast<int>(h)
                                         : static_cast<int>(b);
  }
}

// The bf16x2 of two 16-bit values (lo in the low half).
__device__ __forceinline__ uint32_t pair_bf16(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
}

}  // namespace ta::cuda
