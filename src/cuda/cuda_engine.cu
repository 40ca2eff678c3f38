// Host side of the CUDA backend: workspace layout, batching of (batch, head, slice)
// units so states stay bounded, kernel dispatch, statistics and the quality check; with
// the local-exact hybrid also the window kernels (kernels/window*.cuh). Two sets of key /
// query kernels: the prefix x block kernels for P = 3 on 128-wide slices (kernels/pb_*.cuh)
// and for P = 4 on 32-wide slices (kernels/pb4_*.cuh), chosen by select_pass_kernels in
// cuda/prefix_block_plan.h, and the generic ones.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "api/errors.h"
#include "core/combinatorics.h"
#include "core/dtype.h"
#include "core/quality.h"
#include "core/sampling.h"
#include "cuda/batch_budget.h"
#include "cuda/cuda_backend.h"
#include "cuda/kernels/features.cuh"
#include "cuda/kernels/key_pass.cuh"
#include "cuda/kernels/pb4_key_pass.cuh"
#include "cuda/kernels/pb4_key_pass_bulk.cuh"
#include "cuda/kernels/pb4_prep.cuh"
#include "cuda/kernels/pb4_probe.cuh"
#include "cuda/kernels/pb4_query_pass.cuh"
#include "cuda/kernels/pb_key_pass.cuh"
#include "cuda/kernels/pb_prep.cuh"
#include "cuda/kernels/pb_probe.cuh"
#include "cuda/kernels/pb_query_pass.cuh"
#include "cuda/kernels/pb_wg_key_pass.cuh"
#include "cuda/kernels/pb_wg_key_pass_tma.cuh"
#include "cuda/kernels/pb_wg_query_pass.cuh"
#include "cuda/kernels/pb4_wg_query_pass.cuh"
#include "cuda/kernels/prep.cuh"
#include "cuda/kernels/probe.cuh"
#include "cuda/kernels/quality.cuh"
#include "cuda/kernels/query_pass.cuh"
#include "cuda/kernels/window_grid_wg.cuh"
#include "cuda/kernels/window_mma.cuh"
#include "cuda/kernels/window_simt.cuh"
#include "cuda/limits.h"
#include "cuda/prefix_block_plan.h"
#include "cuda/window_plan.h"

