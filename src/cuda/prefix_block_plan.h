// The "prefix x block" fast path for P = 3 on 128-wide slices, the part host and device
// share: the feature block list (which the key and query kernels walk in the same order,
// checked at compile time to hold every feature of T_3 once), the kernels' shared-memory
// needs, the workspace it adds, and the one rule that picks these kernels over the
// generic ones. Plain C++ (host + device under nvcc), so host-only tests can check it.
// Design and measurements: dev/cuda/README.md (the harness's v2) and docs/perf-notes.md (v5).
//
// T_3(x.y) = 1 + sum_b x_b y_b + sum_{a<b} (x_a x_b)(y_a y_b) + 1/2 sum_a x_a^2 y_a^2, with
// x = sign(c) sqrt|c| q and y = sqrt|c| k. Features come in blocks of 16 rows that share a
// "prefix" coordinate a and a 16-wide column block bb: row i of block (a, bb) is
// x_a x_{16 bb + i}, so the tensor cores take ldmatrix fragments of the bf16 q/k tiles
// scaled by the prefix instead of features built element by element (kernels/key_pass.cuh).
//
// | block | count | row i (b = 16 bb + i) | weight folded into the state row |
// | CONST | 1 | row 0 = 1, rows 1..15 = 0 | 1 (row 0), 0 |
// | DEG1 bb | 8 | x_b (prefix column 128 holds 1.0) | 1 |
// | DEG2 (a, bb), bb >= a/16 | 576 | x_a x_b | 1 if b > a, 1/2 if b = a, 0 below (padding) |
//
// 585 blocks = 9,360 state rows for 8,385 features (11% padding). The state S_pad
// [9360][136] is bf16 with the weights folded in: columns 0..127 = sum_j w phi(y_j) v_j,
// 128 = z_hi = bf16(z), 129 = z_lo = bf16(z - z_hi), 130..135 = 0.
#pragma once

#include <cstdint>

#include "core/problem.h"
#include "cuda/host_device.h"
#include "cuda/prefix_block4_plan.h"
#include "taylor_attention/taylor_attention.h"

