// The "prefix x block" fast path for P = 4 on 32-wide slices (d/G = dv/G = 32: the node's
// defaults d = 128, G = 4), the part host and device share: the half-block list (which the
// key and query kernels walk in the same order, checked at compile time to hold every
// feature of T_4 once with its weight), the kernels' shapes and shared memory, the
// workspace, and the rule that picks these kernels. Plain C++ (host + device under nvcc), so
// host-only tests can check it. Kernels: kernels/pb4_*.cuh. The P = 3 path is
// prefix_block_plan.h; this file follows its structure.
//
// T_4(x.y) = 1 + s + s^2/2 + s^3/6 with s = x.y, x = sign(c) sqrt|c| q, y = sqrt|c| k. Over
// the 32 coordinates the monomial features are const, x_c, x_b x_c (b <= c) and x_a x_b x_c
// (a <= b <= c); the weight of a degree-n monomial is (distinct orderings of its index
// multiset) / n!: degree 2: 1 (b < c), 1/2 (b = c); degree 3: 1 (all distinct), 1/2 (two
// equal), 1/6 (all equal). R = C(35, 3) = 6,545 features per slice.
//
// Half-blocks. A state block is 16 rows = two independent halves of 8 rows. A half is a
// prefix pair (a, b) and an 8-wide coordinate block cb: its row i is x_a x_b x_{8 cb + i}.
// The staged q/k tiles carry col 32 = 1.0 and cols 33..39 = 0, so
//
// | half | count | (a, b, cb) | row i | weight folded into the state row |
// | DEG3 | 1,000 | a <= b < 32, cb = b/8 .. 3 | x_a x_b x_c, c = 8 cb + i | 1, 1/2, 1/6 by multiplicity; 0 for c < b |
// | DEG2 | 80 | (32, b < 32, cb = b/8 .. 3) | x_b x_c | 1 (c > b), 1/2 (c = b), 0 (c < b) |
// | DEG1 | 4 | (32, 32, cb = 0 .. 3) | x_c | 1 |
// | CONST | 1 | (32, 32, 4) | cols 32..39 = [1, 0 x 7]: row 0 = 1, rows 1..7 = 0 | 1 (row 0), 0 |
// | NULL | 1 + 2 | (32, 32, 4) | as CONST | 0 |
//
// so every half runs the same code (a prefix of exact 1.0 for DEG1/DEG2/CONST). 1,085 real
// halves + 1 null = 543 blocks = 8,688 state rows for 6,545 features (1.33x padding; 16-row
// blocks of one prefix would need 1.75x). The key passes' CTAs (17 of 32 blocks, or 12 of
// 48) add null blocks; only the first, block 543, has state rows (zero, on the wgmma path:
// kPb4StateRows). The state S_pad [8688 (8704)][40] is bf16 with the weights folded in:
// columns 0..31 = sum_j w phi(y_j) v_j, 32 = z_hi = bf16(z), 33 = z_lo = bf16(z - z_hi),
// 34..39 = 0 (as the P = 3 path's columns 128 / 129).
//
// Rounding. A prefix p = x_a x_b is the product of two bf16 coordinates rounded to bf16 once
// (bf16x2 multiply), the feature p x_c is rounded once more: degree-3 features are rounded
// twice (|error| <= ~2^-8 relative), degree-2 ones once (p = 1 x_b is exact), degree-1 and
// const not at all. Key side and query side round alike; the probe forms the same values.
#pragma once

#include <cstdint>

#include "core/problem.h"
#include "cuda/host_device.h"
#include "taylor_attention/taylor_attention.h"