namespace ta::cuda {
namespace {

// Test seams of prefix_block_plan.h: a cap on the shared memory the selection sees, and
// the kernels the calling thread's last run used.
std::atomic<int64_t> g_smem_cap{-1};
thread_local PassKernels t_last_kernels = PassKernels::kGeneric;
thread_local int t_last_key_split = 1;
std::atomic<int> g_key_split_cap{kPbMaxKeySplit};
thread_local bool t_last_key_tma = false;
std::atomic<bool> g_key_tma{true};
// And of window_plan.h: whether the window kernel may use wgmma, and the one last used.
std::atomic<bool> g_window_wgmma{true};
thread_local WindowKernel t_last_window = WindowKernel::kNone;
std::atomic<bool> g_window_tma{true};
thread_local bool t_last_window_tma = false;
std::atomic<bool> g_window_grid{true};
thread_local bool t_last_window_grid = false;

constexpr int64_t kAlign = 256;
constexpr int kWarps = 8;    // warps per block in the tensor-core passes
// 16-row tiles per warp in the key pass. Two (each B fragment serving two mma) were
// measured no faster for P=3 (70.8 vs 72.4 ms) and slower for P=4, G=4 (101.5 vs
// 72.7 ms) at N=66048 on the H100 (docs/perf-notes.md, v3): the pass is not bound by
// B-fragment traffic, so one.
constexpr int key_tiles(int) { return 1; }

int64_t align_up(int64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

int state_columns(const Problem& p, const ta_config& c) {
  const int64_t need = p.dvs + 1 + (c.denom_fp32 ? 1 : 0);
  for (int nc : {40, 72, 136}) {
    if (need <= nc) return nc;
  }
  return 0;
}

// Top degree as the kernels' compile-time constant: specialised for P <= 4.
int degree_class(int P) { return P <= 3 ? 2 : P == 4 ? 3 : kMaxDegreeSlots; }

int64_t padded_features(int64_t R) { return (R + kStateChunk - 1) / kStateChunk * kStateChunk; }

// The opt-in shared memory per block of the call's device, under the test cap; 0 when it
// cannot be read (the generic kernels then plan and run).
int64_t smem_optin(int device) {
  int bytes = 0;
  if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    cudaGetLastError();
    bytes = 0;
  }
  const int64_t cap = g_smem_cap.load();
  return cap >= 0 ? std::min<int64_t>(bytes, cap) : bytes;
}

PassKernels kernels_for(const Problem& p, const ta_config& c) {
  return select_pass_kernels(p, c, smem_optin(p.q->device_id), device_has_wgmma(p.q->device_id));
}

// Either prefix x block path (no feature table, a bf16 state S_pad, prepared keys), and the
// P = 4 one, whose sizes differ.
bool prefix_block(PassKernels k) { return k != PassKernels::kGeneric; }
bool prefix_block4(PassKernels k) { return k == PassKernels::kPrefixBlock4 || k == PassKernels::kPrefixBlock4Wg; }

struct Layout {
  int64_t ids, weight, S, St, qfac, kfac, keep, stats, probe_rows, q_rows, q_ref_o, q_ref_m, q_got;
  int64_t wden, probe_den, tiles, wpart, wnext;  // local-exact hybrid only (empty otherwise)
  int64_t pb_y, pb_vx;             // prefix x block path only: prepared keys and value rows
  int64_t total;
};

// On the prefix x block path S holds the bf16 state S_pad, and neither the feature table
// nor the generic query pass's bf16 copy of S exists.
Layout layout_for(const Problem& p, const ta_config& c, int64_t upb, int nc, PassKernels kernels) {
  Layout l{};
  int64_t at = 0;
  auto take = [&at](int64_t bytes) {
    const int64_t here = at;
    at += align_up(bytes);
    return here;
  };
  const int64_t qs = std::min<int64_t>(c.quality_check_samples, p.Nq);
  const bool pb = prefix_block(kernels), pb4 = prefix_block4(kernels);
  l.ids = take(pb ? 0 : p.R * 16);
  l.weight = take(pb ? 0 : p.R * 4);
  l.S = take(pb4 ? upb * pb4_state_bytes() : pb ? upb * pb_state_bytes() : upb * p.R * nc * 4);
  l.St = take(pb ? 0 : upb * nc * padded_features(p.R) * 2);
  l.qfac = take(upb * p.Nq * 4);
  l.kfac = take(upb * p.Nk * 4);
  l.keep = take(p.B * p.Nk);
  l.stats = take(sizeof(DeviceStats));
  l.probe_rows = take(std::min<int64_t>(c.probe_samples, p.Nq) * 8);
  l.q_rows = take(qs * 8);
  l.q_ref_o = take(p.B * p.H * qs * p.dv * 4);
  l.q_ref_m = take(p.B * p.H * qs * p.dv * 4);
  l.q_got = take(p.B * p.H * qs * p.dv * 4);
  // The hybrid's extra memory: one fp32 Taylor denominator per (unit, query) and per
  // (unit, probed row), and the tensor-core kernel's tile list (32 bytes per <= 64 queries).
  const bool hybrid = p.window.active;
  l.wden = take(hybrid ? upb * p.Nq * 4 : 0);
  l.probe_den = take(hybrid ? upb * std::min<int64_t>(c.probe_samples, p.Nq) * 4 : 0);
  l.tiles = take(hybrid ? window_tile_count(p.window) * static_cast<int64_t>(sizeof(WindowTile)) : 0);
  // Partial (m, l, acc) of text rows split over key ranges (up to 29 MB at H=24, N=66048,
  // sized for the 2-D kernel's finer splits):
  // without it the longest rows run on one block each and become the tail.
  l.wpart = take(hybrid ? window_partial_bytes(p.window, upb, p.dvs, p.Nk) : 0);
  // The 2-D window kernel's work counters, one per grid.
  l.wnext = take(hybrid ? TA_MAX_GRIDS * sizeof(unsigned int) : 0);
  l.pb_y = take(pb4 ? upb * pb4_key_bytes(p.Nk) : pb ? upb * pb_key_bytes(p.Nk) : 0);
  l.pb_vx = take(pb4 ? upb * pb4_value_bytes(p.Nk) : pb && !pb_direct_values(p) ? upb * pb_value_bytes(p.Nk) : 0);
  l.total = at + kAlign;  // slack to align the caller's pointer
  return l;
}

int64_t units_per_batch(const Problem& p, int nc, PassKernels kernels) {
  const int64_t units = p.B * p.H * p.G;
  int64_t per_unit = p.R * nc * 4 + padded_features(p.R) * nc * 2;
  if (prefix_block4(kernels)) {
    per_unit = pb4_unit_bytes(p.Nk);
  } else if (prefix_block(kernels)) {
    per_unit = pb_unit_bytes(p.Nk, pb_direct_values(p));
  }
  const int64_t budget =
      prefix_block(kernels)  // both prefix x block paths
          ? std::min(kStateBudgetBytes, call_reference_bytes(units, p.R, p.dvs, p.B, p.H, p.Nq, p.dv,
                                                             static_cast<int64_t>(dtype_size(p.dtype))))
          : kStateBudgetBytes;
  return balanced_units_per_batch(units, per_unit, budget);
}

Strided strided(const ta_tensor& t) {
  return Strided{t.data, t.strides[0], t.strides[1], t.strides[2], t.strides[3], static_cast<int>(t.dtype)};
}

// Elements of a dtype in one 16-byte vector.
int64_t elems_per_vector(int dtype) { return dtype == TA_DTYPE_F32 ? 4 : 8; }

// 16-byte vector loads of `width`-element slices: contiguous last dim, every row start
// a multiple of the vector, aligned base pointer.
int vector_loads_ok(const ta_tensor& t, int64_t width) {
  const int64_t per = elems_per_vector(t.dtype);
  const bool aligned = reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
  return aligned && t.strides[3] == 1 && width % per == 0 && t.strides[0] % per == 0 && t.strides[1] % per == 0 &&
         t.strides[2] % per == 0;
}

// The token factors of `tokens` tokens of `units` units: one 16-byte load per lane
// (token_factors_vec, L lanes per token) where the slices allow it and the norm is needed,
// else the scalar kernel (a warp per token).
void launch_token_factors(const Geometry& g, const Strided& x, int64_t tokens, int32_t units, float mul,
                          int normalize, float eps, int vec, float* out, cudaStream_t stream) {
  const int64_t lanes = vec ? g.ds / elems_per_vector(x.dtype) : 0;
  const auto blocks = [&](int64_t per_token) { return static_cast<unsigned>((tokens * units * per_token + 255) / 256); };
  switch (normalize ? lanes : 0) {
    case 1: token_factors_vec<1><<<blocks(1), 256, 0, stream>>>(g, x, tokens, units, mul, eps, out); return;
    case 2: token_factors_vec<2><<<blocks(2), 256, 0, stream>>>(g, x, tokens, units, mul, eps, out); return;
    case 4: token_factors_vec<4><<<blocks(4), 256, 0, stream>>>(g, x, tokens, units, mul, eps, out); return;
    case 8: token_factors_vec<8><<<blocks(8), 256, 0, stream>>>(g, x, tokens, units, mul, eps, out); return;
    case 16: token_factors_vec<16><<<blocks(16), 256, 0, stream>>>(g, x, tokens, units, mul, eps, out); return;
    case 32: token_factors_vec<32><<<blocks(32), 256, 0, stream>>>(g, x, tokens, units, mul, eps, out); return;
    default: token_factors<<<blocks(32), 256, 0, stream>>>(g, x, tokens, units, mul, normalize, eps, out);
  }
}

ta_status cuda_fail(cudaError_t e, const char* what) {
  // Clear the error so it cannot surface in the caller's next CUDA call (PyTorch checks
  // cudaGetLastError() after its own launches). Sticky errors stay: only a context reset clears them.
  cudaGetLastError();
  return fail(TA_ERR_DEVICE, std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                                 cudaGetErrorString(e) + ")");
}

#define TA_CUDA_TRY(expr, what)                  \
  do {                                           \
    const cudaError_t err_ = (expr);             \
    if (err_ != cudaSuccess) return cuda_fail(err_, what); \
  } while (0)

#define TA_CUDA_LAUNCHED(what) TA_CUDA_TRY(cudaGetLastError(), what)

float decode_ordered(unsigned int u) {
  const unsigned int bits = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

ta_reason reason_from_flags(unsigned int flags) {
  if (flags & kFlagDenInvalid) return TA_REASON_DENOMINATOR_INVALID;
  if (flags & kFlagDenTooSmall) return TA_REASON_DENOMINATOR_TOO_SMALL;
  if (flags & kFlagNonFiniteOut) return TA_REASON_NON_FINITE_OUTPUT;
  return TA_REASON_NONE;
}

// Raises a kernel's dynamic shared-memory limit when it needs more than the default.
template <class Kernel>
ta_status allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    TA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                "cudaFuncSetAttribute");
  }
  return TA_OK;
}

struct Timers {
  float key_ms = 0, probe_ms = 0, query_ms = 0, window_ms = 0;
};

// One dim of a tensor map after the columns: its size, byte stride, box extent, and which
// coordinate it is (the kernels' order codes: tma_token_coords, grid_map_coords).
struct MapDim {
  int64_t size, stride;
  uint32_t box;
  int which;
};

// Encodes a map over 16-bit data at `data` (16-byte aligned): `width` columns, then the dims
// in order of their strides (the driver wants each dim's stride to cover the ones before it;
// ComfyUI's Flux v is a [B, N, H, D] buffer viewed as [B, H, N, D]), boxes of box_cols
// columns in the 128-byte swizzle (box_cols = 64: 128-byte rows), out-of-range elements as
// zeros. Size-1 dims read as one index get a stride that covers the dims before them (a
// grid's x and y keep theirs, so its boxes stay row-major in shared memory). *order: 2 bits per
// dim's `which`, its position after the columns. false: no map (driver entry point or
// encoding refused); the callers' cp.async kernels run then.
bool encode_map(const void* data, int64_t width, int box_cols, MapDim* d, int n, CUtensorMap* map, uint32_t* order) {
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  static const Encode encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return Encode{nullptr};
    }
    return reinterpret_cast<Encode>(fn);
  }();
  if (encode == nullptr || data == nullptr || reinterpret_cast<uintptr_t>(data) % 16 != 0 || n > 4) return false;
  // A size-1 dim read as a single index (box 1) goes last with a stride covering the others.
  auto lone = [](const MapDim& x) { return x.size == 1 && x.box == 1; };
  std::stable_sort(d, d + n, [&](const MapDim& x, const MapDim& y) {
    return (lone(x) ? INT64_MAX : x.stride) < (lone(y) ? INT64_MAX : y.stride);
  });
  cuuint64_t dims[5] = {static_cast<cuuint64_t>(width), 0, 0, 0, 0}, strides[4] = {};
  cuuint32_t box[5] = {static_cast<cuuint32_t>(box_cols), 1, 1, 1, 1};
  const cuuint32_t elem[5] = {1, 1, 1, 1, 1};
  int64_t covered = width * 2;
  *order = 0;
  for (int i = 0; i < n; ++i) {
    dims[i + 1] = static_cast<cuuint64_t>(d[i].size);
    strides[i] = static_cast<cuuint64_t>(lone(d[i]) ? covered : d[i].stride);
    covered = static_cast<int64_t>(strides[i]) * d[i].size;
    box[i + 1] = d[i].box;
    *order |= static_cast<uint32_t>(i) << (2 * d[i].which);
  }
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT16, static_cast<cuuint32_t>(n + 1), const_cast<void*>(data), dims,
                strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// A tensor map over a caller's 16-bit [B, H, N, width] tensor t for TMA staging: boxes of
