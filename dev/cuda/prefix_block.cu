// Dev harness (llm.c dev/cuda style): a version ladder of "prefix x block" tensor-core kernels
// for the P = 3 Taylor-attention key and query passes on full 128-dim heads, each version
// validated against an fp64 host reference before it is timed. Standalone: it does not link
// the library. Build and run: dev/cuda/run.sh; the math and the fragment facts: README.md.
//
// Features come in blocks of 16 rows that share one "prefix" coordinate a and one 16-wide
// column block bb of the head: feature (a, 16 bb + i) = x_a * x_{16 bb + i}. The tensor cores
// are fed straight from ldmatrix fragments of the bf16 q/k tiles, scaled by the prefix, instead
// of being built element by element from fp32 coordinates through an index table (the library's
// v2 kernels, shared-memory-pipe bound at ~9% of the bf16 tensor-core rate: docs/perf-notes.md).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// Problem shape: P = 3 on one slice of width D = 128, value width DV = 128.
// ---------------------------------------------------------------------------------------------
constexpr int kD = 128;                      // q/k head dim
constexpr int kDV = 128;                     // value width
constexpr int kNC = 136;                     // state columns: 128 values, z_hi, z_lo, 6 zeros
constexpr int kNT = kNC / 8;                 // 17 n-tiles of the m16n8k16 mma
constexpr int kNumBlocks = 1 + 8 + 576;      // CONST, DEG1 bb = 0..7, DEG2 (a, bb >= a / 16)
constexpr int kRpad = 16 * kNumBlocks;       // 9360 state rows (11% padding)
constexpr int kR = 8385;                     // real features: C(130, 2)
constexpr int kST = 136;                     // smem row stride (bf16) of every staged tile: 272 B
constexpr int kOnesCol = 128;                // staged q/k tiles hold 1.0 here (the DEG1 prefix)
constexpr uint32_t kBf16One = 0x3F80u;       // bf16 bits of 1.0
static_assert((kST * 2) % 128 == 16, "272-byte rows: the 8 rows of an ldmatrix 8x8 hit distinct banks");

// Launch shape.
constexpr int kThreads = 256;                                   // 8 warps
constexpr int kKeyTile = 64;                                    // tokens per staged key tile
constexpr int kKeyBlocksPerCta = 16;                            // 8 warps x MB = 2 blocks
constexpr int kKeyCtas = (kNumBlocks + kKeyBlocksPerCta - 1) / kKeyBlocksPerCta;  // 37 per head
constexpr int kListLen = kKeyCtas * kKeyBlocksPerCta;           // 592: padded with null blocks
constexpr int kQueryRows = 256;                                 // 8 warps x 2 m16 tiles
constexpr int kStageBlocks = 4;                                 // state blocks per query stage
constexpr int kStageRows = 16 * kStageBlocks;                   // 64 state rows per stage
constexpr int kQueryStages = 3;                                 // cp.async ring depth
constexpr int kNumStateStages = (kNumBlocks + kStageBlocks - 1) / kStageBlocks;  // 147

// A block descriptor: kind << 16 | prefix column << 8 | bb. The DEG1 prefix column is
// kOnesCol, so DEG1 and DEG2 run the same code (scaling by an exact 1.0).
enum BlockKind : uint32_t { kNull = 0, kConst = 1, kDeg1 = 2, kDeg2 = 3 };

__host__ __device__ constexpr uint32_t encode_block(uint32_t kind, uint32_t col, uint32_t bb) {
  return kind << 16 | col << 8 | bb;
}
__host__ __device__ inline uint32_t block_kind(uint32_t d) { return d >> 16; }
__host__ __device__ inline int block_col(uint32_t d) { return static_cast<int>((d >> 8) & 0xFFu); }
__host__ __device__ inline int block_bb(uint32_t d) { return static_cast<int>(d & 0xFFu); }

// Weight folded into state row i of a block: 1 above the diagonal of a DEG2 block, 1/2 on it,
// 0 below it (padding rows); CONST keeps only row 0.
__host__ __device__ inline float feature_weight(uint32_t d, int i) {
  const uint32_t kind = block_kind(d);
  if (kind == kConst) return i == 0 ? 1.0f : 0.0f;
  if (kind == kDeg1) return 1.0f;
  if (kind == kDeg2) {
    const int b = 16 * block_bb(d) + i, a = block_col(d);
    return b > a ? 1.0f : (b == a ? 0.5f : 0.0f);
  }
  return 0.0f;
}

__constant__ uint32_t c_blocks[kListLen];

// ---------------------------------------------------------------------------------------------
// Device helpers: cp.async, ldmatrix, mma.sync, bf16 scaling.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; src_size 0 zero-fills the destination (tokens beyond N).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Lanes 8m..8m+7 give the row addresses of 8x8 matrix m; register m receives its fragment:
// (row lane/4, cols 2(lane%4), +1), or with .trans (rows 2(lane%4), +1, col lane/4).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}
__device__ __forceinline__ void ldsm_x2_trans(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(p))
               : "memory");
}

// D = A(16x16 row) * B(16x8 col) + D, bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo; cvt.rn.bf16x2.f32
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Scales the two bf16 halves of v by s_lo / s_hi in fp32 and rounds once: the feature
// x_a * x_b is the exact product of two bf16 values rounded to bf16 a single time.
__device__ __forceinline__ uint32_t scale_bf16x2(uint32_t v, float s_lo, float s_hi) {
  return pack_bf16x2(__uint_as_float(v << 16) * s_lo, __uint_as_float(v & 0xFFFF0000u) * s_hi);
}

// acc[m][n] += a[m] x B_n for the 17 n-tiles of one 16-row slab of a staged [rows][136] tile
// (rows along k). B fragments come from ldmatrix .trans: matrix 0 = k rows 0..7 / cols +0..7
// (b0 of n-tile 2np), 1 = k rows 8..15 / cols +0..7 (b1), 2 and 3 the same for cols +8..15
// (n-tile 2np + 1). Each B fragment is reused by the MT A fragments.
template <int MT>
__device__ __forceinline__ void mma_slab(float (&acc)[MT][kNT][4], const uint32_t (&a)[MT][4],
                                         const __nv_bfloat16* slab, int lane) {
  const __nv_bfloat16* lrow = slab + ((lane & 7) + ((lane >> 3) & 1) * 8) * kST + (lane >> 4) * 8;
#pragma unroll
  for (int np = 0; np < 8; ++np) {
    uint32_t b[4];
    ldsm_x4_trans(b, lrow + np * 16);
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      mma_16816(acc[m][2 * np], a[m], b[0], b[1]);
      mma_16816(acc[m][2 * np + 1], a[m], b[2], b[3]);
    }
  }
  // n-tile 16 (cols 128..135): an x2 load; lanes 16..31 repeat the addresses of lanes 0..15.
  uint32_t b[2];
  ldsm_x2_trans(b, slab + ((lane & 7) + ((lane >> 3) & 1) * 8) * kST + 128);
#pragma unroll
  for (int m = 0; m < MT; ++m) mma_16816(acc[m][16], a[m], b[0], b[1]);
}