namespace ta::cuda {

inline constexpr int kPb4Dim = 32;                                 // q/k slice width
inline constexpr int kPb4ValueDim = 32;                            // value slice width
inline constexpr int kPb4Cols = 40;                                // state columns: 32 values, z_hi, z_lo, 6 zeros
inline constexpr int kPb4OnesCol = 32;                             // staged q/k tiles hold 1.0 here, 0 in cols 33..39
inline constexpr int kPb4ConstCb = 4;                              // coordinate block 4 = cols 32..39 = [1, 0 x 7]
inline constexpr int kPb4RealHalves = 1000 + 80 + 4 + 1;           // DEG3, DEG2, DEG1, CONST
inline constexpr int kPb4Blocks = (kPb4RealHalves + 1) / 2;        // 543: one null half pads the last block
inline constexpr int kPb4Rows = 16 * kPb4Blocks;                   // 8,688 state rows
inline constexpr int kPb4Features = 6545;                          // C(35, 3): the real ones
inline constexpr int kPb4KeyWarpBlocks = 4;                        // key pass: blocks per warp (80 fp32 accumulators)
inline constexpr int kPb4KeyBlocksPerCta = 8 * kPb4KeyWarpBlocks;  // 8 warps
inline constexpr int kPb4KeyCtas = (kPb4Blocks + kPb4KeyBlocksPerCta - 1) / kPb4KeyBlocksPerCta;  // 17 per unit
// The key pass staged by bulk copies (kernels/pb4_key_pass_bulk.cuh, the wgmma path) runs 12
// warps of the same 4 blocks each: 12 CTAs per unit.
inline constexpr int kPb4BulkWarps = 12;
inline constexpr int kPb4BulkBlocksPerCta = kPb4BulkWarps * kPb4KeyWarpBlocks;
inline constexpr int kPb4BulkCtas = (kPb4Blocks + kPb4BulkBlocksPerCta - 1) / kPb4BulkBlocksPerCta;  // 12 per unit
// Null halves at the end, up to the larger of the two CTA grids (12 x 48 blocks).
inline constexpr int kPb4ListHalves = 2 * (kPb4KeyCtas * kPb4KeyBlocksPerCta > kPb4BulkCtas * kPb4BulkBlocksPerCta
                                               ? kPb4KeyCtas * kPb4KeyBlocksPerCta
                                               : kPb4BulkCtas * kPb4BulkBlocksPerCta);
static_assert(kPb4Blocks == 543 && kPb4KeyCtas == 17 && kPb4BulkCtas == 12 && kPb4ListHalves == 1152,
              "the design's counts");

// A half descriptor: kind << 24 | col_a << 16 | col_b << 8 | cb; 32 is the ones column
// (DEG2 = (32, b), DEG1 / CONST / NULL = (32, 32)). The prefix pair (col_a, col_b) is bits
// 8..23 (pb4_pair), compared by the kernels to reuse a prefix product across consecutive
// halves.
enum Pb4Kind : uint32_t { kPb4Null = 0, kPb4Const = 1, kPb4Deg1 = 2, kPb4Deg2 = 3, kPb4Deg3 = 4 };

TA_HD constexpr uint32_t pb4_encode(uint32_t kind, uint32_t a, uint32_t b, uint32_t cb) {
  return kind << 24 | a << 16 | b << 8 | cb;
}
TA_HD constexpr uint32_t pb4_kind(uint32_t d) { return d >> 24; }
TA_HD constexpr int pb4_col_a(uint32_t d) { return static_cast<int>((d >> 16) & 0xFFu); }
TA_HD constexpr int pb4_col_b(uint32_t d) { return static_cast<int>((d >> 8) & 0xFFu); }
TA_HD constexpr int pb4_cb(uint32_t d) { return static_cast<int>(d & 0xFFu); }
TA_HD constexpr uint32_t pb4_pair(uint32_t d) { return (d >> 8) & 0xFFFFu; }

// Weight folded into row i of a half (coordinate c = 8 cb + i); 0 marks a padding row.
TA_HD constexpr float pb4_weight(uint32_t d, int i) {
  const uint32_t kind = pb4_kind(d);
  const int a = pb4_col_a(d), b = pb4_col_b(d), c = 8 * pb4_cb(d) + i;
  if (kind == kPb4Const) return i == 0 ? 1.0f : 0.0f;
  if (kind == kPb4Deg1) return 1.0f;
  if (kind == kPb4Deg2) return c > b ? 1.0f : (c == b ? 0.5f : 0.0f);
  if (kind == kPb4Deg3) {
    if (c < b) return 0.0f;
    if (a == b && b == c) return 1.0f / 6.0f;
    if (a == b || b == c) return 0.5f;
    return 1.0f;
  }
  return 0.0f;
}

struct Pb4HalfList {
  uint32_t d[kPb4ListHalves];
};

// Order: halves of one prefix pair next to each other (cb ascending), pairs in (a, b)
// order, so consecutive halves, in one block or in a warp's run of blocks, mostly share
// their prefix product (the kernels recompute it only when the pair changes: 561 distinct
// pairs for 1,085 halves). DEG3, then DEG2, DEG1, CONST, then null halves.
constexpr Pb4HalfList pb4_half_list() {
  Pb4HalfList l{};
  int n = 0;
  for (uint32_t a = 0; a < kPb4Dim; ++a)
    for (uint32_t b = a; b < kPb4Dim; ++b)
      for (uint32_t cb = b / 8; cb < 4; ++cb) l.d[n++] = pb4_encode(kPb4Deg3, a, b, cb);
  for (uint32_t b = 0; b < kPb4Dim; ++b)
    for (uint32_t cb = b / 8; cb < 4; ++cb) l.d[n++] = pb4_encode(kPb4Deg2, kPb4OnesCol, b, cb);
  for (uint32_t cb = 0; cb < 4; ++cb) l.d[n++] = pb4_encode(kPb4Deg1, kPb4OnesCol, kPb4OnesCol, cb);
  l.d[n++] = pb4_encode(kPb4Const, kPb4OnesCol, kPb4OnesCol, kPb4ConstCb);
  while (n < kPb4ListHalves) l.d[n++] = pb4_encode(kPb4Null, kPb4OnesCol, kPb4OnesCol, kPb4ConstCb);
  return l;
}

// Every feature of T_4 exactly once with its weight; real halves first, null halves after
// them; every descriptor in range (cols <= 32, cb <= 4, DEG3 with col_a <= col_b): a list-building
// slip fails the build (static_assert below).
constexpr bool pb4_list_complete(const Pb4HalfList& l) {
  int deg3[kPb4Dim * kPb4Dim * kPb4Dim] = {}, deg2[kPb4Dim * kPb4Dim] = {}, deg1[kPb4Dim] = {};
  int consts = 0, real = 0;
  for (int h = 0; h < kPb4ListHalves; ++h) {
    const uint32_t d = l.d[h];
    const uint32_t kind = pb4_kind(d);
    const int a = pb4_col_a(d), b = pb4_col_b(d), cb = pb4_cb(d);
    if ((h < kPb4RealHalves) != (kind != kPb4Null)) return false;
    if (kind > kPb4Deg3 || a > kPb4OnesCol || b > kPb4OnesCol || cb > kPb4ConstCb) return false;
    if (kind == kPb4Deg3 && a > b) return false;
    if ((kind == kPb4Deg3) != (a < kPb4Dim)) return false;                      // only DEG3 has a real a,
    if ((kind == kPb4Deg3 || kind == kPb4Deg2) != (b < kPb4Dim)) return false;  // DEG3 and DEG2 a real b
    if ((kind == kPb4Const || kind == kPb4Null) != (cb == kPb4ConstCb)) return false;
    for (int i = 0; i < 8; ++i) {
      const float w = pb4_weight(d, i);
      if (w == 0.0f) continue;
      ++real;
      const int c = 8 * cb + i;
      if (kind == kPb4Const) {
        ++consts;
      } else if (kind == kPb4Deg1) {
        ++deg1[c];
      } else if (kind == kPb4Deg2) {
        if (w != (c == b ? 0.5f : 1.0f)) return false;
        ++deg2[b * kPb4Dim + c];
      } else if (kind == kPb4Deg3) {
        const int equal = (a == b ? 1 : 0) + (b == c ? 1 : 0);
        if (w != (equal == 2 ? 1.0f / 6.0f : equal == 1 ? 0.5f : 1.0f)) return false;
        ++deg3[(a * kPb4Dim + b) * kPb4Dim + c];
      }
    }
  }
  bool ok = consts == 1 && real == kPb4Features;
  for (int c = 0; c < kPb4Dim; ++c) ok = ok && deg1[c] == 1;
  for (int b = 0; b < kPb4Dim; ++b)
    for (int c = 0; c < kPb4Dim; ++c) ok = ok && deg2[b * kPb4Dim + c] == (c >= b ? 1 : 0);
  for (int a = 0; a < kPb4Dim; ++a)
    for (int b = 0; b < kPb4Dim; ++b)
      for (int c = 0; c < kPb4Dim; ++c) ok = ok && deg3[(a * kPb4Dim + b) * kPb4Dim + c] == (a <= b && b <= c ? 1 : 0);
  return ok;
}
static_assert(pb4_list_complete(pb4_half_list()), "the half list must hold each feature of T_4 once");

// ---- kernel shapes and shared memory ----------------------------------------------------
//
// Bank arithmetic for ldmatrix (8 rows of 16 bytes per 8x8 matrix, one wavefront when the 8
// row addresses fall in distinct 16-byte bank groups, i.e. distinct values of (addr / 16) mod
// 8): a row stride of 16 (2k + 1) bytes maps rows 0..7 to (2k + 1) r mod 8, a permutation.
//   80-byte rows (40 bf16: Q tile, value tile, state): 5 r mod 8 = 0 5 2 7 4 1 6 3.
//   144-byte rows (72 bf16: the transposed key tile):  9 r mod 8 = 0 1 2 ... 7.

inline constexpr int kPb4Threads = 256;  // 8 warps in both passes
inline constexpr int kPb4Stride = 40;    // bf16 row stride of the Q tile, the [v|1] tile and the state
static_assert((kPb4Stride * 2) % 32 == 16, "80-byte rows: the 8 rows of an ldmatrix 8x8 hit distinct banks");
inline constexpr int kPb4KeyTile = 64;                // tokens per key tile (4 k-steps of 16)
inline constexpr int kPb4KeyStages = 3;               // key tiles in flight in the cp.async ring
inline constexpr int kPb4YtStride = kPb4KeyTile + 8;  // transposed y tile [40 dims][72]: 144-byte rows
static_assert((kPb4YtStride * 2) % 32 == 16, "144-byte rows: the 8 rows of an ldmatrix 8x8 hit distinct banks");
inline constexpr int kPb4QueryRows = 256;  // queries per query-pass CTA: 8 warps x 2 m16 tiles
inline constexpr int kPb4StageBlocks = 8;  // state blocks (128 rows, 10 KB) per query-pass stage
inline constexpr int kPb4QueryRing = 3;    // state stages in the query pass's cp.async ring

// Key pass, per ring stage: yT [40][72] (dims x tokens; rows 32..39 constant [1, 0 x 7]),
// yP [33][64] (the prefix copy: tokens permuted within each 16, row 32 constant 1.0), and
// the [v|1] tile [64][40].
TA_HD constexpr int pb4_key_stage_bytes() {
  return (40 * kPb4YtStride + 33 * kPb4KeyTile + kPb4KeyTile * kPb4Stride) * 2;
}
TA_HD constexpr int pb4_key_smem() { return kPb4KeyStages * pb4_key_stage_bytes(); }
// Query pass: the Q tile [256][40], its prefix copy xP [33][256] (rows permuted per thread)
// and a ring of 3 stages of 16 x kPb4StageBlocks state rows.
TA_HD constexpr int pb4_query_smem() {
  return (kPb4QueryRows * kPb4Stride + 33 * kPb4QueryRows + kPb4QueryRing * 16 * kPb4StageBlocks * kPb4Stride) * 2;
}
TA_HD constexpr int pb4_smem() { return pb4_key_smem() > pb4_query_smem() ? pb4_key_smem() : pb4_query_smem(); }
static_assert(pb4_key_stage_bytes() % 16 == 0, "ring stages start 16-byte aligned (cp.async, ldmatrix)");
static_assert(pb4_key_smem() == 45312 && pb4_query_smem() == 68096, "the shapes documented in kernels/pb4_*.cuh");
static_assert(pb4_smem() <= 101376, "one shape for every card: fits 99 KB of opt-in shared memory");

// The wgmma query pass (Hopper, sm_90a builds: kernels/pb4_wg_query_pass.cuh; the key pass
// stays mma.sync): a 4-stage state ring filled two ahead by bulk copies on one mbarrier per
// stage, so a buffer is refilled only after the wgmmas that read it retired.
inline constexpr int kPb4WgStages = 4;
TA_HD constexpr int pb4_wg_query_smem() {
  return (kPb4QueryRows * kPb4Stride + 33 * kPb4QueryRows + kPb4WgStages * 16 * kPb4StageBlocks * kPb4Stride) * 2 +
         8 * kPb4WgStages;  // the stages' mbarriers
}
TA_HD constexpr int pb4_wg_smem() {
  return pb4_key_smem() > pb4_wg_query_smem() ? pb4_key_smem() : pb4_wg_query_smem();
}
static_assert(pb4_wg_query_smem() == 78368, "the shape of kernels/pb4_wg_query_pass.cuh");

// The key pass staged by bulk copies on that path (kernels/pb4_key_pass_bulk.cuh): a ring of
// kPb4BulkStages stages (pb4_key_stage_bytes each) filled kPb4BulkAhead tiles ahead, then a
// "full" and an "empty" mbarrier per stage.
inline constexpr int kPb4BulkStages = 6;
inline constexpr int kPb4BulkAhead = kPb4BulkStages - 2;
TA_HD constexpr int pb4_bulk_smem() { return kPb4BulkStages * pb4_key_stage_bytes() + 2 * kPb4BulkStages * 8; }
static_assert(pb4_bulk_smem() == 90720, "89 KB: within every wgmma card's 227 KB");

// The rule: tensor cores allowed (not force_fp32), P = 4, slices of exactly 32 q/k and 32
// value dims (d = 32 G, dv = 32 G), and the device's opt-in shared memory per block holds
// the kernels. select_pass_kernels (prefix_block_plan.h) asks this first.
inline bool pb4_applies(const Problem& p, const ta_config& c, int64_t smem_optin) {
  return !c.force_fp32 && p.P == 4 && p.ds == kPb4Dim && p.dvs == kPb4ValueDim && smem_optin >= pb4_smem();
}

// ---- workspace ----------------------------------------------------------------------------

// Bytes per unit of a batch: the state S_pad (bf16, kPb4StateRows), and the prepared keys per 64-token tile
// (padding tokens zero): yT [32][72] then yP [32][64] (bf16(sqrt|c| k / norm), transposed;
// yP with tokens permuted) and the value rows [v | 1 | 0 x 7] [64][40] (masked keys zero).
// yT is stored with the ring's 144-byte rows (the 8 pad columns zero), so yT and yP of a tile
// are one run of 8,704 bytes shaped as the start of a ring stage: one bulk copy can stage
// yT, another yP (kernels/pb4_key_pass_bulk.cuh).
inline constexpr int kPb4YtElems = kPb4Dim * kPb4YtStride;                 // yT [32][72]
inline constexpr int kPb4TileElems = kPb4YtElems + kPb4Dim * kPb4KeyTile;  // + yP [32][64]: 4,352 bf16
TA_HD constexpr int64_t pb4_key_tiles(int64_t Nk) { return (Nk + kPb4KeyTile - 1) / kPb4KeyTile; }
// S_pad holds whole query-pass stages of kPb4StageBlocks blocks: 68 x 128 = 8,704 rows, the
// last 16 (the list's null block 543) zero on the wgmma path, whose query pass stages the
// state by one bulk copy per stage (kernels/pb4_wg_query_pass.cuh).
inline constexpr int kPb4StateRows =
    (kPb4Blocks + kPb4StageBlocks - 1) / kPb4StageBlocks * kPb4StageBlocks * 16;
static_assert(kPb4StateRows == 8704 && kPb4StateRows / 16 <= kPb4KeyCtas * kPb4KeyBlocksPerCta &&
                  kPb4StateRows / 16 <= kPb4BulkCtas * kPb4BulkBlocksPerCta,
              "the key passes store every block of the last stage");
TA_HD constexpr int64_t pb4_state_bytes() { return int64_t{kPb4StateRows} * kPb4Cols * 2; }
TA_HD constexpr int64_t pb4_key_bytes(int64_t Nk) { return pb4_key_tiles(Nk) * kPb4TileElems * 2; }
TA_HD constexpr int64_t pb4_value_bytes(int64_t Nk) { return pb4_key_tiles(Nk) * kPb4KeyTile * kPb4Cols * 2; }
TA_HD constexpr int64_t pb4_unit_bytes(int64_t Nk) {
  return pb4_state_bytes() + pb4_key_bytes(Nk) + pb4_value_bytes(Nk);
}

}  // namespace ta::cuda