namespace ta::cuda {

inline constexpr int kPbDim = 128;                     // q/k slice width
inline constexpr int kPbValueDim = 128;                // value slice width
inline constexpr int kPbCols = 136;                    // state columns: 128 values, z_hi, z_lo, 6 zeros
inline constexpr int kPbOnesCol = 128;                 // staged q/k rows hold 1.0 here (the DEG1 prefix)
inline constexpr int kPbBlocks = 1 + 8 + 576;          // CONST, DEG1 bb = 0..7, DEG2 (a, bb >= a / 16)
inline constexpr int kPbRows = 16 * kPbBlocks;         // 9,360 state rows
inline constexpr int kPbFeatures = 8385;               // C(130, 2): the real ones
inline constexpr int kPbKeyBlocksPerCta = 16;          // key pass: 8 warps x 2 blocks
inline constexpr int kPbKeyCtas = (kPbBlocks + kPbKeyBlocksPerCta - 1) / kPbKeyBlocksPerCta;  // 37 per unit
inline constexpr int kPbListLen = kPbKeyCtas * kPbKeyBlocksPerCta;  // 592: padded with null blocks

// A block descriptor: kind << 16 | prefix column << 8 | bb. The DEG1 prefix column is
// kPbOnesCol, so DEG1 and DEG2 run the same code (scaling by an exact 1.0).
enum PbKind : uint32_t { kPbNull = 0, kPbConst = 1, kPbDeg1 = 2, kPbDeg2 = 3 };

TA_HD constexpr uint32_t pb_encode(uint32_t kind, uint32_t col, uint32_t bb) { return kind << 16 | col << 8 | bb; }
TA_HD constexpr uint32_t pb_kind(uint32_t d) { return d >> 16; }
TA_HD constexpr int pb_col(uint32_t d) { return static_cast<int>((d >> 8) & 0xFFu); }
TA_HD constexpr int pb_bb(uint32_t d) { return static_cast<int>(d & 0xFFu); }

// Weight folded into state row i of a block: 1 above the diagonal of a DEG2 block, 1/2 on
// it, 0 below it (padding rows); CONST keeps only row 0.
TA_HD constexpr float pb_weight(uint32_t d, int i) {
  const uint32_t kind = pb_kind(d);
  if (kind == kPbConst) return i == 0 ? 1.0f : 0.0f;
  if (kind == kPbDeg1) return 1.0f;
  if (kind == kPbDeg2) {
    const int b = 16 * pb_bb(d) + i, a = pb_col(d);
    return b > a ? 1.0f : (b == a ? 0.5f : 0.0f);
  }
  return 0.0f;
}

struct PbBlockList {
  uint32_t d[kPbListLen];
};

// The list order is free (state rows follow it and both passes read the same list). This
// one pairs blocks (2w, 2w + 1) on a shared prefix column where it can and keeps runs of one
// prefix column together: DEG2 columns with an even block count 8 - a/16 first, then the
// odd-count columns without their bb = 7 block, then CONST and DEG1, then the left-over
// (a, 7) blocks, then null blocks up to kPbListLen. (The harness's order, so its outputs
// and the library's can be compared bit for bit.)
constexpr PbBlockList pb_block_list() {
  PbBlockList l{};
  int n = 0;
  for (int a = 0; a < kPbDim; ++a)
    if ((8 - a / 16) % 2 == 0)
      for (int bb = a / 16; bb < 8; ++bb) l.d[n++] = pb_encode(kPbDeg2, static_cast<uint32_t>(a), static_cast<uint32_t>(bb));
  for (int a = 0; a < kPbDim; ++a)
    if ((8 - a / 16) % 2 == 1)
      for (int bb = a / 16; bb < 7; ++bb) l.d[n++] = pb_encode(kPbDeg2, static_cast<uint32_t>(a), static_cast<uint32_t>(bb));
  l.d[n++] = pb_encode(kPbConst, 0, 0);
  for (int bb = 0; bb < 8; ++bb) l.d[n++] = pb_encode(kPbDeg1, kPbOnesCol, static_cast<uint32_t>(bb));
  for (int a = 0; a < kPbDim; ++a)
    if ((8 - a / 16) % 2 == 1) l.d[n++] = pb_encode(kPbDeg2, static_cast<uint32_t>(a), 7);
  while (n < kPbListLen) l.d[n++] = pb_encode(kPbNull, 0, 0);
  return l;
}

// Every feature of T_3 exactly once with a nonzero weight, kPbBlocks real blocks first,
// null blocks after them: a list-building slip fails the build (static_assert below).
constexpr bool pb_list_complete(const PbBlockList& l) {
  int deg2[kPbDim * kPbDim] = {}, deg1[kPbDim] = {};
  int consts = 0, real = 0;
  for (int p = 0; p < kPbListLen; ++p) {
    const uint32_t d = l.d[p];
    if ((p < kPbBlocks) != (pb_kind(d) != kPbNull)) return false;
    if (pb_kind(d) == kPbDeg1 && pb_col(d) != kPbOnesCol) return false;
    for (int i = 0; i < 16; ++i) {
      if (pb_weight(d, i) == 0.0f) continue;
      ++real;
      const int b = 16 * pb_bb(d) + i;
      if (pb_kind(d) == kPbConst) ++consts;
      if (pb_kind(d) == kPbDeg1) ++deg1[b];
      if (pb_kind(d) == kPbDeg2) ++deg2[pb_col(d) * kPbDim + b];
    }
  }
  bool ok = consts == 1 && real == kPbFeatures;
  for (int b = 0; b < kPbDim; ++b) ok = ok && deg1[b] == 1;
  for (int a = 0; a < kPbDim; ++a)
    for (int b = 0; b < kPbDim; ++b) ok = ok && deg2[a * kPbDim + b] == (b >= a ? 1 : 0);
  return ok;
}
static_assert(pb_list_complete(pb_block_list()), "the block list must hold each feature of T_3 once");

// ---- kernel shapes and shared memory ----------------------------------------------------

inline constexpr int kPbThreads = 256;       // 8 warps in both passes
inline constexpr int kPbTileStride = 136;    // smem row stride (bf16) of every staged tile: 272 B
static_assert((kPbTileStride * 2) % 128 == 16, "272-byte rows: the 8 rows of an ldmatrix 8x8 hit distinct banks");
inline constexpr int kPbKeyTile = 64;        // tokens per staged key tile
inline constexpr int kPbQueryRows = 256;     // queries per query-pass CTA: 8 warps x 2 m16 tiles
inline constexpr int kPbQueryRing = 3;       // state stages in the query pass's cp.async ring

// Key pass: KSTAGES x (K tile + [V|1] tile), each [64][136] bf16.
TA_HD constexpr int pb_key_smem(int key_stages) { return key_stages * 2 * kPbKeyTile * kPbTileStride * 2; }
// Query pass: the Q tile [256][136] and a ring of 3 stages of 16 x stage_blocks state rows.
TA_HD constexpr int pb_query_smem(int stage_blocks) {
  return (kPbQueryRows + kPbQueryRing * 16 * stage_blocks) * kPbTileStride * 2;
}

// The two shapes the kernels are instantiated for. kPbLarge is the harness's v2, measured on
// the H100 (dev/cuda/README.md): 3-stage key tiles (v1's 2 stages were slower), 4 blocks (64
// state rows) per query stage, the query tile's A fragments held in 64 registers; it needs
// 119 KiB per block. kPbSmall fits the 99 KB of opt-in shared memory of sm_86/89/120 cards:
// 2-stage key tiles (the harness's v1), 2 blocks per query stage (twice the barriers: one
// per 68 mma per warp), and A fragments reloaded from the Q tile per block (+8 shared-memory
// wavefronts per 34 mma; those cards' tensor cores run at half the H100's rate per SM, so
// the pass stays tensor-bound; and sm_120's ptxas spills the register-resident version).
// Not timed yet.
struct PbShape {
  int key_stages;
  int stage_blocks;
  bool q_in_registers;
};
inline constexpr PbShape kPbLarge{3, 4, true};
inline constexpr PbShape kPbSmall{2, 2, false};
TA_HD constexpr int pb_smem(PbShape s) {
  return pb_key_smem(s.key_stages) > pb_query_smem(s.stage_blocks) ? pb_key_smem(s.key_stages)
                                                                  : pb_query_smem(s.stage_blocks);
}
static_assert(pb_key_smem(3) == 104448 && pb_query_smem(4) == 121856, "the harness's v2 shapes");
static_assert(pb_smem(kPbSmall) <= 101376, "the small shape fits 99 KB of opt-in shared memory");

// The wgmma passes (Hopper, sm_90a builds: kernels/pb_wg_*.cuh): 4-stage rings filled two
// ahead (a buffer is refilled only after the wgmmas that read it retired), 4 blocks per
// query stage, A fragments reloaded per block. dev/cuda/README.md, v5.
inline constexpr int kPbWgStages = 4;
inline constexpr int kPbWgStageBlocks = 4;
inline constexpr int kPbWgStageRows = 16 * kPbWgStageBlocks;
inline constexpr int kPbWgBarrierBytes = 8 * kPbWgStages;  // the query pass's stage barriers
TA_HD constexpr int pb_wg_smem() {
  return (pb_key_smem(kPbWgStages) > (kPbQueryRows + kPbWgStages * kPbWgStageRows) * kPbTileStride * 2
              ? pb_key_smem(kPbWgStages)
              : (kPbQueryRows + kPbWgStages * kPbWgStageRows) * kPbTileStride * 2) +
         kPbWgBarrierBytes;
}
static_assert(pb_wg_smem() == 139296, "136 KiB: above the mma.sync shapes, so a test cap can select those");

// The wgmma key pass staged by the TMA (kernels/pb_wg_key_pass_tma.cuh): kPbTmaStages stages,
// each the y tile image (17,408 bytes) and the [v|1] tile as three blocks of 64 tokens x 128
// bytes in the 128-byte swizzle (v columns 0..63 and 64..127 by tensor copies, then a
// constant block whose first column is the ones), with a "full" and an "empty" barrier per
// stage, after up to 1,024 bytes that align the ring to the swizzle atom.
inline constexpr int kPbTmaStages = 5;
inline constexpr int kPbTmaYBytes = kPbKeyTile * kPbCols * 2;                   // 17,408
inline constexpr int kPbTmaVBlockBytes = kPbKeyTile * 128;                     // 8,192
inline constexpr int kPbTmaStageBytes = kPbTmaYBytes + 3 * kPbTmaVBlockBytes;  // 41,984
TA_HD constexpr int pb_wg_tma_smem() { return 1024 + kPbTmaStages * kPbTmaStageBytes + 2 * kPbTmaStages * 8; }
static_assert(kPbTmaYBytes % 1024 == 0 && kPbTmaStageBytes % 1024 == 0, "swizzled blocks on 1,024-byte atoms");
static_assert(pb_wg_tma_smem() <= 232448, "fits the 227 KiB of opt-in shared memory of an H100");

// ---- selection ----------------------------------------------------------------------------

// Which key/query kernels a call runs: the generic ones (kernels/key_pass.cuh, query_pass.cuh:
// any P, any slice dims, and the only ones with force_fp32), the prefix x block kernels for
// P = 3 (two mma.sync shapes and the wgmma one), or those for P = 4 on 32-wide slices
// (prefix_block4_plan.h; mma.sync or wgmma).
enum class PassKernels : int {
  kGeneric = 0,
  kPrefixBlock = 1,
  kPrefixBlockSmall = 2,
  kPrefixBlock4 = 3,
  kPrefixBlockWg = 4,
  kPrefixBlock4Wg = 5
};

inline const char* pass_kernels_name(PassKernels k) {
  switch (k) {
    case PassKernels::kPrefixBlock: return "prefix_block";
    case PassKernels::kPrefixBlockSmall: return "prefix_block_small";
    case PassKernels::kPrefixBlock4: return "prefix_block4";
    case PassKernels::kPrefixBlockWg: return "prefix_block_wgmma";
    case PassKernels::kPrefixBlock4Wg: return "prefix_block4_wgmma";
    default: return "generic";
  }
}

// The rules. P = 3: tensor cores allowed (not force_fp32), slices of exactly 128 q/k and
// 128 value dims (d = 128 or G x 128), and the device's opt-in shared memory per block
// (cudaDevAttrMaxSharedMemoryPerBlockOptin) holds one of the shapes: the wgmma one when the
// device has wgmma (compute capability 9.0) and the library was built with sm_90a code,
// else the larger mma.sync one that fits. P = 4 on 32-wide slices: pb4_applies
// (prefix_block4_plan.h), with the same wgmma rule. Anything else keeps the generic kernels.
inline PassKernels select_pass_kernels(const Problem& p, const ta_config& c, int64_t smem_optin, bool wgmma = false) {
  if (pb4_applies(p, c, smem_optin)) {
    return wgmma && smem_optin >= pb4_wg_smem() ? PassKernels::kPrefixBlock4Wg : PassKernels::kPrefixBlock4;
  }
  if (c.force_fp32 || p.P != 3 || p.ds != kPbDim || p.dvs != kPbValueDim) return PassKernels::kGeneric;
  if (wgmma && smem_optin >= pb_wg_smem()) return PassKernels::kPrefixBlockWg;
  if (smem_optin >= pb_smem(kPbLarge)) return PassKernels::kPrefixBlock;
  if (smem_optin >= pb_smem(kPbSmall)) return PassKernels::kPrefixBlockSmall;
  return PassKernels::kGeneric;
}

// ---- key split ----------------------------------------------------------------------------

// The wgmma key pass (P = 3) gives each unit kPbKeyCtas CTAs of one block of state rows each,
// every CTA over all keys: a batch of few units leaves SMs idle (1 unit: 37 of 132). With a
// key split of s, clusters of s CTAs share a CTA's rows, rank r over the r-th share of the
// token tiles, and rank 0 adds the others' accumulators through distributed shared memory
// (no workspace). clusters_per_wave[s] (s = 1 .. kPbMaxKeySplit, the portable cluster size)
// is how many clusters of s CTAs the device runs at once (s = 1: one CTA per SM, the pass
// using 136 KiB of shared memory; else cudaOccupancyMaxActiveClusters, which knows that a
// cluster lives in one GPC; 0: cannot launch). The rule moves to a larger s only where its
// waves per unit of work, ceil(units kPbKeyCtas / clusters_per_wave[s]) / s, are at least 20%
// fewer (the reduction and the cluster barriers are not free), with at least one token tile
// per share.
inline constexpr int kPbMaxKeySplit = 8;
TA_HD inline int pb_key_split(int64_t units, int64_t n_tokens, const int64_t (&clusters_per_wave)[kPbMaxKeySplit + 1]) {
  const int64_t groups = units * kPbKeyCtas, tiles = (n_tokens + kPbKeyTile - 1) / kPbKeyTile;
  if (groups <= 0 || clusters_per_wave[1] <= 0) return 1;
  int best = 1;
  int64_t best_waves = (groups + clusters_per_wave[1] - 1) / clusters_per_wave[1];
  for (int s = 2; s <= kPbMaxKeySplit && s <= tiles; ++s) {
    if (clusters_per_wave[s] <= 0) continue;
    const int64_t waves = (groups + clusters_per_wave[s] - 1) / clusters_per_wave[s];
    if (5 * waves * best < 4 * best_waves * s) {  // waves / s < 0.8 best_waves / best
      best = s;
      best_waves = waves;
    }
  }
  return best;
}

// ---- workspace ----------------------------------------------------------------------------

// Bytes per unit of a batch: the state S_pad (bf16, in place of the generic path's fp32 S and
// its bf16 copy) and the prepared keys: y = bf16(sqrt|c| k / norm) as images of the key
// passes' shared-memory tiles, [key tiles][64][136] with cols 128..135 = [1, 0 x 7] and the
// last tile's padding rows zero (one bulk copy stages a tile), and the value rows
// [v | 1 | 0 x 7] [Nk][136] (masked keys all zero). Queries are not copied: the query pass
// stages and scales them itself, once per 256-query tile.
TA_HD constexpr int64_t pb_state_bytes() { return int64_t{kPbRows} * kPbCols * 2; }
TA_HD constexpr int64_t pb_key_tiles(int64_t Nk) { return (Nk + kPbKeyTile - 1) / kPbKeyTile; }
TA_HD constexpr int64_t pb_key_bytes(int64_t Nk) { return pb_key_tiles(Nk) * kPbKeyTile * kPbCols * 2; }
TA_HD constexpr int64_t pb_value_bytes(int64_t Nk) { return Nk * kPbCols * 2; }
// direct_values: the key pass reads v itself (pb_direct_values), so no value rows are kept.
TA_HD constexpr int64_t pb_unit_bytes(int64_t Nk, bool direct_values) {
  return pb_state_bytes() + pb_key_bytes(Nk) + (direct_values ? 0 : pb_value_bytes(Nk));
}

// Whether the key pass can stage v by 16-byte cp.async straight from the caller's tensor:
// bf16 (the staged tile holds bf16 bits), contiguous rows of 16-byte aligned 128-value
// slices. The "1" column and the zeros of masked and padding keys are then written by the
// key pass. Otherwise the prep kernel writes value rows [v | 1 | 0 x 7] into the
// workspace (528 instead of 256 bytes per key and unit: at N = 66,048 and 24 heads 1.4x
// the state-plus-output bound of batch_budget.h, so two batches). A NULL data pointer (an
// estimate from shapes alone) counts as aligned.
inline bool pb_direct_values(const Problem& p) {
  const ta_tensor& v = *p.v;
  const bool aligned = reinterpret_cast<uintptr_t>(v.data) % 16 == 0;
  return v.dtype == TA_DTYPE_BF16 && v.strides[3] == 1 && v.strides[0] % 8 == 0 && v.strides[1] % 8 == 0 &&
         v.strides[2] % 8 == 0 && aligned;
}

// ---- test seams (defined by the CUDA backend; not part of the ABI) -------------------------

// Caps the opt-in shared memory the selection sees (bytes; < 0 removes the cap), so tests on
// a large card can run the mma.sync shape on a wgmma card (121856), the small shape (101376)
// or the generic kernels (0). Process-wide.
void set_pass_smem_cap_for_testing(int64_t bytes);
// The kernels the calling thread's last CUDA run selected (kGeneric before any run).
PassKernels last_pass_kernels();
// Whether the wgmma kernels can run on the device: compute capability 9.0 and a build with
// sm_90a code (TA_CUDA_ARCHITECTURES holding 90a). What kernels_for passes to the rule.
bool device_has_wgmma(int device);
// The key split (pb_key_split) of the calling thread's last run's last prefix x block batch
// (1 for other kernels and before any run).
int last_key_split();
// Caps the key split (1: never split; < 1 restores the rule's own limit). Process-wide.
void set_key_split_cap_for_testing(int cap);
// Whether the calling thread's last run's last prefix x block batch ran a key pass staged by
// the TMA unit (P = 3: pb_wg_key_pass_tma; P = 4: pb4_key_pass_bulk).
bool last_key_pass_tma();
// Lets the wgmma paths use those key passes where they apply (the default), or not, so tests
// also run the cp.async ones (on unmasked calls for P = 3). Process-wide.
void set_key_pass_tma_for_testing(bool allowed);

}  // namespace ta::cuda