// ---------------------------------------------------------------------------------------------
// Key pass: S_pad[r, :] = w_r sum_j phi_r(y_j) [v_j, 1, 0...], one CTA = 16 blocks of a head.
// KSTAGES: cp.async ring depth of the key tiles. REUSE: the warp's second block takes the
// first block's prefix scalars when both share the prefix column (the host list pairs them).
// ---------------------------------------------------------------------------------------------
template <int KSTAGES, bool REUSE>
__global__ void __launch_bounds__(kThreads, 1)
    key_pass(const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
             __nv_bfloat16* __restrict__ state, int n_tokens) {
  static_assert(KSTAGES >= 2, "the ring needs a buffer to fill while one is read");
  constexpr int kTile = kKeyTile * kST;  // one [64][136] bf16 tile; stage s = K tile, then [V|1]
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const int head = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const __nv_bfloat16* kh = k + static_cast<size_t>(head) * n_tokens * kD;
  const __nv_bfloat16* vh = v + static_cast<size_t>(head) * n_tokens * kDV;

  const int list0 = blockIdx.x * kKeyBlocksPerCta + warp * 2;
  const uint32_t desc[2] = {c_blocks[list0], c_blocks[list0 + 1]};
  const bool has_prefix0 = block_kind(desc[0]) >= kDeg1, has_prefix1 = block_kind(desc[1]) >= kDeg1;
  const bool reuse = REUSE && has_prefix0 && has_prefix1 && block_col(desc[0]) == block_col(desc[1]);
  const bool active = block_kind(desc[0]) != kNull;  // only the last CTA has idle warps

  // The K tiles' cols 128..135 = [1, 0 x 7]: cp.async never writes them.
  for (int e = tid; e < KSTAGES * kKeyTile; e += kThreads) {
    const int s = e / kKeyTile, r = e % kKeyTile;
    *reinterpret_cast<uint4*>(smem + 2 * s * kTile + r * kST + kOnesCol) = make_uint4(kBf16One, 0u, 0u, 0u);
  }

  const int n_tiles = (n_tokens + kKeyTile - 1) / kKeyTile;
  auto stage_tile = [&](int tile, int buf) {
    __nv_bfloat16* ks = smem + 2 * buf * kTile;
    __nv_bfloat16* vs = ks + kTile;
    const int tok0 = tile * kKeyTile;
    for (int e = tid; e < kKeyTile * 16; e += kThreads) {
      const int r = e >> 4, c = (e & 15) * 8, tok = tok0 + r;
      const bool valid = tok < n_tokens;
      const size_t src = static_cast<size_t>(valid ? tok : 0) * kD + c;
      cp_async16(ks + r * kST + c, kh + src, valid);
      cp_async16(vs + r * kST + c, vh + src, valid);
    }
    // [V | 1]: the ones column (z) only for real tokens, so padding tokens add nothing,
    // not even to the CONST row whose A fragment is built from constants.
    if (tid < kKeyTile) {
      *reinterpret_cast<uint4*>(vs + tid * kST + kOnesCol) =
          make_uint4(tok0 + tid < n_tokens ? kBf16One : 0u, 0u, 0u, 0u);
    }
  };

  float acc[2][kNT][4];
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int n = 0; n < kNT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

#pragma unroll
  for (int s = 0; s < KSTAGES - 1; ++s) {
    if (s < n_tiles) stage_tile(s, s);
    cp_async_commit();
  }

  for (int tile = 0; tile < n_tiles; ++tile) {
    // Tile `tile` has landed, and every warp is done with the buffer refilled below.
    cp_async_wait<KSTAGES - 2>();
    __syncthreads();
    const int next = tile + KSTAGES - 1;
    if (next < n_tiles) stage_tile(next, next % KSTAGES);
    cp_async_commit();
    if (!active) continue;

    const __nv_bfloat16* ks = smem + 2 * (tile % KSTAGES) * kTile;
    const __nv_bfloat16* vs = ks + kTile;
#pragma unroll
    for (int kk = 0; kk < kKeyTile / 16; ++kk) {
      const __nv_bfloat16* kslab = ks + kk * 16 * kST;
      uint32_t a[2][4];
      float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // prefix of this thread's tokens 2t, 2t+1, 2t+8, 2t+9
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        const uint32_t kind = block_kind(desc[m]);
        if (kind == kConst) {
          // Row 0 = 1 for every token: rows g (= 0) of registers 0 and 2.
          a[m][0] = a[m][2] = g == 0 ? (kBf16One << 16 | kBf16One) : 0u;
          a[m][1] = a[m][3] = 0u;
        } else if (kind == kNull) {
          a[m][0] = a[m][1] = a[m][2] = a[m][3] = 0u;
        } else {
          // A = K slab transposed: matrix 0 = tokens 0..7 x dims +0..7 (rows g, cols 2t..),
          // 1 = tokens 0..7 x dims +8..15 (rows g + 8), 2 and 3 = tokens 8..15 (cols 2t + 8..).
          ldsm_x4_trans(a[m], kslab + ((lane & 7) + (lane >> 4) * 8) * kST + 16 * block_bb(desc[m]) +
                                  ((lane >> 3) & 1) * 8);
          if (!(m == 1 && reuse)) {
            const uint16_t* pc = reinterpret_cast<const uint16_t*>(kslab) + 2 * t * kST + block_col(desc[m]);
            p[0] = bf16_bits_to_float(pc[0]);
            p[1] = bf16_bits_to_float(pc[kST]);
            p[2] = bf16_bits_to_float(pc[8 * kST]);
            p[3] = bf16_bits_to_float(pc[9 * kST]);
          }
          a[m][0] = scale_bf16x2(a[m][0], p[0], p[1]);
          a[m][1] = scale_bf16x2(a[m][1], p[0], p[1]);
          a[m][2] = scale_bf16x2(a[m][2], p[2], p[3]);
          a[m][3] = scale_bf16x2(a[m][3], p[2], p[3]);
        }
      }
      mma_slab<2>(acc, a, vs + kk * 16 * kST, lane);
    }
  }

  // Epilogue: fold the weights in, store bf16 rows, z split into hi + lo (cols 128, 129).
  __nv_bfloat16* sh = state + static_cast<size_t>(head) * kRpad * kNC;
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    if (block_kind(desc[m]) == kNull) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int i = g + 8 * half;
      const float w = feature_weight(desc[m], i);
      uint32_t* row = reinterpret_cast<uint32_t*>(sh + static_cast<size_t>((list0 + m) * 16 + i) * kNC);
#pragma unroll
      for (int n = 0; n < 16; ++n) row[4 * n + t] = pack_bf16x2(acc[m][n][2 * half] * w, acc[m][n][2 * half + 1] * w);
      const float z = acc[m][16][2 * half] * w;
      const float z_hi = __bfloat162float(__float2bfloat16_rn(z));
      row[64 + t] = t == 0 ? pack_bf16x2(z_hi, z - z_hi) : 0u;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Query pass: o_i = acc[0:128] / (acc[128] + acc[129]), acc = sum_r phi_r(x_i) S_pad[r, :].
// REUSE: prefix scalars are kept while consecutive blocks share the prefix column.
// ---------------------------------------------------------------------------------------------

// A fragments of one DEG1/DEG2 block: the Q fragment of column block BB, rows scaled by their
// prefix (px[mt][0] for rows g, px[mt][1] for rows g + 8). BB is a template constant so qf
// stays in registers (a runtime index would send it to local memory).
template <int BB>
__device__ __forceinline__ void scale_q_block(uint32_t (&a)[2][4], const uint32_t (&qf)[2][8][4],
                                              const float (&px)[2][2]) {
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    a[mt][0] = scale_bf16x2(qf[mt][BB][0], px[mt][0], px[mt][0]);
    a[mt][1] = scale_bf16x2(qf[mt][BB][1], px[mt][1], px[mt][1]);
    a[mt][2] = scale_bf16x2(qf[mt][BB][2], px[mt][0], px[mt][0]);
    a[mt][3] = scale_bf16x2(qf[mt][BB][3], px[mt][1], px[mt][1]);
  }
}