// box_cols columns x box_rows tokens (encode_map; coordinates by tma_token_coords).
bool make_token_map(const ta_tensor& t, int64_t B, int64_t H, int64_t N, int64_t width, int box_cols, int box_rows,
                    CUtensorMap* map, uint32_t* order) {
  MapDim d[3] = {{N, t.strides[2] * 2, static_cast<uint32_t>(box_rows), 0},
                 {H, t.strides[1] * 2, 1, 1},
                 {B, t.strides[0] * 2, 1, 2}};
  return encode_map(t.data, width, box_cols, d, 3, map, order);
}

// A tensor map over one image grid of t (gh rows x gw columns of tokens from token `start`):
// columns, then the grid's x and y, the head and the batch, boxes of box_cols columns x box_x
// x box_y tokens, tokens outside the grid arriving as zeros (coordinates by grid_map_coords).
bool make_grid_map(const ta_tensor& t, int64_t B, int64_t H, int64_t start, int64_t gh, int64_t gw, int64_t width,
                   int box_cols, int box_x, int box_y, CUtensorMap* map, uint32_t* order) {
  if (t.data == nullptr) return false;
  MapDim d[4] = {{gw, t.strides[2] * 2, static_cast<uint32_t>(box_x), 0},
                 {gh, t.strides[2] * gw * 2, static_cast<uint32_t>(box_y), 1},
                 {H, t.strides[1] * 2, 1, 2},
                 {B, t.strides[0] * 2, 1, 3}};
  const auto* origin = static_cast<const uint16_t*>(t.data) + start * t.strides[2];
  return encode_map(origin, width, box_cols, d, 4, map, order);
}

// ---- the local-exact hybrid's kernels: launchers and their selection ----
// (Included here, not compiled alone: they use allow_smem and TA_CUDA_LAUNCHED above.)
#include "cuda/window_launch.inc"

// What run_batch needs to finish the hybrid (NULL when the window is inactive).
struct WindowLaunch {
  WindowFn fn;
  WindowArgs args;  // device pointers filled in
  WindowMaps maps;  // the wgmma kernel's TMA staging (window_maps)
  WindowGridMaps grid;  // the 2-D kernel's maps (window_grid_maps)
  int64_t tiles;
};

// What every batch of a call shares: its inputs, and where the results go.
struct BatchEnv {
  const ta_config* c;
  const int64_t* probe_rows;  // device copy of the sampled rows
  int32_t nprobe;
  const WindowLaunch* win;    // NULL when the window is inactive
  cudaStream_t stream;
  int sms;
  __nv_bfloat16* pb_y;        // prefix x block path: prepared key tiles (pb_key_bytes),
  __nv_bfloat16* pb_vx;       // value rows [units][Nk][136] (unless pb_direct_values),
  bool pb_direct_values;      // P = 3 path: the key pass reads v itself
  const CUtensorMap* pb_vmap; // and a tensor map over it (unmasked calls; NULL: none), its
  uint32_t pb_vmap_order;     // dim order (make_token_map)
  __nv_bfloat16* pb_state;    // and the states S_pad [units][9360][136] (P = 4: the
                              // layouts of prefix_block4_plan.h, states [units][8688][40])
  bool* probe_failed;
  DeviceStats* host_stats;
  cudaEvent_t* ev;            // 5 events: before the key pass, after it, the probe, the query pass, the window
  Timers* timers;
};

using BatchFn = ta_status (*)(PassArgs args, int64_t units, const BatchEnv& env);

// After either path's probe kernel: the hybrid's probe of the same rows (what gets judged
// then), and the verdict on the host; a bad probe skips the query pass.
ta_status finish_probe(const PassArgs& args, int64_t units, const BatchEnv& env) {
  const int64_t items = units * env.nprobe;
  if (env.win != nullptr) {
    probe_window<<<static_cast<unsigned>(items), kProbeWindowThreads, args.g.ds * 4, env.stream>>>(
        args, env.win->args, env.probe_rows, env.nprobe);
    TA_CUDA_LAUNCHED("probe (window)");
  }
  TA_CUDA_TRY(cudaMemcpyAsync(env.host_stats, args.stats, sizeof(DeviceStats), cudaMemcpyDeviceToHost, env.stream),
              "cudaMemcpyAsync(stats)");
  TA_CUDA_TRY(cudaStreamSynchronize(env.stream), "cudaStreamSynchronize(probe)");
  if (env.host_stats->probe_flags != 0) *env.probe_failed = true;
  return TA_OK;
}

// After either path's query pass: the window kernel, then the batch's timings.
ta_status finish_batch(const PassArgs& args, int64_t units, const BatchEnv& env) {
  cudaEvent_t* ev = env.ev;
  TA_CUDA_TRY(cudaEventRecord(ev[3], env.stream), "cudaEventRecord");
  if (!*env.probe_failed && env.win != nullptr) {
    if (ta_status s = env.win->fn(args, env.win->args, env.win->maps, env.win->grid, units, env.win->tiles, env.stream); s != TA_OK) {
      return s;
    }
  }
  TA_CUDA_TRY(cudaEventRecord(ev[4], env.stream), "cudaEventRecord");
  TA_CUDA_TRY(cudaEventSynchronize(ev[4]), "cudaEventSynchronize");
  float ms = 0;
  cudaEventElapsedTime(&ms, ev[0], ev[1]);
  env.timers->key_ms += ms;
  cudaEventElapsedTime(&ms, ev[1], ev[2]);
  env.timers->probe_ms += ms;
  cudaEventElapsedTime(&ms, ev[2], ev[3]);
  env.timers->query_ms += ms;
  cudaEventElapsedTime(&ms, ev[3], ev[4]);
  env.timers->window_ms += ms;
  return TA_OK;
}

