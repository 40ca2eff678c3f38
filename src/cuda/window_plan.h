// The local-exact hybrid on the GPU, the part host and device share: the kernels'
// description of the token layout (WindowArgs), the exact set E(i) of core/window.h as
// index arithmetic the kernels can walk (ExactSet), the tensor-core kernel's tiles, the
// stages each tile streams through shared memory and the n-tiles each warp computes in
// them, the text-row key splits, and the host's count of exactly weighted pairs. Plain
// C++ (host + device under nvcc), so a host-only test can replay the kernel's walk and
// check it against core/window.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/mask.h"
#include "core/window.h"
#include "cuda/host_device.h"
#include "taylor_attention/taylor_attention.h"

namespace ta::cuda {

// ---- the tensor-core kernel's shape ---------------------------------------------------
// 8 warps x 16 query rows per block. A grid tile is `rows` grid rows x `width` columns
// (width 64, 32 or 16, rows = 128 / width), warp w taking 16 consecutive columns of one
// row; a text tile is up to 128 consecutive text queries.
inline constexpr int kWindowWarps = 8;
inline constexpr int kWindowTileQueries = 16 * kWindowWarps;
// Keys per text stage (a multiple of 16: the P.V k-steps pair n-tiles). 256 text keys
// are 4 full stages.
inline constexpr int kWindowTextKeys = 64;
// Columns per window stage: one piece of one key row. 72 = 64 + 2 x 4 holds a whole key
// row of a 64-wide tile at radius 4 (Flux's default), so each key row is one stage.
inline constexpr int kWindowPieceKeys = 72;
// Key rows of a staging buffer; the value buffer has 8 more, always zero, which the last
// P.V k-step of an odd n-tile count may read.
inline constexpr int kWindowStageRows = kWindowPieceKeys > kWindowTextKeys ? kWindowPieceKeys : kWindowTextKeys;
inline constexpr int kWindowPadRows = 8;
// Text rows exact over every key are split over key ranges (partials merged by a second
// kernel): at most this many splits, each at least this many keys.
inline constexpr int kWindowMaxSplits = 32;
inline constexpr int64_t kWindowMinSplitKeys = 512;

struct WindowTile {
  int64_t q0;        // text: first query; grid: token of (y, x0)
  int64_t y, x0;     // grid tiles: first query row and column
  int32_t rows;      // grid rows of queries (1 for text tiles)
  int32_t cols;      // queries per row (text tiles: the tile's queries)
  int32_t width;     // columns a row of warps covers: 16 x warps per row (128 for text tiles)
  int32_t grid;      // grid index, -1 for text queries
};

struct WindowArgs {
  int64_t text;    // leading text tokens
  int64_t radius;  // Chebyshev radius on the query's grid (clamped to the largest grid extent)
  int32_t text_keys, text_queries;
  int32_t num_grids;
  int32_t P;       // Taylor terms (T_P of the keys the hybrid weights exactly is subtracted)
  int64_t grid_start[TA_MAX_GRIDS], grid_height[TA_MAX_GRIDS], grid_width[TA_MAX_GRIDS];
  const WindowTile* tiles;  // device copy of window_tiles() (tensor-core kernel)
  // Text-row partials (m, l, acc[dvs]) per (unit in batch, text row, split): workspace
  // the engine sizes with window_partial_bytes(); NULL (or too small) means no splits.
  float* partials;
  int64_t partial_floats;
  // Set by the tensor-core launcher for one launch.
  int64_t tile_count, text_tiles;  // tiles in `tiles`, of which the leading text_tiles are text
  int64_t units;                   // units of the batch
  int32_t splits;                  // key ranges per text tile (1 unless text_queries)
  int64_t split_keys;              // keys per range (a multiple of kWindowTextKeys)
  // The 2-D kernel's work counters (one per grid launch, zeroed before it): workspace.
  unsigned int* grid_next;
};

TA_HD inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
TA_HD inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// a / b and a % b for a >= 0, b > 0: in 32 bits when both fit (always, in practice), which
// on the GPU is a few instructions instead of a call to the 64-bit division routine.
TA_HD inline void divmod(int64_t a, int64_t b, int64_t* q, int64_t* r) {
  if (a <= 0xffffffffLL && b <= 0xffffffffLL) {
    const auto a32 = static_cast<uint32_t>(a), b32 = static_cast<uint32_t>(b);
    *q = a32 / b32;
    *r = a32 % b32;
    return;
  }
  *q = a / b;
  *r = a % b;
}

// E(i) before the key mask, in core/window.h's order: keys [0, text_len), then the
// window's rows top to bottom, nx keys each, W apart.
struct ExactSet {
  int64_t count = 0;     // keys in the set
  int64_t text_len = 0;  // leading keys 0 .. text_len-1
  int64_t tok0 = 0;      // the window's top-left key
  int64_t W = 1, nx = 1; // grid row stride, window width
  TA_HD int64_t key(int64_t k) const {
    if (k < text_len) return k;
    int64_t row = 0, col = 0;
    divmod(k - text_len, nx, &row, &col);
    return tok0 + row * W + col;
  }
};

TA_HD inline int grid_of(const WindowArgs& w, int64_t i) {
  int g = 0;
  while (g + 1 < w.num_grids && i >= w.grid_start[g + 1]) ++g;
  return g;
}

TA_HD inline ExactSet exact_set(const WindowArgs& w, int64_t i, int64_t Nk) {
  ExactSet e;
  if (i < w.text) {
    e.text_len = w.text_queries ? Nk : (w.text_keys ? w.text : 0);
    e.count = e.text_len;
    return e;
  }
  e.text_len = w.text_keys ? w.text : 0;
  const int g = grid_of(w, i);
  const int64_t W = w.grid_width[g], H = w.grid_height[g], local = i - w.grid_start[g];
  const int64_t y = local / W, x = local % W;
  const int64_t y0 = max64(y - w.radius, 0), y1 = min64(y + w.radius, H - 1);
  const int64_t x0 = max64(x - w.radius, 0), x1 = min64(x + w.radius, W - 1);
  e.W = W;
  e.nx = x1 - x0 + 1;
  e.tok0 = w.grid_start[g] + y0 * W + x0;
  e.count = e.text_len + (y1 - y0 + 1) * e.nx;
  return e;
}

// ---- the tensor-core kernel's walk ----------------------------------------------------
// A tile streams its candidate keys through shared memory in stages: first its text range
// in stages of kWindowTextKeys keys (every key exact for every query of the tile), then
// for grid tiles each key row y-r .. y+rows-1+r (clamped to the grid) in pieces of
// kWindowPieceKeys columns. Columns are counted in "span" coordinates c = column - col_lo
// with col_lo = x0 - r, so warp w (columns x0 + 16 wx ..) reaches c in [16 wx, 16 wx + 16
// + 2r): an n-tile (8 keys) boundary. Key c is exact for the query in tile column lc
// (0-based) when 0 <= c - lc <= 2r, and for queries of grid row qy when |ky - qy| <= r.

// n-tiles a warp computes in a window stage: its reach of 16 + 2r columns in whole
// n-tiles (3 up to r = 4, 6 up to r = 16), else the whole piece.
TA_HD inline int window_stage_ntiles(int64_t radius) {
  return 16 + 2 * radius <= 24 ? 3 : 16 + 2 * radius <= 48 ? 6 : kWindowPieceKeys / 8;
}

struct TilePlan {
  int64_t text_begin = 0, text_end = 0, text_stages = 0;  // text-stage key range
  int64_t ky_lo = 0, key_rows = 0, pieces = 0;           // window key rows, pieces per row
  int64_t col_lo = 0, span = 0;                           // span coordinates (see above)
  int64_t W = 0, row0_tok = 0;                            // grid width, token of (ky_lo, column 0)
  int64_t stages = 0;
};

// The stages of tile t (text tiles with text_queries: key range `split` of w.splits).
TA_HD inline TilePlan tile_plan(const WindowArgs& w, const WindowTile& t, int64_t split, int64_t Nk) {
  TilePlan p;
  if (t.grid < 0 && w.text_queries) {
    const int64_t per = w.split_keys > 0 ? w.split_keys : Nk;
    p.text_begin = min64(split * per, Nk);
    p.text_end = min64(p.text_begin + per, Nk);
  } else {
    p.text_end = w.text_keys ? w.text : 0;
  }
  p.text_stages = (p.text_end - p.text_begin + kWindowTextKeys - 1) / kWindowTextKeys;
  if (t.grid >= 0) {
    const int64_t H = w.grid_height[t.grid], W = w.grid_width[t.grid];
    p.ky_lo = max64(t.y - w.radius, 0);
    p.key_rows = min64(t.y + t.rows - 1 + w.radius, H - 1) - p.ky_lo + 1;
    p.col_lo = t.x0 - w.radius;
    p.span = t.cols + 2 * w.radius;
    p.pieces = (p.span + kWindowPieceKeys - 1) / kWindowPieceKeys;
    p.W = W;
    p.row0_tok = w.grid_start[t.grid] + p.ky_lo * W;
  }
  p.stages = p.text_stages + p.key_rows * p.pieces;
  return p;
}

// The keys of one stage: buffer row i holds token tok_first + (i - row_first) for
// row_first <= i < row_first + n (zeros elsewhere, and for masked keys).
struct StageKeys {
  int64_t tok_first = 0;
  int32_t row_first = 0, n = 0;
  bool window = false;  // a window piece (else text keys)
  int64_t ky = 0;       // window: key row
  int64_t pc0 = 0;      // window: span coordinate of buffer row 0
};

TA_HD inline StageKeys stage_keys(const TilePlan& p, int64_t stage) {
  StageKeys k;
  if (stage < p.text_stages) {
    k.tok_first = p.text_begin + stage * kWindowTextKeys;
    k.n = static_cast<int32_t>(min64(kWindowTextKeys, p.text_end - k.tok_first));
    return k;
  }
  int64_t row = 0, piece = 0;
  divmod(stage - p.text_stages, p.pieces, &row, &piece);
  k.window = true;
  k.ky = p.ky_lo + row;
  k.pc0 = piece * kWindowPieceKeys;
  // Columns of this piece inside both the span and the grid.
  const int64_t lo = max64(k.pc0, -p.col_lo);
  const int64_t hi = min64(min64(k.pc0 + kWindowPieceKeys, p.span), p.W - p.col_lo);
  k.row_first = static_cast<int32_t>(min64(lo - k.pc0, kWindowPieceKeys));
  k.n = static_cast<int32_t>(max64(hi - lo, 0));
  k.tok_first = p.row0_tok + row * p.W + p.col_lo + lo;
  return k;
}

// The order a block walks its stages in: stage_keys(p, window_stage_order(p, t, st)) for
// st = 0 .. p.stages - 1. Any order is exact (online softmax); this one starts a grid tile
// at its first query row and moves outwards (offsets 0, +1, -1, +2, -2, ... from that row,
// the longer side alone once the shorter one is used up), and puts the text stages last,
// so a row's running maximum usually reaches its largest scores (the keys next to the
// query) early and the accumulator is rescaled less often. Text tiles keep their order, and
// so does the kernel for 32-dim slices (this arithmetic pushed it past its 128-register cap
// into spills on sm_80 / sm_86; it rescales at every growth anyway).
TA_HD inline int64_t window_stage_order(const TilePlan& p, const WindowTile& t, int64_t st) {
  const int64_t window_stages = p.stages - p.text_stages;
  if (t.grid < 0 || window_stages <= 0) return st;
  if (st >= window_stages) return st - window_stages;  // the text stages, last
  int64_t n = 0, piece = 0;
  divmod(st, p.pieces, &n, &piece);
  const int64_t c = t.y - p.ky_lo, below = c, above = p.key_rows - 1 - c;
  const int64_t m = min64(below, above);
  int64_t offset = 0;
  if (n == 0) {
    offset = 0;
  } else if (n <= 2 * m) {
    offset = (n & 1) ? (n + 1) / 2 : -(n / 2);
  } else {
    offset = above > below ? n - m : -(n - m);
  }
  return p.text_stages + (c + offset) * p.pieces + piece;
}

// Warp `warp`'s queries in tile t: grid row qy (grid tiles), tile columns lc0 .. lc0+15
// (those < t.cols exist). Query lc0 + l is token t.q0 + wy * W + lc0 + l.
struct WarpRows {
  bool active = false;
  int64_t wy = 0, qy = 0;
  int32_t lc0 = 0;
};

TA_HD inline WarpRows warp_rows(const WindowTile& t, int warp) {
  WarpRows r;
  const int per_row = t.width / 16;
  r.wy = warp / per_row;
  r.lc0 = 16 * (warp % per_row);
  r.qy = t.y + r.wy;
  r.active = r.wy < t.rows && r.lc0 < t.cols;
  return r;
}

// First of the `nw` consecutive n-tiles (8 buffer rows each) a warp computes in a stage,
// or -1 when the stage holds nothing for it. Text stages: all of them from 0. Window
// stages: the n-tiles of its reach that hold staged keys, moved left where they would
// pass the piece (the extra keys are outside its queries' windows: the exact-set test
// weights them 0).
TA_HD inline int warp_first_ntile(const WindowArgs& w, const TilePlan& p, const StageKeys& k, const WarpRows& r,
                                  int nw) {
  if (!r.active) return -1;
  if (!k.window) return 0;
  if (k.ky < r.qy - w.radius || k.ky > r.qy + w.radius) return -1;
  const int64_t lo = max64(max64(r.lc0, k.pc0 + k.row_first), k.pc0);
  const int64_t hi = min64(min64(r.lc0 + 16 + 2 * w.radius, k.pc0 + k.row_first + k.n), p.span);
  if (lo >= hi) return -1;
  return static_cast<int>(min64((lo - k.pc0) / 8, kWindowPieceKeys / 8 - nw));
}

// Whether buffer row i of a window stage is in the exact set of the warp's query lc0 + l.
TA_HD inline bool window_exact(const StageKeys& k, int32_t lc0, int l, int i, int64_t radius) {
  const int64_t d = k.pc0 + i - lc0 - l;
  return d >= 0 && d <= 2 * radius;
}

// ---- the 2-D grid kernel (window_grid_wg.cuh, sm_90a) -----------------------------------
// For radius 1..kGridMaxRadius a CTA tile is kGridTileRows x kGridTileCols queries of one grid:
// warpgroup 0 takes the top 8 x 8 queries, warpgroup 1 the bottom 8 x 8 (64 queries each, one
// wgmma M). Its window keys are the patch of key rows y0 - r .. y0 + 15 + r and key columns
// x0 - r .. x0 - r + 15 (kGridPatchCols covers the 8 + 2r columns a query row reaches),
// staged kGridStageRows key rows (64 keys) at a time; its text keys 64 at a time. Warpgroup 0
// reaches patch rows [0, 8 + 2r), warpgroup 1 [8, 16 + 2r): the middle stages serve both.
// Square 8 x 8 query blocks compute 256 window scores per query for the 81 exact ones at r = 4
// (the mma.sync kernel: 216 for 81, but on 24-key slivers with per-warp bookkeeping).
inline constexpr int kGridWgRows = 8;
inline constexpr int kGridTileRows = 2 * kGridWgRows, kGridTileCols = 8;
inline constexpr int kGridStageRows = 4, kGridPatchCols = 16;
inline constexpr int kGridStageKeys = kGridStageRows * kGridPatchCols;
inline constexpr int kGridMaxRadius = (kGridPatchCols - kGridTileCols) / 2;
// Window stages of a tile at the largest radius (grid_window_stages(kGridMaxRadius)).
inline constexpr int kGridMaxWindowStages = (kGridTileRows + 2 * kGridMaxRadius + kGridStageRows - 1) / kGridStageRows;
// The first patch stage warpgroup 1 reaches (its rows start 8 below warpgroup 0's).
inline constexpr int kGridWg1First = kGridWgRows / kGridStageRows;
static_assert(kGridStageKeys == 64 && kGridWgRows % kGridStageRows == 0, "64-key stages, aligned to the warpgroups");

// Window stages of a tile (patch rows 16 + 2r, kGridStageRows per stage).
TA_HD inline int grid_window_stages(int64_t r) {
  return static_cast<int>((kGridTileRows + 2 * r + kGridStageRows - 1) / kGridStageRows);
}
// Patch stages warpgroup 0 reaches: [0, grid_wg0_stages); warpgroup 1: [kGridWg1First, grid_window_stages).
TA_HD inline int grid_wg0_stages(int64_t r) {
  return static_cast<int>((kGridWgRows + 2 * r + kGridStageRows - 1) / kGridStageRows);
}
TA_HD inline bool grid_stage_used(int64_t r, int wg, int patch_stage) {
  return wg == 0 ? patch_stage < grid_wg0_stages(r) : patch_stage >= kGridWg1First;
}
// The order a tile's window stages are staged in: i -> patch stage. The stages both
// warpgroups reach first, then the others alternating between the warpgroups (0, w0, 1,
// w0 + 1 with w0 = grid_wg0_stages: for r = 1..4 each warpgroup has two of its own), so
// neither waits long for a stage only the other one uses.
TA_HD inline int grid_stage_at(int64_t r, int i) {
  const int w0 = grid_wg0_stages(r), shared = w0 - kGridWg1First;
  if (i < shared) return kGridWg1First + i;
  const int j = i - shared;
  return (j & 1) ? w0 + (j >> 1) : (j >> 1);
}
// Whether key (patch row pr, patch column pc) is in the window of the tile's query at local
// row qr (0..15), column qc (0..7): within r rows and r columns of it.
TA_HD inline bool grid_patch_exact(int64_t r, int pr, int pc, int qr, int qc) {
  return static_cast<unsigned>(pr - qr) <= static_cast<unsigned>(2 * r) &&
         static_cast<unsigned>(pc - qc) <= static_cast<unsigned>(2 * r);
}
TA_HD inline int64_t grid_tiles_x(int64_t W) { return (W + kGridTileCols - 1) / kGridTileCols; }
TA_HD inline int64_t grid_tiles_y(int64_t H) { return (H + kGridTileRows - 1) / kGridTileRows; }
// Whether the 2-D kernel covers the grid queries of a call with this (clamped) radius.
TA_HD inline bool grid_kernel_radius_ok(int64_t r) { return r >= 1 && r <= kGridMaxRadius; }

// ---- host side ----------------------------------------------------------------------

inline WindowArgs window_args(const Window& win, int32_t P) {
  WindowArgs a{};
  a.text = win.text();
  a.text_keys = win.text_keys ? 1 : 0;
  a.text_queries = win.text_queries ? 1 : 0;
  a.num_grids = win.layout.num_grids;
  a.P = P;
  // A radius beyond every grid's extent selects whole grids, as the grid extent does;
  // clamping keeps the kernels' column arithmetic in 32-bit range.
  int64_t extent = 1;
  for (int g = 0; g < win.layout.num_grids; ++g) {
    a.grid_start[g] = win.grid_start[g];
    a.grid_height[g] = win.layout.grid_height[g];
    a.grid_width[g] = win.layout.grid_width[g];
    extent = std::max({extent, win.layout.grid_height[g], win.layout.grid_width[g]});
  }
  a.radius = std::min<int64_t>(win.radius, extent);
  a.splits = 1;
  return a;
}

// Modelled cost of a stage in n-tile units (the work of its busiest warp plus a fixed
// cost for the barrier and bookkeeping), the unit of the tile-shape and split choices.
inline constexpr int64_t kWindowStageOverhead = 2;

inline int64_t window_tile_cost(const WindowArgs& a, const WindowTile& t, int64_t Nk) {
  const TilePlan p = tile_plan(a, t, 0, Nk);
  return p.text_stages * (kWindowTextKeys / 8 + kWindowStageOverhead) +
         (p.stages - p.text_stages) * (window_stage_ntiles(a.radius) + kWindowStageOverhead);
}

// Grid g's tiles of one width, in order: rows of tiles top to bottom, left to right.
template <class Fn>
void for_each_grid_tile(const WindowArgs& a, int g, int32_t width, Fn&& fn) {
  const int64_t H = a.grid_height[g], W = a.grid_width[g], R = kWindowTileQueries / width;
  for (int64_t y = 0; y < H; y += R) {
    for (int64_t x0 = 0; x0 < W; x0 += width) {
      fn(WindowTile{a.grid_start[g] + y * W + x0, y, x0, static_cast<int32_t>(std::min(R, H - y)),
                    static_cast<int32_t>(std::min<int64_t>(width, W - x0)), width, g});
    }
  }
}

// The tile width of grid g with the least modelled cost (64 wins ties, then 32): 64 for
// wide grids (a key row of 72 columns serves 128 queries), narrower for narrow grids.
inline int32_t window_grid_width(const WindowArgs& a, int g) {
  int32_t best = 64;
  int64_t best_cost = -1;
  for (int32_t width : {64, 32, 16}) {
    int64_t cost = 0;
    for_each_grid_tile(a, g, width, [&](const WindowTile& t) { cost += window_tile_cost(a, t, 0); });
    if (best_cost < 0 || cost < best_cost) {
      best = width;
      best_cost = cost;
    }
  }
  return best;
}

// Calls fn(tile) for the tensor-core kernel's tiles: the text tiles first (a text row may
// span every key, so those are the longest and should start first), then each grid's.
template <class Fn>
void for_each_window_tile(const WindowArgs& a, Fn&& fn) {
  const int64_t q = kWindowTileQueries;
  for (int64_t q0 = 0; q0 < a.text; q0 += q) {
    fn(WindowTile{q0, 0, 0, 1, static_cast<int32_t>(std::min(q, a.text - q0)), static_cast<int32_t>(q), -1});
  }
  for (int g = 0; g < a.num_grids; ++g) for_each_grid_tile(a, g, window_grid_width(a, g), fn);
}

inline int64_t window_text_tile_count(const WindowArgs& a) {
  return (a.text + kWindowTileQueries - 1) / kWindowTileQueries;
}

inline int64_t window_tile_count(const Window& win) {
  int64_t n = 0;
  for_each_window_tile(window_args(win, 0), [&](const WindowTile&) { ++n; });
  return n;
}

inline std::vector<WindowTile> window_tiles(const Window& win) {
  std::vector<WindowTile> tiles;
  for_each_window_tile(window_args(win, 0), [&](const WindowTile& t) { tiles.push_back(t); });
  return tiles;
}

// Modelled cost of one unit's grid tiles.
inline int64_t window_grid_cost(const WindowArgs& a) {
  int64_t cost = 0;
  for (int g = 0; g < a.num_grids; ++g) {
    for_each_grid_tile(a, g, window_grid_width(a, g), [&](const WindowTile& t) { cost += window_tile_cost(a, t, 0); });
  }
  return cost;
}

// Key ranges per text tile for text rows exact over every key. Text blocks start first;
// split until one is at most a third of an SM's modelled share of the launch, with at
// least kWindowMinSplitKeys keys per range and at most kWindowMaxSplits ranges.
// grid_cost: window_grid_cost(a).
inline int32_t window_text_splits(const WindowArgs& a, int64_t units, int64_t Nk, int sms, int64_t grid_cost) {
  if (!a.text_queries || a.text <= 0 || units <= 0 || Nk <= 0) return 1;
  const int64_t whole = (Nk + kWindowTextKeys - 1) / kWindowTextKeys * (kWindowTextKeys / 8 + kWindowStageOverhead);
  const int64_t per_sm = units * (grid_cost + window_text_tile_count(a) * whole) / std::max(sms, 1);
  const int64_t target = std::max<int64_t>(per_sm / 3, 1);
  const int64_t want = (whole + target - 1) / target;
  const int64_t most = std::min<int64_t>(kWindowMaxSplits, std::max<int64_t>(1, Nk / kWindowMinSplitKeys));
  return static_cast<int32_t>(std::clamp<int64_t>(want, 1, most));
}

// Key ranges per text tile when the text tiles run alone (the 2-D kernel takes the grid
// queries in a launch of its own): about three blocks per SM, with at least
// kWindowMinSplitKeys keys per range and at most kWindowMaxSplits ranges.
inline int32_t window_text_only_splits(const WindowArgs& a, int64_t units, int64_t Nk, int sms) {
  if (!a.text_queries || a.text <= 0 || units <= 0 || Nk <= 0) return 1;
  const int64_t tiles = units * window_text_tile_count(a);
  const int64_t want = (3 * int64_t{std::max(sms, 1)} + tiles - 1) / tiles;
  const int64_t most = std::min<int64_t>(kWindowMaxSplits, std::max<int64_t>(1, Nk / kWindowMinSplitKeys));
  return static_cast<int32_t>(std::clamp<int64_t>(want, 1, most));
}

inline int64_t window_partial_floats_for(const WindowArgs& a, int64_t units, int32_t splits, int64_t dvs) {
  return splits > 1 ? units * a.text * splits * (dvs + 2) : 0;
}

// Sets a launch's split count and the keys per range (kWindowTextKeys-aligned).
inline void window_set_splits(WindowArgs& a, int32_t splits, int64_t Nk) {
  a.splits = std::max(splits, 1);
  const int64_t per = (Nk + a.splits - 1) / a.splits;
  a.split_keys = std::max<int64_t>((per + kWindowTextKeys - 1) / kWindowTextKeys * kWindowTextKeys, kWindowTextKeys);
}

// Key ranges of a launch that hold keys (window_set_splits rounds the range length up to
// whole stages, so the last ranges may be empty): the merge reads only these, and the 2-D
// kernel's text items cover only these.
TA_HD inline int32_t window_live_splits(const WindowArgs& a, int64_t Nk) {
  if (a.splits <= 1 || a.split_keys <= 0) return 1;
  return static_cast<int32_t>(min64(a.splits, max64((Nk + a.split_keys - 1) / a.split_keys, 1)));
}

// SM count the workspace is sized for when the device is not known (an H100's). Any value
// is safe: the launcher lowers the splits to what the workspace holds.
inline constexpr int kWindowSizingSms = 132;

// Workspace bytes for the text-row partials of batches of up to `units_per_batch` units
// (0 when no launch would split): the largest need over the batch sizes the launcher may
// see, with either choice of splits (text tiles with the grid tiles or alone).
inline int64_t window_partial_bytes(const Window& win, int64_t units_per_batch, int64_t dvs, int64_t Nk,
                                    int sms = kWindowSizingSms) {
  if (!win.active || !win.text_queries || win.text() <= 0) return 0;
  const WindowArgs a = window_args(win, 0);
  const int64_t grid_cost = window_grid_cost(a);
  int64_t most = 0;
  for (int64_t u = 1; u <= units_per_batch; ++u) {
    const int32_t splits = std::max(window_text_splits(a, u, Nk, sms, grid_cost), window_text_only_splits(a, u, Nk, sms));
    most = std::max(most, window_partial_floats_for(a, u, splits, dvs));
  }
  return most * 4;
}

// (query, attended key) pairs in the exact sets of one head slice, summed over the batch:
// what the CPU engine counts key by key. Without a mask the window counts separate into
// rows times columns (O(H + W) per grid); with one, prefix sums of the mask over keys (text
// keys) and per grid in 2-D (windows) give O(B x N) whatever the radius.
inline int64_t exact_pairs_per_slice(const Window& win, const KeyMask& mask, int64_t B, int64_t Nk) {
  if (!win.active) return 0;
  const int64_t T = win.text(), r = win.radius;
  // Keys within the radius along one axis of n positions, summed over the positions.
  auto axis_sum = [r](int64_t n) {
    int64_t sum = 0;
    for (int64_t p = 0; p < n; ++p) sum += std::min<int64_t>(p + r, n - 1) - std::max<int64_t>(p - r, 0) + 1;
    return sum;
  };
  if (mask.empty()) {
    const int64_t text_keys = win.text_keys ? T : 0;
    int64_t n = T * (win.text_queries ? Nk : text_keys);
    for (int g = 0; g < win.layout.num_grids; ++g) {
      const int64_t H = win.layout.grid_height[g], W = win.layout.grid_width[g];
      n += H * W * text_keys + axis_sum(H) * axis_sum(W);
    }
    return n * B;
  }
  const int64_t distinct = mask.batch_stride == 0 ? 1 : B;
  std::vector<int64_t> prefix(static_cast<size_t>(Nk) + 1), sat;
  int64_t total = 0;
  for (int64_t b = 0; b < distinct; ++b) {
    for (int64_t j = 0; j < Nk; ++j) {
      prefix[static_cast<size_t>(j) + 1] = prefix[static_cast<size_t>(j)] + (mask.attends(b, j) ? 1 : 0);
    }
    const int64_t text_keys = win.text_keys ? prefix[static_cast<size_t>(T)] : 0;
    int64_t n = T * (win.text_queries ? prefix[static_cast<size_t>(Nk)] : text_keys);
    for (int g = 0; g < win.layout.num_grids; ++g) {
      const int64_t H = win.layout.grid_height[g], W = win.layout.grid_width[g], s = win.grid_start[g];
      n += H * W * text_keys;
      // sat[(y + 1) * (W + 1) + x + 1]: attended keys of the grid in rows <= y, columns <= x.
      sat.assign(static_cast<size_t>((H + 1) * (W + 1)), 0);
      auto at = [&](int64_t y, int64_t x) -> int64_t& { return sat[static_cast<size_t>(y * (W + 1) + x)]; };
      for (int64_t y = 0; y < H; ++y) {
        for (int64_t x = 0; x < W; ++x) {
          at(y + 1, x + 1) = (mask.attends(b, s + y * W + x) ? 1 : 0) + at(y, x + 1) + at(y + 1, x) - at(y, x);
        }
      }
      for (int64_t y = 0; y < H; ++y) {
        const int64_t y0 = std::max<int64_t>(y - r, 0), y1 = std::min<int64_t>(y + r, H - 1);
        for (int64_t x = 0; x < W; ++x) {
          const int64_t x0 = std::max<int64_t>(x - r, 0), x1 = std::min<int64_t>(x + r, W - 1);
          n += at(y1 + 1, x1 + 1) - at(y0, x1 + 1) - at(y1 + 1, x0) + at(y0, x0);
        }
      }
    }
    total += n;
  }
  return distinct == 1 ? total * B : total;
}

// ---- test seams (defined by the CUDA backend; not part of the ABI) -------------------------

// The window kernel a hybrid run used: none (no hybrid), the fp32 SIMT kernel, the tensor-core
// kernel on mma.sync, or the tensor-core kernel with its text stages on wgmma.
enum class WindowKernel { kNone, kSimt, kMma, kMmaWg };
// Lets the selection use the wgmma text stages where the device has them (the default), or
// not, so tests on a wgmma card also run the mma.sync kernel. Process-wide.
void set_window_wgmma_for_testing(bool allowed);
// The window kernel the calling thread's last CUDA run selected (kNone when it ran no hybrid).
WindowKernel last_window_kernel();
// Lets the wgmma window kernel stage keys and values by the TMA where it applies (the
// default), or not. Process-wide.
void set_window_tma_for_testing(bool allowed);
// Whether the calling thread's last CUDA run's window kernel staged by the TMA.
bool last_window_tma();
// Lets the TMA-staged wgmma kernel leave the grid queries to the 2-D kernel
// (window_grid_wg.cuh) where it applies (the default), or not. Process-wide.
void set_window_grid_kernel_for_testing(bool allowed);
// Caps the 2-D kernel's persistent CTAs (0: one per SM, the default), so small tests walk
// several tiles per CTA and wrap its stage ring. Process-wide.
void set_window_grid_ctas_for_testing(int ctas);
// Whether the calling thread's last CUDA run left its grid queries to the 2-D kernel.
bool last_window_grid_kernel();

}  // namespace ta::cuda
