// The local-exact hybrid on the GPU, the part host and device share: the kernels'
// description of the token layout (WindowArgs), the exact set E(i) of core/window.h as
// index arithmetic the kernels can walk (ExactSet), the tensor-core kernel's query tiles
// and their candidate keys, and the host's count of exactly weighted pairs. Plain C++
// (host + device under nvcc), so a host-only test can check it against core/window.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/mask.h"
#include "core/window.h"
#include "taylor_attention/taylor_attention.h"

#if defined(__CUDACC__)
#define TA_HD __host__ __device__
#else
#define TA_HD
#endif

namespace ta::cuda {

// Queries per tile of the tensor-core window kernel (4 warps x 16 rows).
inline constexpr int kWindowTileQueries = 64;

// Up to kWindowTileQueries consecutive queries sharing one candidate key list: text
// queries, or one run of a grid row.
struct WindowTile {
  int64_t q0;     // first query
  int64_t y, x0;  // grid row and column of the first query (grid tiles)
  int32_t count;  // queries in the tile
  int32_t grid;   // grid index, -1 for text queries
};

struct WindowArgs {
  int64_t text;    // leading text tokens
  int64_t radius;  // Chebyshev radius on the query's grid
  int32_t text_keys, text_queries;
  int32_t num_grids;
  int32_t P;       // Taylor terms (T_P of the keys the hybrid weights exactly is subtracted)
  int64_t grid_start[TA_MAX_GRIDS], grid_height[TA_MAX_GRIDS], grid_width[TA_MAX_GRIDS];
  const WindowTile* tiles;  // device copy of window_tiles() (tensor-core kernel)
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

// Candidate keys of a tile: keys [0, text_len) are exact for every query of the tile;
// then `rows` grid rows (W apart, from row_tok0) of `cols` columns from col_lo, where key
// column c is exact for the query in column x when |c - x| <= radius.
struct TileKeys {
  int64_t text_len = 0;
  int64_t rows = 0, row_tok0 = 0, W = 1;
  int64_t col_lo = 0, cols = 0;
};

TA_HD inline TileKeys tile_keys(const WindowArgs& w, const WindowTile& t, int64_t Nk) {
  TileKeys k;
  if (t.grid < 0) {
    k.text_len = w.text_queries ? Nk : (w.text_keys ? w.text : 0);
    return k;
  }
  k.text_len = w.text_keys ? w.text : 0;
  const int64_t W = w.grid_width[t.grid], H = w.grid_height[t.grid];
  const int64_t y0 = max64(t.y - w.radius, 0), y1 = min64(t.y + w.radius, H - 1);
  k.col_lo = max64(t.x0 - w.radius, 0);
  k.cols = min64(t.x0 + t.count - 1 + w.radius, W - 1) - k.col_lo + 1;
  k.rows = y1 - y0 + 1;
  k.W = W;
  k.row_tok0 = w.grid_start[t.grid] + y0 * W + k.col_lo;
  return k;
}

// ---- host side ----------------------------------------------------------------------

inline WindowArgs window_args(const Window& win, int32_t P) {
  WindowArgs a{};
  a.text = win.text();
  a.radius = win.radius;
  a.text_keys = win.text_keys ? 1 : 0;
  a.text_queries = win.text_queries ? 1 : 0;
  a.num_grids = win.layout.num_grids;
  a.P = P;
  for (int g = 0; g < win.layout.num_grids; ++g) {
    a.grid_start[g] = win.grid_start[g];
    a.grid_height[g] = win.layout.grid_height[g];
    a.grid_width[g] = win.layout.grid_width[g];
  }
  return a;
}

// Calls fn(tile) for the tensor-core kernel's tiles: the text queries first (a text row
// may span every key, so those are the longest tiles and should start first), then each
// grid row in runs of at most kWindowTileQueries queries.
template <class Fn>
void for_each_window_tile(const Window& win, Fn&& fn) {
  const int64_t q = kWindowTileQueries;
  for (int64_t q0 = 0; q0 < win.text(); q0 += q) {
    fn(WindowTile{q0, 0, 0, static_cast<int32_t>(std::min(q, win.text() - q0)), -1});
  }
  for (int g = 0; g < win.layout.num_grids; ++g) {
    const int64_t H = win.layout.grid_height[g], W = win.layout.grid_width[g];
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t x0 = 0; x0 < W; x0 += q) {
        fn(WindowTile{win.grid_start[g] + y * W + x0, y, x0, static_cast<int32_t>(std::min(q, W - x0)), g});
      }
    }
  }
}

inline int64_t window_tile_count(const Window& win) {
  const int64_t q = kWindowTileQueries;
  int64_t n = (win.text() + q - 1) / q;
  for (int g = 0; g < win.layout.num_grids; ++g) {
    n += win.layout.grid_height[g] * ((win.layout.grid_width[g] + q - 1) / q);
  }
  return n;
}

inline std::vector<WindowTile> window_tiles(const Window& win) {
  std::vector<WindowTile> tiles;
  tiles.reserve(static_cast<size_t>(window_tile_count(win)));
  for_each_window_tile(win, [&](const WindowTile& t) { tiles.push_back(t); });
  return tiles;
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

}  // namespace ta::cuda