template <bool REUSE>
__global__ void __launch_bounds__(kThreads, 1)
    query_pass(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ state,
               __nv_bfloat16* __restrict__ out, int n_tokens) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [256][136]
  __nv_bfloat16* ss = qs + kQueryRows * kST;                        // [3][64][136]
  const int head = blockIdx.y, q0 = blockIdx.x * kQueryRows;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int wrow = warp * 32;  // the warp's first query row in the tile
  const __nv_bfloat16* qh = q + static_cast<size_t>(head) * n_tokens * kD;
  const __nv_bfloat16* sh = state + static_cast<size_t>(head) * kRpad * kNC;

  for (int e = tid; e < kQueryRows * 16; e += kThreads) {
    const int r = e >> 4, c = (e & 15) * 8, tok = q0 + r;
    const bool valid = tok < n_tokens;
    cp_async16(qs + r * kST + c, qh + static_cast<size_t>(valid ? tok : 0) * kD + c, valid);
  }
  *reinterpret_cast<uint4*>(qs + tid * kST + kOnesCol) = make_uint4(kBf16One, 0u, 0u, 0u);  // 1 row per thread
  static_assert(kQueryRows == kThreads, "one ones-column chunk per thread");

  // A state stage is a contiguous run of 64 rows x 272 bytes, the same layout as in smem.
  auto stage_state = [&](int s) {
    __nv_bfloat16* dst = ss + (s % kQueryStages) * kStageRows * kST;
    const __nv_bfloat16* src = sh + static_cast<size_t>(s) * kStageRows * kNC;
    const int rows = kRpad - s * kStageRows < kStageRows ? kRpad - s * kStageRows : kStageRows;
    const int chunks = rows * (kNC / 8);
    for (int e = tid; e < chunks; e += kThreads) cp_async16(dst + e * 8, src + e * 8, true);
  };
  static_assert(kST == kNC, "state stages are copied as contiguous bytes");
  stage_state(0);
  cp_async_commit();  // group 0: Q tile + stage 0
  stage_state(1);
  cp_async_commit();  // group 1: stage 1
  cp_async_wait<1>();
  __syncthreads();

  // Q fragments of the warp's 2 m-tiles x 8 column blocks stay in registers (64 regs):
  // matrix 0 = rows 0..7 x cols +0..7, 1 = rows 8..15, 2 and 3 = cols +8..15.
  uint32_t qf[2][8][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int cb = 0; cb < 8; ++cb)
      ldsm_x4(qf[mt][cb], qs + (wrow + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kST + cb * 16 + (lane >> 4) * 8);

  float acc[2][kNT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < kNT; ++n) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;

  const uint16_t* qbits = reinterpret_cast<const uint16_t*>(qs);
  float px[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
  int px_col = -1;
  for (int s = 0; s < kNumStateStages; ++s) {
    if (s > 0) {
      // Stage s has landed, and every warp is done with stage s - 1's buffer (refilled below).
      cp_async_wait<1>();
      __syncthreads();
    }
    if (s + 2 < kNumStateStages) stage_state(s + 2);
    cp_async_commit();
    const __nv_bfloat16* sbuf = ss + (s % kQueryStages) * kStageRows * kST;
    const int nb = kNumBlocks - s * kStageBlocks < kStageBlocks ? kNumBlocks - s * kStageBlocks : kStageBlocks;
    for (int bi = 0; bi < nb; ++bi) {
      const uint32_t d = c_blocks[s * kStageBlocks + bi];
      uint32_t a[2][4];
      if (block_kind(d) == kConst) {
        // Column 0 = 1 for every query: the low half of registers 0 and 1 when t == 0.
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          a[mt][0] = a[mt][1] = t == 0 ? kBf16One : 0u;
          a[mt][2] = a[mt][3] = 0u;
        }
      } else {
        const int col = block_col(d);
        if (!REUSE || col != px_col) {
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            px[mt][0] = bf16_bits_to_float(qbits[(wrow + mt * 16 + g) * kST + col]);
            px[mt][1] = bf16_bits_to_float(qbits[(wrow + mt * 16 + g + 8) * kST + col]);
          }
          px_col = col;
        }
        switch (block_bb(d)) {
          case 0: scale_q_block<0>(a, qf, px); break;
          case 1: scale_q_block<1>(a, qf, px); break;
          case 2: scale_q_block<2>(a, qf, px); break;
          case 3: scale_q_block<3>(a, qf, px); break;
          case 4: scale_q_block<4>(a, qf, px); break;
          case 5: scale_q_block<5>(a, qf, px); break;
          case 6: scale_q_block<6>(a, qf, px); break;
          default: scale_q_block<7>(a, qf, px); break;
        }
      }
      mma_slab<2>(acc, a, sbuf + bi * 16 * kST, lane);
    }
  }

  // Epilogue: den = z_hi part + z_lo part (cols 128, 129 sit with t == 0), shared in the quad.
  __nv_bfloat16* oh = out + static_cast<size_t>(head) * n_tokens * kDV;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float den = __shfl_sync(0xFFFFFFFFu, acc[mt][16][2 * half] + acc[mt][16][2 * half + 1], lane & ~3);
      const float inv = 1.0f / den;
      const int row = q0 + wrow + mt * 16 + g + 8 * half;
      if (row >= n_tokens) continue;
      uint32_t* orow = reinterpret_cast<uint32_t*>(oh + static_cast<size_t>(row) * kDV);
#pragma unroll
      for (int n = 0; n < 16; ++n) orow[4 * n + t] = pack_bf16x2(acc[mt][n][2 * half] * inv, acc[mt][n][2 * half + 1] * inv);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// wgmma (sm_90a) helpers. v4 ran the v2 passes on them unchanged (measured in README.md, then
// removed: commit 04d630b has it); v5 below is the version the library ships. A stays what it was (the
// prefix-scaled ldmatrix fragments, one 16-row block per warp, the mma.sync A layout), but
// the B operand ([v|1] slab or state block) is read by the tensor cores straight from shared
// memory through a descriptor: no B fragments in registers, no per-warp ldmatrix of B, and
// the MMAs run asynchronously while the warp builds the next A. A warpgroup (4 warps) issues
// one m64n136k16 per block slot, i.e. 4 blocks x 136 columns at once.
//
// B layout (no swizzle, MN-major, PTX "canonical layout" ((T,1,m),(8,k)) : ((1,T,SBO),(1T,LBO))
// in 16-byte units): 8x8 core matrices of 8 k rows x 8 columns (16 contiguous bytes per k
// row, 128 bytes per core matrix); core matrix (k-group kg, column group cg) of a staged
// [rows][136] tile sits at (kg * 17 + cg) * 128 bytes: SBO (next column group) = 128 bytes,
// LBO (next k-group) = 17 * 128 = 2176 bytes.
// ---------------------------------------------------------------------------------------------
constexpr uint32_t kCoreSbo = 128, kCoreLbo = kNT * 128;

// Element offset of the 8-value chunk (row r, column group cg) in a core-matrix tile.
__device__ __forceinline__ int core_offset(int r, int cg) { return ((r >> 3) * kNT + cg) * 64 + (r & 7) * 8; }