// The generic passes for one batch of units, with the kernels' compile-time shape.
template <int NC, int DMAX>
ta_status run_batch(PassArgs args, int64_t units, const BatchEnv& env) {
  const ta_config& c = *env.c;
  cudaStream_t stream = env.stream;
  const Geometry& g = args.g;
  const bool fast = !c.force_fp32;
  const int ds = g.ds;
  // Key pass: split keys over blockIdx.z only when rows x units cannot fill the GPU
  // (split results add up with atomics: not bit-reproducible run to run).
  constexpr int kKeyTiles = key_tiles(DMAX);
  const int64_t rows_per_block = fast ? kWarps * 16 * kKeyTiles : 32;
  const int64_t tiles = (g.R + rows_per_block - 1) / rows_per_block;
  int64_t splits = 1;
  if (tiles * units < 2 * env.sms) {
    splits = std::min<int64_t>((2 * env.sms + tiles * units - 1) / (tiles * units),
                               std::max<int64_t>(1, g.Nk / (8 * kKeyChunk)));
  }
  args.keys_per_split = ((g.Nk + splits - 1) / splits + kKeyChunk - 1) / kKeyChunk * kKeyChunk;
  splits = (g.Nk + args.keys_per_split - 1) / args.keys_per_split;
  if (splits > 1) TA_CUDA_TRY(cudaMemsetAsync(args.S, 0, units * g.R * NC * 4, stream), "cudaMemsetAsync(S)");
  const dim3 kgrid(static_cast<unsigned>(tiles), static_cast<unsigned>(units), static_cast<unsigned>(splits));
  TA_CUDA_TRY(cudaEventRecord(env.ev[0], stream), "cudaEventRecord");
  if (fast) {
    const size_t smem = kKeyChunk * (ds + 1) * 4 + NC * (kKeyChunk + 8) * 2;
    if (ta_status s = allow_smem(key_pass_mma<NC, kWarps, kKeyTiles, DMAX>, smem); s != TA_OK) return s;
    key_pass_mma<NC, kWarps, kKeyTiles, DMAX><<<kgrid, kWarps * 32, smem, stream>>>(args);
  } else {
    const size_t smem = (kKeyChunk * (ds + 1) + kKeyChunk * NC + 32 * kKeyChunk) * 4;
    if (ta_status s = allow_smem(key_pass_simt<NC, DMAX>, smem); s != TA_OK) return s;
    key_pass_simt<NC, DMAX><<<kgrid, 256, smem, stream>>>(args);
  }
  TA_CUDA_LAUNCHED("key pass");
  TA_CUDA_TRY(cudaEventRecord(env.ev[1], stream), "cudaEventRecord");

  // Early probe. z and S come out of one tensor-core product here, so the probe runs
  // after the key pass; a bad probe still skips the query pass.
  if (env.nprobe > 0) {
    const int64_t items = units * env.nprobe;
    const int warps = 8;
    probe_denominators<NC, DMAX><<<static_cast<unsigned>((items + warps - 1) / warps), warps * 32,
                                   warps * ds * 4, stream>>>(args, env.probe_rows, env.nprobe,
                                                             static_cast<int32_t>(units));
    TA_CUDA_LAUNCHED("probe");
    if (ta_status s = finish_probe(args, units, env); s != TA_OK) return s;
  }
  TA_CUDA_TRY(cudaEventRecord(env.ev[2], stream), "cudaEventRecord");
  if (!*env.probe_failed) {
    if (fast) {
      const int64_t items = units * args.Rpad;
      state_to_bf16<NC><<<static_cast<unsigned>((items + 255) / 256), 256, 0, stream>>>(
          args.S, const_cast<__nv_bfloat16*>(args.St), g.R, args.Rpad, g.dvs, args.denom_split, units);
      TA_CUDA_LAUNCHED("state conversion");
      constexpr int BQ = kWarps * 16;
      const size_t smem = BQ * (ds + 1) * 4 + 2 * BQ * 4 + kStateChunk * 16 + NC * (kStateChunk + 8) * 2;
      if (ta_status s = allow_smem(query_pass_mma<NC, kWarps, DMAX>, smem); s != TA_OK) return s;
      const dim3 qgrid(static_cast<unsigned>((g.Nq + BQ - 1) / BQ), static_cast<unsigned>(units));
      query_pass_mma<NC, kWarps, DMAX><<<qgrid, kWarps * 32, smem, stream>>>(args);
    } else {
      const size_t smem = (32 * (ds + 1) + 32 * kStateChunk + kStateChunk * NC + 32) * 4;
      if (ta_status s = allow_smem(query_pass_simt<NC, DMAX>, smem); s != TA_OK) return s;
      const dim3 qgrid(static_cast<unsigned>((g.Nq + 31) / 32), static_cast<unsigned>(units));
      query_pass_simt<NC, DMAX><<<qgrid, 256, smem, stream>>>(args);
    }
    TA_CUDA_LAUNCHED("query pass");
  }
  return finish_batch(args, units, env);
}