__device__ __forceinline__ uint64_t core_desc(const void* p) {
  const uint64_t addr = smem_u32(p);
  return ((addr & 0x3FFFFull) >> 4) | static_cast<uint64_t>(kCoreLbo >> 4) << 16 |
         static_cast<uint64_t>(kCoreSbo >> 4) << 32;  // bits 62-63 = 0: no swizzle
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Shared memory written by cp.async or plain stores is read next by the tensor cores (the
// async proxy): each writing thread fences before the barrier that publishes it.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving accumulator registers while wgmmas that own them are in flight.
__device__ __forceinline__ void pin_acc(float (&d)[68]) {
#pragma unroll
  for (int i = 0; i < 68; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D (64 x 136 fp32, the mma.sync C layout per warp and n-tile) += A (64 x 16 bf16, each
// warp's 16 rows in the mma.sync A layout) x B (16 x 136 bf16 by descriptor, MN-major).
__device__ __forceinline__ void wgmma_m64n136k16_rs(float (&d)[68], const uint32_t (&a)[4], uint64_t b_desc,
                                                    int accumulate) {
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
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(accumulate));
}

// The wgmma passes' state ring: 4 stages filled two ahead (a refilled buffer's wgmmas have
// retired); the key passes' tiles use the same depth.
constexpr int kWgQueryStages = 4;

// ---------------------------------------------------------------------------------------------
// v5: v4 with the per-k-step instruction count cut (ncu on v4: 174 instructions per warp and
// k-step in the key pass, 125 per block in the query pass, against 272 tensor-core clocks per
// k-step and SM: issue- and latency-bound at ~30% tensor utilisation).
// - Prefix scaling as bf16x2 multiplies (one mul.rn.bf16x2 per register instead of unpack,
//   two fp32 multiplies and a pack): the same bits, since the fp32 product of two bf16
//   values is exact and both round it once.
// - No per-k-step branches: the key pass's CONST and null blocks run the generic code with
//   the ones column as prefix and column block 8 (cols 128..143 of the staged K tile =
//   [1, 0 x 7, the next row's dims 0..7]): row 0 is the constant feature, rows 1..15 get
//   weight 0 (their inputs are finite: the K tile is followed by its [V|1] tile, always
//   staged). The query pass does the same with its Q tile (col 128 = 1; the CONST block's
//   state rows 1..15 are exactly 0, so the extra columns add 0).
// - The query pass reloads its A fragments by ldmatrix per block (no 64 Q registers, no
//   8-way switch); staging offsets are computed once per thread, not per chunk and tile.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t mul_bf16x2(uint32_t x, uint32_t y) {
  const __nv_bfloat162 r =
      __hmul2_rn(*reinterpret_cast<const __nv_bfloat162*>(&x), *reinterpret_cast<const __nv_bfloat162*>(&y));
  return *reinterpret_cast<const uint32_t*>(&r);
}
__device__ __forceinline__ uint32_t pair_bf16(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
}

__global__ void __launch_bounds__(kThreads, 1)
    key_pass_wg2(const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
                 __nv_bfloat16* __restrict__ state, int n_tokens) {
  constexpr int kStages = 4, kTile = kKeyTile * kST;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const int head = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const __nv_bfloat16* kh = k + static_cast<size_t>(head) * n_tokens * kD;
  const __nv_bfloat16* vh = v + static_cast<size_t>(head) * n_tokens * kDV;

  const int list0 = blockIdx.x * kKeyBlocksPerCta + warp * 2;
  const uint32_t desc[2] = {c_blocks[list0], c_blocks[list0 + 1]};
  int a_off[2], p_off[2];  // element offsets in a stage: the A slab of k-step 0, the prefix of token 2t
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    const bool generic = block_kind(desc[m]) >= kDeg1;
    const int bb = generic ? block_bb(desc[m]) : 8, col = generic ? block_col(desc[m]) : kOnesCol;
    a_off[m] = ((lane & 7) + (lane >> 4) * 8) * kST + 16 * bb + ((lane >> 3) & 1) * 8;
    p_off[m] = 2 * t * kST + col;
  }

  for (int e = tid; e < kStages * kKeyTile; e += kThreads) {
    const int s = e / kKeyTile, r = e % kKeyTile;
    *reinterpret_cast<uint4*>(smem + 2 * s * kTile + r * kST + kOnesCol) = make_uint4(kBf16One, 0u, 0u, 0u);
  }

  // Each thread stages the same chunks of every tile: K rows rk + 16 i (i < 4) at cols ck..,
  // V tokens rv + 16 i of column group cv (8 lanes = 8 tokens of one group: distinct banks).
  const int rk = tid >> 4, ck = (tid & 15) * 8, rv = (tid & 7) + 8 * (tid >> 7), cv = (tid >> 3) & 15;
  const int ks_off = rk * kST + ck, vs_off = kTile + core_offset(rv, cv);
  const int n_tiles = (n_tokens + kKeyTile - 1) / kKeyTile;
  auto stage_tile = [&](int tile, int buf) {
    __nv_bfloat16* base = smem + 2 * buf * kTile;
    const int tok0 = tile * kKeyTile;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int tk = tok0 + rk + 16 * i, tv = tok0 + rv + 16 * i;
      cp_async16(base + ks_off + i * 16 * kST, kh + static_cast<size_t>(tk < n_tokens ? tk : 0) * kD + ck,
                 tk < n_tokens);
      cp_async16(base + vs_off + i * 2 * kNT * 64, vh + static_cast<size_t>(tv < n_tokens ? tv : 0) * kDV + cv * 8,
                 tv < n_tokens);
    }
    if (tid < kKeyTile) {
      *reinterpret_cast<uint4*>(base + kTile + core_offset(tid, 16)) =
          make_uint4(tok0 + tid < n_tokens ? kBf16One : 0u, 0u, 0u, 0u);
    }
  };

  float acc[2][kNT][4];
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int n = 0; n < kNT; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
  float(&acc0)[68] = *reinterpret_cast<float(*)[68]>(&acc[0][0][0]);
  float(&acc1)[68] = *reinterpret_cast<float(*)[68]>(&acc[1][0][0]);

  if (0 < n_tiles) stage_tile(0, 0);
  cp_async_commit();
  if (1 < n_tiles) stage_tile(1, 1);
  cp_async_commit();

  uint32_t a[2][2][4];
  for (int tile = 0; tile < n_tiles; ++tile) {
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    if (tile + 2 < n_tiles) stage_tile(tile + 2, (tile + 2) % kStages);
    cp_async_commit();
    const __nv_bfloat16* st = smem + 2 * (tile % kStages) * kTile;
    const uint16_t* sb = reinterpret_cast<const uint16_t*>(st);
#pragma unroll
    for (int kk = 0; kk < kKeyTile / 16; ++kk) {
      const int ab = kk & 1;
      wgmma_wait<1>();
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        ldsm_x4_trans(a[ab][m], st + kk * 16 * kST + a_off[m]);
        const uint16_t* pc = sb + kk * 16 * kST + p_off[m];
        const uint32_t lo = pair_bf16(pc[0], pc[kST]), hi = pair_bf16(pc[8 * kST], pc[9 * kST]);
        a[ab][m][0] = mul_bf16x2(a[ab][m][0], lo);
        a[ab][m][1] = mul_bf16x2(a[ab][m][1], lo);
        a[ab][m][2] = mul_bf16x2(a[ab][m][2], hi);
        a[ab][m][3] = mul_bf16x2(a[ab][m][3], hi);
      }
      const uint64_t bdesc = core_desc(st + kTile + 2 * kk * kNT * 64);
      wgmma_fence();
      pin_acc(acc0);
      pin_acc(acc1);
      wgmma_m64n136k16_rs(acc0, a[ab][0], bdesc, 1);
      wgmma_m64n136k16_rs(acc1, a[ab][1], bdesc, 1);
      wgmma_commit();
      pin_acc(acc0);
      pin_acc(acc1);
    }
  }
  wgmma_wait<0>();
  pin_acc(acc0);
  pin_acc(acc1);

  __nv_bfloat16* sh = state + static_cast<size_t>(head) * kRpad * kNC;
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    if (block_kind(desc[m]) == kNull) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int i = g + 8 * half;
      const float w = feature_weight(desc[m], i);
      uint32_t* row = reinterpret_cast<uint32_t*>(sh + static_cast<size_t>((list0 + m) * 16 + i) * kNC);
#pragma unroll
      for (int n = 0; n < 16; ++n) row[4 * n + t] = pack_bf16x2(acc[m][n][2 * half] * w, acc[m][n][2 * half + 1] * w);
      const float z = acc[m][16][2 * half] * w;
      const float z_hi = __bfloat162float(__float2bfloat16_rn(z));
      row[64 + t] = t == 0 ? pack_bf16x2(z_hi, z - z_hi) : 0u;
    }
  }
}