// The prefix x block passes for one batch of units (P = 3, 128-wide slices), in one of the
// shapes of prefix_block_plan.h (KSTAGES-deep key tile ring, SB blocks per query stage,
// QREG: the query tile's A fragments held in registers; WG: the wgmma kernels instead, whose
// shape is fixed).
// The key pass's time includes preparing its inputs. One CTA per
// 16 blocks of a unit: 37 x units CTAs, which fill a 132-SM GPU from 4 units on (no key
// split: the state is accumulated in registers and stored once, in bf16).
template <int KSTAGES, int SB, bool QREG, bool WG = false>
ta_status run_batch_pb(PassArgs args, int64_t units, const BatchEnv& env) {
  cudaStream_t stream = env.stream;
  const Geometry& g = args.g;
  const auto un = static_cast<unsigned>(units);
  TA_CUDA_TRY(cudaEventRecord(env.ev[0], stream), "cudaEventRecord");
  // Direct values: no value rows (env.pb_vx unused), the key pass stages v itself.
  __nv_bfloat16* vx = env.pb_direct_values ? nullptr : env.pb_vx;
  const auto prep = [&](auto values) {
    constexpr bool kValues = decltype(values)::value;
    pb_prep_keys<kValues><<<dim3(static_cast<unsigned>(pb_key_tiles(g.Nk) * kPbKeyTile / kPbPrepTokens<kValues>), un),
                            kPbPrepTokens<kValues> * kPbPrepChunks<kValues>, 0, stream>>>(args, env.pb_y, vx);
  };
  if (vx != nullptr) {
    prep(std::true_type{});
  } else {
    prep(std::false_type{});
  }
  TA_CUDA_LAUNCHED("key preparation (prefix x block)");
  if constexpr (WG) {
    int dev = 0, sms = 0;
    TA_CUDA_TRY(cudaGetDevice(&dev), "cudaGetDevice");
    TA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "device attribute");
    // Unmasked direct bf16 values with a tensor map: the TMA kernel; else the cp.async one.
    const bool tma = env.pb_vmap != nullptr && g_key_tma.load() && smem_optin(dev) >= pb_wg_tma_smem();
    t_last_key_tma = tma;
    const size_t smem = tma ? pb_wg_tma_smem() : pb_wg_smem();
    const void* kernel = tma ? reinterpret_cast<const void*>(pb_wg_key_pass_tma)
                             : reinterpret_cast<const void*>(pb_wg_key_pass);
    if (ta_status s = tma ? allow_smem(pb_wg_key_pass_tma, smem) : allow_smem(pb_wg_key_pass, smem); s != TA_OK) {
      return s;
    }
    // Clusters of `split` CTAs share a CTA's state rows when the batch leaves SMs idle
    // (pb_key_split; either kernel).
    auto config = [&](int split, cudaLaunchAttribute* attr) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(static_cast<unsigned>(kPbKeyCtas * split), un);
      cfg.blockDim = dim3(kPbThreads);
      cfg.dynamicSmemBytes = smem;
      cfg.stream = stream;
      attr->id = cudaLaunchAttributeClusterDimension;
      attr->val.clusterDim.x = static_cast<unsigned>(split);
      attr->val.clusterDim.y = 1;
      attr->val.clusterDim.z = 1;
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      return cfg;
    };
    int split = 1;
    if (units * kPbKeyCtas < 4 * sms && g_key_split_cap.load() > 1) {  // beyond 4 waves a split gains little
      int64_t per_wave[kPbMaxKeySplit + 1] = {0, sms};
      for (int s = 2; s <= kPbMaxKeySplit; ++s) {
        cudaLaunchAttribute attr{};
        const cudaLaunchConfig_t cfg = config(s, &attr);
        int n = 0;
        per_wave[s] = cudaOccupancyMaxActiveClusters(&n, kernel, &cfg) == cudaSuccess ? n : 0;
      }
      cudaGetLastError();  // a size the device cannot run is answered with 0 clusters, not an error
      split = std::min(pb_key_split(units, g.Nk, per_wave), g_key_split_cap.load());
    }
    t_last_key_split = split;
    cudaLaunchAttribute attr{};
    const cudaLaunchConfig_t cfg = config(split, &attr);
    if (tma) {
      TA_CUDA_TRY(cudaLaunchKernelEx(&cfg, pb_wg_key_pass_tma, args, *env.pb_vmap, env.pb_vmap_order,
                                     static_cast<const __nv_bfloat16*>(env.pb_y), env.pb_state),
                  "key pass launch (TMA)");
    } else {
      TA_CUDA_TRY(cudaLaunchKernelEx(&cfg, pb_wg_key_pass, args, static_cast<const __nv_bfloat16*>(env.pb_y),
                                     static_cast<const __nv_bfloat16*>(vx), env.pb_state),
                  "key pass launch");
    }
  } else {
    constexpr size_t kKeySmem = pb_key_smem(KSTAGES);
    if (ta_status s = allow_smem(pb_key_pass<KSTAGES>, kKeySmem); s != TA_OK) return s;
    pb_key_pass<KSTAGES><<<dim3(kPbKeyCtas, un), kPbThreads, kKeySmem, stream>>>(args, env.pb_y, vx, env.pb_state);
  }
  TA_CUDA_LAUNCHED("key pass (prefix x block)");
  TA_CUDA_TRY(cudaEventRecord(env.ev[1], stream), "cudaEventRecord");

  if (env.nprobe > 0) {
    const int64_t items = units * env.nprobe;
    pb_probe<WG><<<static_cast<unsigned>((items + 7) / 8), 256, 0, stream>>>(args, env.pb_state, env.probe_rows,
                                                                            env.nprobe, static_cast<int32_t>(units));
    TA_CUDA_LAUNCHED("probe (prefix x block)");
    if (ta_status s = finish_probe(args, units, env); s != TA_OK) return s;
  }
  TA_CUDA_TRY(cudaEventRecord(env.ev[2], stream), "cudaEventRecord");
  if (!*env.probe_failed) {
    const dim3 grid(static_cast<unsigned>((g.Nq + kPbQueryRows - 1) / kPbQueryRows), un);
    if constexpr (WG) {
      constexpr size_t kSmem = pb_wg_smem();
      if (ta_status s = allow_smem(pb_wg_query_pass, kSmem); s != TA_OK) return s;
      pb_wg_query_pass<<<grid, kPbThreads, kSmem, stream>>>(args, env.pb_state);
    } else {
      constexpr size_t kQuerySmem = pb_query_smem(SB);
      if (ta_status s = allow_smem(pb_query_pass<SB, QREG>, kQuerySmem); s != TA_OK) return s;
      pb_query_pass<SB, QREG><<<grid, kPbThreads, kQuerySmem, stream>>>(args, env.pb_state);
    }
    TA_CUDA_LAUNCHED("query pass (prefix x block)");
  }
  return finish_batch(args, units, env);
}

// The P = 4 prefix x block passes for one batch of units (32-wide slices; one shape,
// prefix_block4_plan.h). The key pass's time includes preparing its inputs. 17 key CTAs per
// unit (32 blocks each; 12 of 48 for the bulk-copy kernel; no key split: the state is
// accumulated in registers and stored once, in bf16); the query pass one CTA per 256
// queries of a unit. WG: the wgmma query pass (the state stored as its stage images) and
// the key pass staged by bulk copies (its mma stay mma.sync: a wgmma version, m64n40k16 with
// the same A fragments, measured 25.2 against 23.5 ms at N = 66048 on the H100:
// docs/perf-notes.md, v7).
template <bool WG>
ta_status run_batch_pb4(PassArgs args, int64_t units, const BatchEnv& env) {
  cudaStream_t stream = env.stream;
  const Geometry& g = args.g;
  const auto un = static_cast<unsigned>(units);
  TA_CUDA_TRY(cudaEventRecord(env.ev[0], stream), "cudaEventRecord");
  pb4_prep_keys<<<dim3(static_cast<unsigned>(pb4_key_tiles(g.Nk)), un), kPb4PrepThreads, 0, stream>>>(args, env.pb_y,
                                                                                                      env.pb_vx);
  TA_CUDA_LAUNCHED("key preparation (prefix x block, P = 4)");
  // On the wgmma path the key pass stages by bulk copies (pb4_key_pass_bulk: the same bits).
  bool bulk = false;
  if (WG && g_key_tma.load()) {
    int dev = 0;
    TA_CUDA_TRY(cudaGetDevice(&dev), "cudaGetDevice");
    bulk = smem_optin(dev) >= pb4_bulk_smem();
  }
  t_last_key_tma = bulk;
  if (bulk) {
    constexpr size_t kKeySmem = pb4_bulk_smem();
    if (ta_status s = allow_smem(pb4_key_pass_bulk, kKeySmem); s != TA_OK) return s;
    pb4_key_pass_bulk<<<dim3(kPb4BulkCtas, un), kPb4BulkWarps * 32, kKeySmem, stream>>>(env.pb_y, env.pb_vx,
                                                                                        env.pb_state, g.Nk, WG);
  } else {
    constexpr size_t kKeySmem = pb4_key_smem();
    if (ta_status s = allow_smem(pb4_key_pass, kKeySmem); s != TA_OK) return s;
    pb4_key_pass<<<dim3(kPb4KeyCtas, un), kPb4Threads, kKeySmem, stream>>>(env.pb_y, env.pb_vx, env.pb_state, g.Nk,
                                                                           WG);
  }
  TA_CUDA_LAUNCHED("key pass (prefix x block, P = 4)");
  TA_CUDA_TRY(cudaEventRecord(env.ev[1], stream), "cudaEventRecord");

  if (env.nprobe > 0) {
    const int64_t items = units * env.nprobe;
    pb4_probe<<<static_cast<unsigned>((items + 7) / 8), 256, 0, stream>>>(args, env.pb_state, env.probe_rows,
                                                                         env.nprobe, static_cast<int32_t>(units), WG);
    TA_CUDA_LAUNCHED("probe (prefix x block, P = 4)");
    if (ta_status s = finish_probe(args, units, env); s != TA_OK) return s;
  }
  TA_CUDA_TRY(cudaEventRecord(env.ev[2], stream), "cudaEventRecord");
  if (!*env.probe_failed) {
    const dim3 grid(static_cast<unsigned>((g.Nq + kPb4QueryRows - 1) / kPb4QueryRows), un);
    if constexpr (WG) {
      constexpr size_t kQuerySmem = pb4_wg_query_smem();
      if (ta_status s = allow_smem(pb4_wg_query_pass, kQuerySmem); s != TA_OK) return s;
      pb4_wg_query_pass<<<grid, kPb4Threads, kQuerySmem, stream>>>(args, env.pb_state);
    } else {
      constexpr size_t kQuerySmem = pb4_query_smem();
      if (ta_status s = allow_smem(pb4_query_pass, kQuerySmem); s != TA_OK) return s;
      pb4_query_pass<<<grid, kPb4Threads, kQuerySmem, stream>>>(args, env.pb_state);
    }
    TA_CUDA_LAUNCHED("query pass (prefix x block, P = 4)");
  }
  return finish_batch(args, units, env);
}

// The one place where the kernel set, (state columns, top degree) or the prefix x block
// shape become compile-time constants.
BatchFn select_batch(PassKernels kernels, int nc, int dmax) {
  if (kernels == PassKernels::kPrefixBlock4) return &run_batch_pb4<false>;
  if (kernels == PassKernels::kPrefixBlock4Wg) return &run_batch_pb4<true>;
  if (kernels == PassKernels::kPrefixBlock) {
    return &run_batch_pb<kPbLarge.key_stages, kPbLarge.stage_blocks, kPbLarge.q_in_registers>;
  }
  if (kernels == PassKernels::kPrefixBlockSmall) {
    return &run_batch_pb<kPbSmall.key_stages, kPbSmall.stage_blocks, kPbSmall.q_in_registers>;
  }
  if (kernels == PassKernels::kPrefixBlockWg) return &run_batch_pb<0, 0, false, true>;
#define TA_CASE(NC_, D_) \
  if (nc == NC_ && dmax == D_) return &run_batch<NC_, D_>;
  TA_CASE(40, 2) TA_CASE(40, 3) TA_CASE(40, kMaxDegreeSlots)
  TA_CASE(72, 2) TA_CASE(72, 3) TA_CASE(72, kMaxDegreeSlots)
  TA_CASE(136, 2) TA_CASE(136, 3) TA_CASE(136, kMaxDegreeSlots)
#undef TA_CASE
  return nullptr;
}

struct EventSet {
  cudaEvent_t ev[5] = {};
  ~EventSet() {
    for (cudaEvent_t e : ev) {
      if (e) cudaEventDestroy(e);
    }
  }
};

// Restores the caller's current device on every exit path.
struct DeviceGuard {
  int previous = -1;
  ~DeviceGuard() {
    if (previous >= 0) cudaSetDevice(previous);
  }
};

ta_status quality_check(const Problem& p, const ta_config& c, const KeyMask& mask, const Layout& l,
                        unsigned char* ws, cudaStream_t stream, ta_stats* stats) {
  const std::vector<int64_t> rows = sample_rows(p.Nq, c.quality_check_samples, c.seed ^ kQualityStream);
  const auto n = static_cast<int32_t>(rows.size());
  if (n == 0 || p.dv / std::max(1, p.G) > 32 * kQualityMaxValueCols || p.dv > 32 * kQualityMaxValueCols) return TA_OK;
  auto* d_rows = reinterpret_cast<int64_t*>(ws + l.q_rows);
  TA_CUDA_TRY(cudaMemcpyAsync(d_rows, rows.data(), rows.size() * 8, cudaMemcpyHostToDevice, stream), "quality rows");
  QualityArgs qa{};
  qa.q = strided(*p.q);
  qa.k = strided(*p.k);
  qa.v = strided(*p.v);
  qa.out = strided(*p.out);
  qa.B = p.B, qa.H = p.H, qa.Nq = p.Nq, qa.Nk = p.Nk, qa.d = p.d, qa.dv = p.dv;
  qa.keep = mask.empty() ? nullptr : ws + l.keep;
  qa.mask_batch_stride = mask.batch_stride;
  qa.rows = d_rows;
  qa.nrows = n;
  qa.eps = static_cast<float>(c.eps);
  const unsigned blocks = static_cast<unsigned>(p.B * p.H * n);
  // Original call: full head, base scale, nothing else.
  qa.G = 1, qa.normalize = 0, qa.scale = static_cast<float>(p.base_scale);
  qa.ref = reinterpret_cast<float*>(ws + l.q_ref_o);
  qa.got = reinterpret_cast<float*>(ws + l.q_got);
  exact_rows<<<blocks, 128, p.d * 4, stream>>>(qa);
  TA_CUDA_LAUNCHED("quality reference (original)");
  // Modified function: slices, normalisation, scale_mul.
  qa.G = p.G, qa.normalize = c.qk_normalize, qa.scale = static_cast<float>(p.slice_scale);
  qa.ref = reinterpret_cast<float*>(ws + l.q_ref_m);
  qa.got = nullptr;
  exact_rows<<<blocks, 128, p.ds * 4, stream>>>(qa);
  TA_CUDA_LAUNCHED("quality reference (modified)");
  const size_t count = static_cast<size_t>(p.B * p.H * n * p.dv);
  std::vector<float> ref_o(count), ref_m(count), got(count);
  TA_CUDA_TRY(cudaMemcpyAsync(ref_o.data(), ws + l.q_ref_o, count * 4, cudaMemcpyDeviceToHost, stream), "copy");
  TA_CUDA_TRY(cudaMemcpyAsync(ref_m.data(), ws + l.q_ref_m, count * 4, cudaMemcpyDeviceToHost, stream), "copy");
  TA_CUDA_TRY(cudaMemcpyAsync(got.data(), ws + l.q_got, count * 4, cudaMemcpyDeviceToHost, stream), "copy");
  TA_CUDA_TRY(cudaStreamSynchronize(stream), "cudaStreamSynchronize(quality)");
  ErrorAccumulator acc_o, acc_m;
  std::vector<double> g(static_cast<size_t>(p.dv)), ro(g.size()), rm(g.size());
  for (size_t row = 0; row < count / static_cast<size_t>(p.dv); ++row) {
    for (int64_t col = 0; col < p.dv; ++col) {
      const size_t i = row * static_cast<size_t>(p.dv) + static_cast<size_t>(col);
      g[static_cast<size_t>(col)] = got[i];
      ro[static_cast<size_t>(col)] = ref_o[i];
      rm[static_cast<size_t>(col)] = ref_m[i];
    }
    acc_o.add_row(g.data(), ro.data(), p.dv);
    acc_m.add_row(g.data(), rm.data(), p.dv);
  }
  stats->quality_vs_original = acc_o.finish(n);
  stats->quality_truncation = acc_m.finish(n);
  return TA_OK;
}