__global__ void __launch_bounds__(kThreads, 1)
    query_pass_wg2(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ state,
                   __nv_bfloat16* __restrict__ out, int n_tokens) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [256][136]
  __nv_bfloat16* ss = qs + kQueryRows * kST;                        // [4][64 rows in core layout]
  const int head = blockIdx.y, q0 = blockIdx.x * kQueryRows;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int wrow = (warp >> 2) * 128 + (warp & 3) * 16;
  const __nv_bfloat16* qh = q + static_cast<size_t>(head) * n_tokens * kD;
  const __nv_bfloat16* sh = state + static_cast<size_t>(head) * kRpad * kNC;

  for (int e = tid; e < kQueryRows * 16; e += kThreads) {
    const int r = e >> 4, c = (e & 15) * 8, tok = q0 + r;
    const bool valid = tok < n_tokens;
    cp_async16(qs + r * kST + c, qh + static_cast<size_t>(valid ? tok : 0) * kD + c, valid);
  }
  *reinterpret_cast<uint4*>(qs + tid * kST + kOnesCol) = make_uint4(kBf16One, 0u, 0u, 0u);

  // Chunk e = tid + 256 i (i < 5) of a stage: row (e & 7) + 8 ((e >> 3) / 17), column group
  // (e >> 3) % 17; offsets (smem | global << 16, elements) computed once.
  constexpr int kChunksPerThread = (kStageRows * kNT + kThreads - 1) / kThreads;  // 5
  uint32_t chunk_off[kChunksPerThread];
#pragma unroll
  for (int i = 0; i < kChunksPerThread; ++i) {
    const int e = tid + i * kThreads, rest = e >> 3, cg = rest % kNT, r = (e & 7) | ((rest / kNT) << 3);
    chunk_off[i] = static_cast<uint32_t>(core_offset(r, cg)) | static_cast<uint32_t>(r * kNC + cg * 8) << 16;
  }
  auto stage_state = [&](int s) {
    __nv_bfloat16* dst = ss + (s % kWgQueryStages) * kStageRows * kST;
    const __nv_bfloat16* src = sh + static_cast<size_t>(s) * kStageRows * kNC;
    const int chunks = (kRpad - s * kStageRows < kStageRows ? kRpad - s * kStageRows : kStageRows) * kNT;
#pragma unroll
    for (int i = 0; i < kChunksPerThread; ++i)
      if (tid + i * kThreads < chunks) cp_async16(dst + (chunk_off[i] & 0xFFFFu), src + (chunk_off[i] >> 16), true);
  };
  stage_state(0);
  cp_async_commit();
  stage_state(1);
  cp_async_commit();

  float acc[2][kNT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < kNT; ++n) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;
  float(&acc0)[68] = *reinterpret_cast<float(*)[68]>(&acc[0][0][0]);
  float(&acc1)[68] = *reinterpret_cast<float(*)[68]>(&acc[1][0][0]);

  const uint16_t* qbits = reinterpret_cast<const uint16_t*>(qs);
  int a_base[2], p_base[2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    a_base[mt] = (wrow + mt * 64 + (lane & 7) + ((lane >> 3) & 1) * 8) * kST + (lane >> 4) * 8;
    p_base[mt] = (wrow + mt * 64 + g) * kST;
  }
  uint32_t a[2][2][4];
  for (int s = 0; s < kNumStateStages; ++s) {
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    if (s + 2 < kNumStateStages) stage_state(s + 2);
    cp_async_commit();
    const __nv_bfloat16* sbuf = ss + (s % kWgQueryStages) * kStageRows * kST;
    // The last stage has one block; its other slots run as null blocks (A = 0 through the
    // zero column 129 as prefix) on stale but finite rows: skipping them would make ptxas
    // serialize every wgmma (C7513). The list is padded with null blocks to 592.
#pragma unroll
    for (int bi = 0; bi < kStageBlocks; ++bi) {
      const int ab = bi & 1;
      wgmma_wait<1>();
      const uint32_t d = c_blocks[s * kStageBlocks + bi];
      const uint32_t kind = block_kind(d);
      const int bb = kind >= kDeg1 ? block_bb(d) : 8;
      const int col = kind >= kDeg1 ? block_col(d) : (kind == kConst ? kOnesCol : kOnesCol + 1);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        ldsm_x4(a[ab][mt], qs + a_base[mt] + bb * 16);
        const uint32_t p0 = qbits[p_base[mt] + col] * 0x10001u, p1 = qbits[p_base[mt] + 8 * kST + col] * 0x10001u;
        a[ab][mt][0] = mul_bf16x2(a[ab][mt][0], p0);
        a[ab][mt][1] = mul_bf16x2(a[ab][mt][1], p1);
        a[ab][mt][2] = mul_bf16x2(a[ab][mt][2], p0);
        a[ab][mt][3] = mul_bf16x2(a[ab][mt][3], p1);
      }
      const uint64_t bdesc = core_desc(sbuf + 2 * bi * kNT * 64);
      wgmma_fence();
      pin_acc(acc0);
      pin_acc(acc1);
      wgmma_m64n136k16_rs(acc0, a[ab][0], bdesc, 1);
      wgmma_m64n136k16_rs(acc1, a[ab][1], bdesc, 1);
      wgmma_commit();
      pin_acc(acc0);
      pin_acc(acc1);
    }
  }
  wgmma_wait<0>();
  pin_acc(acc0);
  pin_acc(acc1);

  __nv_bfloat16* oh = out + static_cast<size_t>(head) * n_tokens * kDV;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float den = __shfl_sync(0xFFFFFFFFu, acc[mt][16][2 * half] + acc[mt][16][2 * half + 1], lane & ~3);
      const float inv = 1.0f / den;
      const int row = q0 + wrow + mt * 64 + g + 8 * half;
      if (row >= n_tokens) continue;
      uint32_t* orow = reinterpret_cast<uint32_t*>(oh + static_cast<size_t>(row) * kDV);
#pragma unroll
      for (int n = 0; n < 16; ++n) orow[4 * n + t] = pack_bf16x2(acc[mt][n][2 * half] * inv, acc[mt][n][2 * half + 1] * inv);
    }
  }
}