ta_status run_impl(const Problem& p, const ta_config& c, const KeyMask& mask, PassKernels kernels, unsigned char* ws,
                   cudaStream_t stream, ta_stats* stats, ta_reason* reason) {
  const int nc = state_columns(p, c);
  const BatchFn batch = select_batch(kernels, nc, degree_class(p.P));
  if (batch == nullptr) return fail(TA_ERR_INTERNAL, "no kernel for these state columns / degree");
  const int64_t upb = units_per_batch(p, nc, kernels);
  const Layout l = layout_for(p, c, upb, nc, kernels);
  int sms = 0;
  TA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, p.q->device_id), "device attribute");

  // Feature table (generic kernels only: the prefix x block kernels walk their block list),
  // statistics, key mask.
  auto* ids = ws + l.ids;
  auto* weight = reinterpret_cast<float*>(ws + l.weight);
  if (!prefix_block(kernels)) {
    FeatureTableArgs fa{};
    fa.R = p.R;
    fa.d = static_cast<int32_t>(p.ds);
    fa.P = p.P;
    // Degree p occupies [offset[p], offset[p+1]) with C(ds + p - 1, p) features.
    fa.degree_offset[0] = 0;
    for (int i = 1; i <= p.P; ++i) fa.degree_offset[i] = fa.degree_offset[i - 1] + *binomial(p.ds + i - 2, i - 1);
    build_feature_table<<<static_cast<unsigned>((p.R + 255) / 256), 256, 0, stream>>>(fa, ids, weight);
    TA_CUDA_LAUNCHED("feature table");
  }
  auto* dstats = reinterpret_cast<DeviceStats*>(ws + l.stats);
  DeviceStats init{};
  init.den_min_bits = 0xffffffffu;
  init.den_max_bits = 0u;
  init.probe_min_bits = 0xffffffffu;
  TA_CUDA_TRY(cudaMemcpyAsync(dstats, &init, sizeof init, cudaMemcpyHostToDevice, stream), "stats init");
  if (!mask.empty()) {
    TA_CUDA_TRY(cudaMemcpyAsync(ws + l.keep, mask.keep.data(), mask.keep.size(), cudaMemcpyHostToDevice, stream),
                "mask upload");
  }
  std::vector<int64_t> probe_rows;
  if (c.early_probe && c.probe_samples > 0) {
    probe_rows = sample_rows(p.Nq, c.probe_samples, c.seed ^ kProbeStream);
    TA_CUDA_TRY(cudaMemcpyAsync(ws + l.probe_rows, probe_rows.data(), probe_rows.size() * 8, cudaMemcpyHostToDevice,
                                stream),
                "probe rows");
  }

  PassArgs args{};
  args.g = Geometry{p.B, p.H, p.G, p.Nq, p.Nk, static_cast<int32_t>(p.ds), static_cast<int32_t>(p.dvs), p.P, p.R, 0,
                    mask.batch_stride};
  args.q = strided(*p.q);
  args.k = strided(*p.k);
  args.v = strided(*p.v);
  args.out = StridedOut{p.out->data, p.out->strides[0], p.out->strides[1], p.out->strides[2], p.out->strides[3],
                        static_cast<int>(p.out->dtype)};
  args.ids = ids;
  args.weight = weight;
  args.qfac = reinterpret_cast<float*>(ws + l.qfac);
  args.kfac = reinterpret_cast<float*>(ws + l.kfac);
  args.keep = mask.empty() ? nullptr : ws + l.keep;
  args.S = reinterpret_cast<float*>(ws + l.S);
  args.St = reinterpret_cast<const __nv_bfloat16*>(ws + l.St);
  args.Rpad = padded_features(p.R);
  args.vec_q = vector_loads_ok(*p.q, p.ds);
  args.vec_k = vector_loads_ok(*p.k, p.ds);
  args.vec_v = vector_loads_ok(*p.v, p.dvs);
  args.denom_split = c.denom_fp32 ? 1 : 0;
  args.eps = static_cast<float>(c.eps);
  args.fallback_on_negative = c.fallback_on_negative;
  args.stats = dstats;

  // The local-exact hybrid: the query pass leaves num / den and den, the window kernel
  // finishes every row (guards and statistics included), the probe checks hybrid rows.
  const bool hybrid = p.window.active;
  WindowLaunch win{};
  std::vector<WindowTile> tiles;  // outlives the asynchronous upload
  if (hybrid) {
    tiles = window_tiles(p.window);
    TA_CUDA_TRY(cudaMemcpyAsync(ws + l.tiles, tiles.data(), tiles.size() * sizeof(WindowTile),
                                cudaMemcpyHostToDevice, stream),
                "window tiles");
    win.fn = select_window(p, c, g_window_wgmma.load() && device_has_wgmma(p.q->device_id), &t_last_window);
    win.args = window_args(p.window, p.P);
    win.args.tiles = reinterpret_cast<const WindowTile*>(ws + l.tiles);
    win.args.partials = reinterpret_cast<float*>(ws + l.wpart);
    win.args.grid_next = reinterpret_cast<unsigned int*>(ws + l.wnext);
    win.args.partial_floats = window_partial_bytes(p.window, upb, p.dvs, p.Nk) / 4;
    win.tiles = static_cast<int64_t>(tiles.size());
    win.maps = window_maps(p, args, t_last_window, g_window_tma.load());
    t_last_window_tma = win.maps.on != 0;
    win.grid = window_grid_maps(p, args, win.args, win.maps, g_window_grid.load());
    t_last_window_grid = win.grid.on != 0;
    args.wden = reinterpret_cast<float*>(ws + l.wden);
    args.probe_den = reinterpret_cast<float*>(ws + l.probe_den);
  }

  EventSet events;
  for (cudaEvent_t& e : events.ev) TA_CUDA_TRY(cudaEventCreate(&e), "cudaEventCreate");
  const double root = std::sqrt(std::fabs(p.slice_scale));
  const auto q_mul = static_cast<float>(p.slice_scale < 0 ? -root : root);
  const auto k_mul = static_cast<float>(root);
  Timers timers;
  DeviceStats host{};
  bool probe_failed = false;
  BatchEnv env{};
  env.c = &c;
  env.probe_rows = reinterpret_cast<const int64_t*>(ws + l.probe_rows);
  env.nprobe = static_cast<int32_t>(probe_rows.size());
  env.win = hybrid ? &win : nullptr;
  env.stream = stream;
  env.sms = sms;
  env.pb_y = reinterpret_cast<__nv_bfloat16*>(ws + l.pb_y);
  env.pb_vx = reinterpret_cast<__nv_bfloat16*>(ws + l.pb_vx);
  env.pb_direct_values = !prefix_block4(kernels) && prefix_block(kernels) && pb_direct_values(p);
  env.pb_state = reinterpret_cast<__nv_bfloat16*>(ws + l.S);
  CUtensorMap vmap{};
  env.pb_vmap = kernels == PassKernels::kPrefixBlockWg && env.pb_direct_values && args.keep == nullptr &&
                        make_token_map(*p.v, p.B, p.H, p.Nk, p.dv, 64, kPbKeyTile, &vmap, &env.pb_vmap_order)
                    ? &vmap
                    : nullptr;
  env.probe_failed = &probe_failed;
  env.host_stats = &host;
  env.ev = events.ev;
  env.timers = &timers;
  const int64_t units = p.B * p.H * p.G;
  for (int64_t u0 = 0; u0 < units && !probe_failed; u0 += upb) {
    const int64_t n = std::min(upb, units - u0);
    args.g.unit0 = u0;
    const auto un = static_cast<int32_t>(n);
    launch_token_factors(args.g, args.q, p.Nq, un, q_mul, c.qk_normalize, args.eps, args.vec_q,
                         const_cast<float*>(args.qfac), stream);
    launch_token_factors(args.g, args.k, p.Nk, un, k_mul, c.qk_normalize, args.eps, args.vec_k,
                         const_cast<float*>(args.kfac), stream);
    TA_CUDA_LAUNCHED("token factors");
    if (ta_status s = batch(args, n, env); s != TA_OK) return s;
  }
  TA_CUDA_TRY(cudaMemcpyAsync(&host, dstats, sizeof host, cudaMemcpyDeviceToHost, stream), "stats copy");
  TA_CUDA_TRY(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (stats) {
    stats->time_key_pass_ms = timers.key_ms;
    stats->time_probe_ms = timers.probe_ms;
    stats->time_query_pass_ms = timers.query_ms;
    if (!probe_rows.empty()) {
      stats->probe_ran = 1;
      stats->probe_samples = static_cast<int32_t>(probe_rows.size());
      stats->probe_denom_min = host.probe_min_bits == 0xffffffffu ? std::nan("") : decode_ordered(host.probe_min_bits);
    }
    stats->denom_count = static_cast<int64_t>(host.den_count);
    const auto finite = static_cast<int64_t>(host.den_count - host.non_finite);
    stats->denom_min = finite > 0 ? decode_ordered(host.den_min_bits) : std::nan("");
    stats->denom_max = finite > 0 ? decode_ordered(host.den_max_bits) : std::nan("");
    stats->denom_mean = finite > 0 ? host.den_sum / static_cast<double>(finite) : std::nan("");
    stats->denom_le_eps = static_cast<int64_t>(host.le_eps);
    stats->denom_non_finite = static_cast<int64_t>(host.non_finite);
    if (hybrid && !probe_failed) {  // as the CPU engine: reported when the passes ran
      stats->window_active = 1;
      stats->window_exact_pairs = exact_pairs_per_slice(p.window, mask, p.B, p.Nk) * p.H * p.G;
      stats->time_window_ms = timers.window_ms;
    }
  }
  if (probe_failed) {
    *reason = reason_from_flags(host.probe_flags);
    return TA_FALLBACK;
  }
  if (const ta_reason why = reason_from_flags(host.flags); why != TA_REASON_NONE) {
    *reason = why;
    return TA_FALLBACK;
  }
  if (c.quality_check && c.quality_check_samples > 0 && stats) {
    const auto t0 = std::chrono::steady_clock::now();
    if (ta_status s = quality_check(p, c, mask, l, ws, stream, stats); s != TA_OK) return s;
    stats->time_quality_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  *reason = TA_REASON_NONE;
  return TA_OK;
}

}  // namespace