// Seeded N(0, std^2) bf16 values from a counter-based hash (splitmix64) and Box-Muller: the
// same inputs for every version and run, generated on the device in milliseconds.
__host__ __device__ inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__global__ void fill_normal(__nv_bfloat16* x, size_t count, float stddev, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint64_t key = splitmix64(seed);  // decorrelates streams whose seeds differ in a few bits
    const uint64_t h1 = splitmix64(key + 2 * i), h2 = splitmix64(key + 2 * i + 1);
    const float u1 = (static_cast<float>(h1 >> 40) + 1.0f) * 0x1p-24f;  // (0, 1]
    const float u2 = static_cast<float>(h2 >> 40) * 0x1p-24f;           // [0, 1)
    x[i] = __float2bfloat16_rn(stddev * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.
// ---------------------------------------------------------------------------------------------
#define CUDA_CHECK(call)                                                                      \
  do {                                                                                        \
    const cudaError_t err_ = (call);                                                          \
    if (err_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
      std::exit(2);                                                                           \
    }                                                                                         \
  } while (0)

float bf16_to_float_host(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Block list. Order is free (state rows follow it; both passes read the same list); it is
// chosen so that pairs (2w, 2w + 1) share their prefix column as often as possible (256 of
// 292 pairs; the key pass's REUSE) and runs of one prefix column are consecutive (the query
// pass's REUSE): DEG2 columns a with an even block count 8 - a/16, then the others without
// their bb = 7 block, then CONST and DEG1, then the left-over (a, 7) blocks.
std::vector<uint32_t> build_block_list() {
  std::vector<uint32_t> list;
  auto count = [](int a) { return 8 - a / 16; };
  for (int a = 0; a < kD; ++a)
    if (count(a) % 2 == 0)
      for (int bb = a / 16; bb < 8; ++bb) list.push_back(encode_block(kDeg2, a, bb));
  for (int a = 0; a < kD; ++a)
    if (count(a) % 2 == 1)
      for (int bb = a / 16; bb < 7; ++bb) list.push_back(encode_block(kDeg2, a, bb));
  list.push_back(encode_block(kConst, 0, 0));
  for (int bb = 0; bb < 8; ++bb) list.push_back(encode_block(kDeg1, kOnesCol, bb));
  for (int a = 0; a < kD; ++a)
    if (count(a) % 2 == 1) list.push_back(encode_block(kDeg2, a, 7));
  return list;
}

// Every feature of T_3 exactly once with its weight: fails loudly on a list-building slip.
bool check_block_list(const std::vector<uint32_t>& list, std::string* why) {
  if (list.size() != static_cast<size_t>(kNumBlocks)) {
    *why = "block list has " + std::to_string(list.size()) + " blocks, expected " + std::to_string(kNumBlocks);
    return false;
  }
  std::vector<int> deg2(kD * kD, 0), deg1(kD, 0);
  int consts = 0, real = 0;
  for (uint32_t d : list) {
    for (int i = 0; i < 16; ++i) {
      const float w = feature_weight(d, i);
      if (w == 0.0f) continue;
      ++real;
      const int b = 16 * block_bb(d) + i;
      if (block_kind(d) == kConst) ++consts;
      if (block_kind(d) == kDeg1) ++deg1[b];
      if (block_kind(d) == kDeg2) ++deg2[block_col(d) * kD + b];
    }
  }
  bool ok = consts == 1 && real == kR;
  for (int b = 0; b < kD; ++b) ok = ok && deg1[b] == 1;
  for (int a = 0; a < kD; ++a)
    for (int b = 0; b < kD; ++b) ok = ok && deg2[a * kD + b] == (b >= a ? 1 : 0);
  if (!ok) *why = "block list does not hold each feature of T_3 once (" + std::to_string(real) + " real rows)";
  return ok;
}

struct Options {
  int tokens = 16896, heads = 24, iters = 7, check_rows = 64, version = 0;
  uint64_t seed = 20261127;
};

void usage() {
  std::printf(
      "prefix_block: P=3 Taylor attention key/query pass ladder (d = dv = 128, bf16)\n"
      "  --tokens N      tokens per head (default 16896)\n"
      "  --heads H       heads (default 24)\n"
      "  --iters I       timed launches per kernel, median reported (default 7)\n"
      "  --check-rows C  sampled query rows checked per checked head (default 64)\n"
      "  --version V     1, 2, 3 or 5 runs one version (v4 was removed), 0 (default) runs the whole ladder\n"
      "  --seed S        input seed (default 20261127)\n");
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage();
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", arg.c_str());
      return false;
    }
    const char* val = argv[++i];
    if (arg == "--tokens") o->tokens = std::atoi(val);
    else if (arg == "--heads") o->heads = std::atoi(val);
    else if (arg == "--iters") o->iters = std::atoi(val);
    else if (arg == "--check-rows") o->check_rows = std::atoi(val);
    else if (arg == "--version") o->version = std::atoi(val);
    else if (arg == "--seed") o->seed = std::strtoull(val, nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s (see --help)\n", arg.c_str());
      return false;
    }
  }
  if (o->tokens < 1 || o->heads < 1 || o->iters < 1 || o->check_rows < 1) {
    std::fprintf(stderr, "--tokens, --heads, --iters and --check-rows must be >= 1\n");
    return false;
  }
  if (o->version < 0 || o->version > 5 || o->version == 4) {
    std::fprintf(stderr, "--version must be 0 (all), 1, 2, 3 or 5, got %d\n", o->version);
    return false;
  }
  return true;
}

struct Version {
  int id;
  const char* what;
  void (*key)(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*, int);
  void (*query)(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*, int);
  int key_smem;
  int query_smem;
};

constexpr int key_smem_bytes(int stages) { return stages * 2 * kKeyTile * kST * 2; }
constexpr int kQuerySmem = (kQueryRows + kQueryStages * kStageRows) * kST * 2;
constexpr int kWgQuerySmem = (kQueryRows + kWgQueryStages * kStageRows) * kST * 2;

const Version kLadder[] = {
    {1, "key: 2-stage 64-token tiles; query: 3-stage state ring", key_pass<2, false>, query_pass<false>,
     key_smem_bytes(2), kQuerySmem},
    {2, "v1 + 3-stage key tiles", key_pass<3, false>, query_pass<false>, key_smem_bytes(3), kQuerySmem},
    {3, "v2 + prefix scalars reused across blocks sharing the prefix column", key_pass<3, true>,
     query_pass<true>, key_smem_bytes(3), kQuerySmem},
    {5, "v4 with bf16x2 prefix products, no per-step branches, A reloaded per block in the query pass",
     key_pass_wg2, query_pass_wg2, key_smem_bytes(4), kWgQuerySmem},
};

// Host copies of one head's inputs as floats (exact: they are bf16 values).
struct HeadInputs {
  std::vector<float> q, k, v;  // [N][128]
};

HeadInputs fetch_head(const __nv_bfloat16* dq, const __nv_bfloat16* dk, const __nv_bfloat16* dv, int head, int n) {
  const size_t count = static_cast<size_t>(n) * kD, off = static_cast<size_t>(head) * count;
  std::vector<uint16_t> bits(count);
  HeadInputs h;
  auto fetch = [&](const __nv_bfloat16* src, std::vector<float>* dst) {
    CUDA_CHECK(cudaMemcpy(bits.data(), src + off, count * 2, cudaMemcpyDeviceToHost));
    dst->resize(count);
    for (size_t i = 0; i < count; ++i) (*dst)[i] = bf16_to_float_host(bits[i]);
  };
  fetch(dq, &h.q);
  fetch(dk, &h.k);
  fetch(dv, &h.v);
  return h;
}

// fp64 state rows of head 0 for a chosen set of list positions: ref[c] = w sum_j phi(y_j) [v_j, 1]_c,
// and the sum of squared terms (the scale of the bf16 feature-rounding error).
struct StateRef {
  int list_pos, i;
  double w;
  std::vector<double> ref, ss;  // 129 columns: 128 values + z
};

double feature_host(uint32_t d, int i, const float* y) {
  switch (block_kind(d)) {
    case kConst: return i == 0 ? 1.0 : 0.0;
    case kDeg1: return y[16 * block_bb(d) + i];
    case kDeg2: return static_cast<double>(y[block_col(d)]) * y[16 * block_bb(d) + i];
    default: return 0.0;
  }
}

std::vector<StateRef> state_reference(const std::vector<uint32_t>& list, const std::vector<int>& positions,
                                      const HeadInputs& h, int n) {
  std::vector<StateRef> rows;
  for (int pos : positions) {
    for (int i = 0; i < 16; ++i) {
      StateRef r{pos, i, feature_weight(list[pos], i), std::vector<double>(kDV + 1, 0.0), std::vector<double>(kDV + 1, 0.0)};
      if (r.w != 0.0) {
        for (int j = 0; j < n; ++j) {
          const double f = r.w * feature_host(list[pos], i, &h.k[static_cast<size_t>(j) * kD]);
          const float* vj = &h.v[static_cast<size_t>(j) * kDV];
          for (int c = 0; c < kDV; ++c) {
            const double term = f * vj[c];
            r.ref[c] += term;
            r.ss[c] += term * term;
          }
          r.ref[kDV] += f;
          r.ss[kDV] += f * f;
        }
      }
      rows.push_back(std::move(r));
    }
  }
  return rows;
}

// fp64 quadratic Taylor reference: o_i = sum_j T_3(x_i . y_j) v_j / sum_j T_3(x_i . y_j).
std::vector<double> output_reference(const HeadInputs& h, int n, int row) {
  std::vector<double> num(kDV, 0.0);
  double den = 0.0;
  const float* x = &h.q[static_cast<size_t>(row) * kD];
  for (int j = 0; j < n; ++j) {
    const float* y = &h.k[static_cast<size_t>(j) * kD];
    double s = 0.0;
    for (int c = 0; c < kD; ++c) s += static_cast<double>(x[c]) * y[c];
    const double w = 1.0 + s + 0.5 * s * s;
    den += w;
    const float* vj = &h.v[static_cast<size_t>(j) * kDV];
    for (int c = 0; c < kDV; ++c) num[c] += w * vj[c];
  }
  for (double& x2 : num) x2 /= den;
  return num;
}

struct CheckedHead {
  int head;
  HeadInputs in;
  std::vector<int> rows;
  std::vector<std::vector<double>> ref;
};

struct CheckResult {
  bool ok = true;
  double state_worst = 0.0;  // worst |err| / tolerance over the checked state entries
  double out_worst = 0.0;    // worst relative L2 error over the checked query rows
  std::string why;
};

constexpr double kOutTolerance = 1e-2;

CheckResult check_version(const std::vector<uint32_t>& list, const std::vector<StateRef>& sref,
                          const std::vector<CheckedHead>& heads, const std::vector<uint16_t>& state0,
                          const std::vector<std::vector<uint16_t>>& outs, int n) {
  CheckResult res;
  char buf[256];
  // (a) state rows of head 0: real rows within tolerance of fp64, padding rows and the zero
  // columns exactly 0. Tolerance: bf16 unit roundoff u = 2^-8 on the stored value plus 4 u
  // times the root of the summed squared terms (each feature is rounded to bf16 once).
  const double u = std::ldexp(1.0, -8);
  for (const StateRef& r : sref) {
    const uint16_t* row = &state0[static_cast<size_t>(r.list_pos * 16 + r.i) * kNC];
    for (int c = 0; c < kNC; ++c) {
      if (c == kDV + 1 && r.w != 0.0) continue;  // z_lo: checked as part of z_hi + z_lo
      double got = bf16_to_float_host(row[c]);
      if (c == kDV && r.w != 0.0) got += bf16_to_float_host(row[c + 1]);
      const bool must_be_zero = r.w == 0.0 || c > kDV + 1;
      if (!std::isfinite(got) || (must_be_zero && got != 0.0)) {
        std::snprintf(buf, sizeof buf, "state row %d (list %d, kind %u, row %d) col %d = %g, expected %s",
                      r.list_pos * 16 + r.i, r.list_pos, block_kind(list[r.list_pos]), r.i, c, got,
                      must_be_zero ? "exactly 0" : "a finite value");
        res.ok = false;
        res.why = buf;
        return res;
      }
      if (must_be_zero) continue;
      const double tol = u * (std::fabs(r.ref[c]) + 4.0 * std::sqrt(r.ss[c])) + 1e-30;
      const double ratio = std::fabs(got - r.ref[c]) / tol;
      if (ratio > res.state_worst) res.state_worst = ratio;
      if (ratio > 1.0 && res.ok) {
        std::snprintf(buf, sizeof buf, "state row %d (list %d, kind %u, row %d) col %d = %.6g, fp64 %.6g (err/tol %.2f)",
                      r.list_pos * 16 + r.i, r.list_pos, block_kind(list[r.list_pos]), r.i, c, got, r.ref[c], ratio);
        res.ok = false;
        res.why = buf;
      }
    }
  }
  // (b) sampled output rows: relative L2 error against the quadratic Taylor reference; every
  // output of the checked heads must be finite (outputs are pre-filled with NaN).
  for (size_t hi = 0; hi < heads.size(); ++hi) {
    const CheckedHead& ch = heads[hi];
    const std::vector<uint16_t>& o = outs[hi];
    for (size_t e = 0; e < o.size(); ++e) {
      if (!std::isfinite(bf16_to_float_host(o[e]))) {
        std::snprintf(buf, sizeof buf, "head %d output row %zu col %zu is not finite", ch.head, e / kDV, e % kDV);
        res.ok = false;
        res.why = buf;
        return res;
      }
    }
    for (size_t ri = 0; ri < ch.rows.size(); ++ri) {
      double err2 = 0.0, ref2 = 0.0;
      for (int c = 0; c < kDV; ++c) {
        const double got = bf16_to_float_host(o[static_cast<size_t>(ch.rows[ri]) * kDV + c]);
        err2 += (got - ch.ref[ri][c]) * (got - ch.ref[ri][c]);
        ref2 += ch.ref[ri][c] * ch.ref[ri][c];
      }
      const double rel = std::sqrt(err2 / ref2);
      if (!(rel <= res.out_worst)) res.out_worst = rel;  // NaN propagates into the report
      if (!(rel < kOutTolerance) && res.ok) {
        std::snprintf(buf, sizeof buf, "head %d row %d: relative L2 error %.3e >= %.0e", ch.head, ch.rows[ri], rel,
                      kOutTolerance);
        res.ok = false;
        res.why = buf;
      }
    }
  }
  (void)n;
  return res;
}

template <class Launch>
float median_ms(Launch launch, int iters) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  launch();  // warm-up
  launch();
  CUDA_CHECK(cudaGetLastError());
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaEventRecord(start));
    launch();
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[iters / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, &opt)) return 2;
  const int n = opt.tokens, H = opt.heads;

  int dev = 0, driver = 0, runtime = 0;
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  std::printf("device: %s (sm_%d%d, %d SMs), driver %d, runtime %d\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, driver, runtime);
  if (prop.major != 9 || prop.minor != 0) {  // sm_90a code (wgmma: v5) runs on sm_90 only
    std::fprintf(stderr, "built for sm_90a (H100 / H200); device is sm_%d%d\n", prop.major, prop.minor);
    return 2;
  }

  const std::vector<uint32_t> list = build_block_list();
  std::string why;
  if (!check_block_list(list, &why)) {
    std::fprintf(stderr, "FAIL: %s\n", why.c_str());
    return 1;
  }
  std::vector<uint32_t> padded = list;
  padded.resize(kListLen, encode_block(kNull, 0, 0));
  CUDA_CHECK(cudaMemcpyToSymbol(c_blocks, padded.data(), padded.size() * sizeof(uint32_t)));

  // Inputs [H][N][128] bf16, already scaled (x = sqrt(c) q): std 0.35 keeps T_3 > 0 well away
  // from its minimum; v ~ N(0, 1). Guard zones after the state and the output catch overruns.
  const size_t qk_count = static_cast<size_t>(H) * n * kD;
  const size_t state_count = static_cast<size_t>(H) * kRpad * kNC, guard = 256 * kNC;
  __nv_bfloat16 *dq, *dk, *dv, *dstate, *dout;
  CUDA_CHECK(cudaMalloc(&dq, qk_count * 2));
  CUDA_CHECK(cudaMalloc(&dk, qk_count * 2));
  CUDA_CHECK(cudaMalloc(&dv, qk_count * 2));
  CUDA_CHECK(cudaMalloc(&dstate, (state_count + guard) * 2));
  CUDA_CHECK(cudaMalloc(&dout, (qk_count + guard) * 2));
  fill_normal<<<1024, 256>>>(dq, qk_count, 0.35f, opt.seed * 3 + 0);
  fill_normal<<<1024, 256>>>(dk, qk_count, 0.35f, opt.seed * 3 + 1);
  fill_normal<<<1024, 256>>>(dv, qk_count, 1.0f, opt.seed * 3 + 2);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());

  // References, once for all versions. State rows: blocks of every kind, diagonal DEG2 blocks
  // (padding rows below the diagonal), the last DEG2 block, and a few seeded picks.
  std::vector<int> positions;
  auto find = [&](uint32_t d) {
    for (int p = 0; p < kNumBlocks; ++p)
      if (list[p] == d) return p;
    std::fprintf(stderr, "block %08x missing from the list\n", d);
    std::exit(1);
  };
  for (uint32_t d : {encode_block(kConst, 0, 0), encode_block(kDeg1, kOnesCol, 0), encode_block(kDeg1, kOnesCol, 7),
                     encode_block(kDeg2, 0, 0), encode_block(kDeg2, 9, 0), encode_block(kDeg2, 9, 5),
                     encode_block(kDeg2, 70, 4), encode_block(kDeg2, 127, 7), encode_block(kDeg2, 33, 7),
                     encode_block(kDeg2, 100, 6)})
    positions.push_back(find(d));
  uint64_t pick = opt.seed;
  for (int e = 0; e < 4; ++e) positions.push_back(static_cast<int>((pick = splitmix64(pick)) % kNumBlocks));

  std::vector<CheckedHead> heads;
  for (int head : {0, H - 1}) {
    if (!heads.empty() && heads.back().head == head) break;
    CheckedHead ch;
    ch.head = head;
    ch.in = fetch_head(dq, dk, dv, head, n);
    ch.rows = {0, n - 1};
    uint64_t r = opt.seed ^ (0x5151ull * (head + 1));
    while (static_cast<int>(ch.rows.size()) < std::min(opt.check_rows, n)) ch.rows.push_back(static_cast<int>((r = splitmix64(r)) % n));
    if (opt.check_rows < 2) ch.rows.resize(std::min(opt.check_rows, n));
    for (int row : ch.rows) ch.ref.push_back(output_reference(ch.in, n, row));
    heads.push_back(std::move(ch));
  }
  const std::vector<StateRef> sref = state_reference(list, positions, heads[0].in, n);

  const double useful = 4.0 * kR * (kDV + 1) * static_cast<double>(n) * H;  // the issue's formula
  const double pass_flops = useful / 2;
  const double bytes = 4.0 * n * H * kD * 2 + 2.0 * H * kRpad * kNC * 2;  // q, k, v, o + state write/read
  const double floor_compute_ms = useful / 768e12 * 1e3, floor_memory_ms = bytes / 3.0e12 * 1e3;
  std::printf("N=%d H=%d: useful %.3f TFLOP (4*8385*129*N*H), floors: compute %.3f ms (768 TFLOP/s), memory %.3f ms "
              "(%.0f MB at 3.0 TB/s); issued with padding %.3f TFLOP\n",
              n, H, useful * 1e-12, floor_compute_ms, floor_memory_ms, bytes * 1e-6,
              4.0 * kRpad * kNC * static_cast<double>(n) * H * 1e-12);

  const dim3 key_grid(kKeyCtas, H), query_grid((n + kQueryRows - 1) / kQueryRows, H);
  std::vector<uint16_t> base_state, guard_bits(guard);
  std::vector<std::vector<uint16_t>> base_outs;
  bool all_ok = true;
  for (const Version& ver : kLadder) {
    if (opt.version != 0 && opt.version != ver.id) continue;
    CUDA_CHECK(cudaFuncSetAttribute(ver.key, cudaFuncAttributeMaxDynamicSharedMemorySize, ver.key_smem));
    CUDA_CHECK(cudaFuncSetAttribute(ver.query, cudaFuncAttributeMaxDynamicSharedMemorySize, ver.query_smem));
    auto run_key = [&] { ver.key<<<key_grid, kThreads, ver.key_smem>>>(dk, dv, dstate, n); };
    auto run_query = [&] { ver.query<<<query_grid, kThreads, ver.query_smem>>>(dq, dstate, dout, n); };

    // Validate: NaN-filled outputs (0xFFFF), one key + query pass, then the checks.
    CUDA_CHECK(cudaMemset(dstate, 0xFF, (state_count + guard) * 2));
    CUDA_CHECK(cudaMemset(dout, 0xFF, (qk_count + guard) * 2));
    run_key();
    CUDA_CHECK(cudaGetLastError());
    run_query();
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint16_t> state0(static_cast<size_t>(kRpad) * kNC);
    CUDA_CHECK(cudaMemcpy(state0.data(), dstate, state0.size() * 2, cudaMemcpyDeviceToHost));
    std::vector<std::vector<uint16_t>> outs;
    for (const CheckedHead& ch : heads) {
      outs.emplace_back(static_cast<size_t>(n) * kDV);
      CUDA_CHECK(cudaMemcpy(outs.back().data(), dout + static_cast<size_t>(ch.head) * n * kDV, outs.back().size() * 2,
                            cudaMemcpyDeviceToHost));
    }
    CheckResult res = check_version(list, sref, heads, state0, outs, n);
    for (__nv_bfloat16* zone : {dstate + state_count, dout + qk_count}) {
      CUDA_CHECK(cudaMemcpy(guard_bits.data(), zone, guard * 2, cudaMemcpyDeviceToHost));
      if (res.ok && std::any_of(guard_bits.begin(), guard_bits.end(), [](uint16_t b) { return b != 0xFFFFu; })) {
        res.ok = false;
        res.why = zone == dout + qk_count ? "output guard zone overwritten" : "state guard zone overwritten";
      }
    }
    // Same fragments, same accumulation order: every version should match the first bit for bit.
    std::string same = "-";
    if (base_outs.empty()) {
      base_state = state0;
      base_outs = outs;
    } else {
      size_t diff = 0;
      for (size_t e = 0; e < state0.size(); ++e) diff += state0[e] != base_state[e];
      for (size_t hi = 0; hi < outs.size(); ++hi)
        for (size_t e = 0; e < outs[hi].size(); ++e) diff += outs[hi][e] != base_outs[hi][e];
      same = diff == 0 ? "yes" : std::to_string(diff) + " diffs";
    }
    std::printf("v%d (%s): state err/tol max %.3f, output rel L2 max %.3e over %zu rows, bitwise = first: %s -> %s\n",
                ver.id, ver.what, res.state_worst, res.out_worst, heads.size() * heads[0].rows.size(), same.c_str(),
                res.ok ? "PASS" : "FAIL");
    if (!res.ok) {
      std::printf("FAIL v%d: %s\n", ver.id, res.why.c_str());
      all_ok = false;
      break;  // nothing is timed after a failed validation
    }

    const float key_ms = median_ms(run_key, opt.iters);
    const float query_ms = median_ms(run_query, opt.iters);
    const float total = key_ms + query_ms;
    std::printf("| %d | %d | v%d | %.3f | %.3f | %.3f | %.1f | %.1f | %.1f | %.2e | %.3f | %.3f |\n", n, H, ver.id,
                key_ms, query_ms, total, useful / (total * 1e9), pass_flops / (key_ms * 1e9),
                pass_flops / (query_ms * 1e9), res.out_worst, floor_compute_ms, floor_memory_ms);
  }
  CUDA_CHECK(cudaFree(dq));
  CUDA_CHECK(cudaFree(dk));
  CUDA_CHECK(cudaFree(dv));
  CUDA_CHECK(cudaFree(dstate));
  CUDA_CHECK(cudaFree(dout));
  return all_ok ? 0 : 1;
}