bool available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear: "no device" must not poison later calls
    return false;
  }
  return count > 0;
}

namespace {

bool plan_for(const Problem& p, const ta_config& c, PassKernels kernels, MemoryPlan* plan, const char** why) {
  const int nc = state_columns(p, c);
  if (nc == 0 || p.ds > kMaxSliceDim) {
    if (why) *why = "slice dims beyond the CUDA kernels' limits";
    return false;
  }
  // R is bounded by max_feature_dim_R; keep the byte arithmetic in range anyway.
  if (p.R > (int64_t{1} << 40) || p.Nq > (int64_t{1} << 40) || p.Nk > (int64_t{1} << 40)) {
    if (why) *why = "sizes too large to plan";
    return false;
  }
  const int64_t upb = units_per_batch(p, nc, kernels);
  const Layout l = layout_for(p, c, upb, nc, kernels);
  plan->units_per_batch = upb;
  int64_t state_per_unit = p.R * nc * 4;
  if (prefix_block4(kernels)) {
    state_per_unit = pb4_state_bytes();
  } else if (prefix_block(kernels)) {
    state_per_unit = pb_state_bytes();
  }
  plan->state_bytes = upb * state_per_unit;
  plan->workspace_bytes = l.total;
  return true;
}

}  // namespace

bool plan_memory(const Problem& p, const ta_config& c, MemoryPlan* plan, const char** why) {
  return plan_for(p, c, kernels_for(p, c), plan, why);
}

void set_pass_smem_cap_for_testing(int64_t bytes) { g_smem_cap.store(bytes); }

PassKernels last_pass_kernels() { return t_last_kernels; }

int last_key_split() { return t_last_key_split; }

bool last_key_pass_tma() { return t_last_key_tma; }

void set_key_pass_tma_for_testing(bool allowed) { g_key_tma.store(allowed); }

void set_key_split_cap_for_testing(int cap) { g_key_split_cap.store(cap < 1 ? kPbMaxKeySplit : cap); }

void set_window_wgmma_for_testing(bool allowed) { g_window_wgmma.store(allowed); }

WindowKernel last_window_kernel() { return t_last_window; }

void set_window_tma_for_testing(bool allowed) { g_window_tma.store(allowed); }

bool last_window_tma() { return t_last_window_tma; }

void set_window_grid_kernel_for_testing(bool allowed) { g_window_grid.store(allowed); }

void set_window_grid_ctas_for_testing(int ctas) { g_window_grid_ctas.store(ctas); }

bool last_window_grid_kernel() { return t_last_window_grid; }

bool device_has_wgmma(int device) {
#if defined(TA_HAVE_SM90A)
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
#else
  (void)device;
  return false;
#endif
}

ta_status copy_mask_to_host(const ta_tensor& mask, std::vector<unsigned char>* storage, ta_tensor* host_view) {
  int64_t last = 0;
  for (int i = 0; i < mask.ndim; ++i) last += (mask.shape[i] - 1) * mask.strides[i];
  const size_t bytes = static_cast<size_t>(last + 1) * dtype_size(mask.dtype);
  storage->resize(bytes);
  DeviceGuard guard;
  TA_CUDA_TRY(cudaGetDevice(&guard.previous), "cudaGetDevice");
  TA_CUDA_TRY(cudaSetDevice(mask.device_id), "cudaSetDevice");
  TA_CUDA_TRY(cudaMemcpy(storage->data(), mask.data, bytes, cudaMemcpyDeviceToHost), "mask copy");
  *host_view = mask;
  host_view->data = storage->data();
  host_view->device = TA_DEVICE_CPU;
  host_view->device_id = 0;
  return TA_OK;
}

ta_status run(const Problem& p, const ta_config& c, const KeyMask& mask, void* workspace, size_t workspace_bytes,
              void* stream_ptr, ta_stats* stats, ta_reason* reason) {
  (void)workspace_bytes;  // checked by the caller against plan_memory
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  DeviceGuard guard;
  TA_CUDA_TRY(cudaGetDevice(&guard.previous), "cudaGetDevice");
  TA_CUDA_TRY(cudaSetDevice(p.q->device_id), "cudaSetDevice");
  // One selection for the plan and the run (the caller sized the workspace by plan_memory).
  const PassKernels kernels = kernels_for(p, c);
  t_last_kernels = kernels;
  t_last_key_split = 1;
  t_last_key_tma = false;
  t_last_window = WindowKernel::kNone;
  t_last_window_tma = false;
  t_last_window_grid = false;
  MemoryPlan plan;
  if (!plan_for(p, c, kernels, &plan, nullptr)) return fail(TA_ERR_INTERNAL, "CUDA call could not be planned");
  void* owned = nullptr;
  if (workspace == nullptr) {
    const cudaError_t e = cudaMallocAsync(&owned, static_cast<size_t>(plan.workspace_bytes), stream);
    if (e != cudaSuccess) {
      cudaGetLastError();
      *reason = TA_REASON_OUT_OF_MEMORY;
      return fail(TA_ERR_OUT_OF_MEMORY, "cudaMallocAsync of " + std::to_string(plan.workspace_bytes) +
                                            " bytes failed: " + cudaGetErrorString(e));
    }
    workspace = owned;
  }
  const auto addr = reinterpret_cast<uintptr_t>(workspace);
  auto* ws = reinterpret_cast<unsigned char*>((addr + kAlign - 1) / kAlign * kAlign);
  const ta_status s = run_impl(p, c, mask, kernels, ws, stream, stats, reason);
  if (owned != nullptr) {
    cudaFreeAsync(owned, stream);
    cudaStreamSynchronize(stream);
  }
  if (s == TA_ERR_DEVICE) cudaGetLastError();  // clear non-sticky errors for the next call
  return s;
}

}  // namespace ta::cuda
