// The local-exact hybrid's description of a call: which keys each query weights with
// exp instead of T_P (its "exact set"), derived from the token layout. Shared by the
// CPU engine, the CUDA host code and the fp64 reference, so all three agree on the set.
//
// Exact set E(i) of query i (before the key mask removes masked keys):
//  - text query (i < text): every key when window_text_queries, else the text keys when
//    window_text_keys, else nothing;
//  - grid query at (y, x) of grid g: the keys of grid g with max(|y'-y|, |x'-x|) <= r,
//    plus the text keys when window_text_keys.
// Output: with m_i = max(0, max_{j in E(i)} s_ij),
//   num_i = e^{-m_i} (sum_{j not in E(i)} T_P(s_ij) v_j) + sum_{j in E(i)} e^{s_ij - m_i} v_j
//   den_i = the same with v_j = 1;   o_i = num_i / den_i   (T_P: taylor_exp in reference.h).
// Backends form the Taylor rest as (state sum over all keys) - (Taylor terms of E(i)),
// except for rows whose exact set is every key, which have no Taylor part at all.
#pragma once

#include <cstdint>
#include <string>

#include "taylor_attention/taylor_attention.h"

namespace ta {

struct Window {
  bool active = false;
  ta_reason reason = TA_REASON_NONE;  // why a requested window does not apply
  int32_t radius = 0;
  bool text_keys = false, text_queries = false;
  ta_token_layout layout{};  // valid when active
  int64_t grid_start[TA_MAX_GRIDS] = {};  // first token of each grid

  int64_t text() const { return layout.text_tokens; }
  bool row_all_exact(int64_t i) const { return active && i < text() && text_queries; }

  // Calls fn(j) for every key of E(i) in increasing j (text keys first, then the window's
  // rows top to bottom). Does not consult the mask.
  template <class Fn>
  void for_each_exact_key(int64_t i, int64_t Nk, Fn&& fn) const {
    if (!active) return;
    const int64_t T = text();
    if (i < T) {
      const int64_t end = text_queries ? Nk : (text_keys ? T : 0);
      for (int64_t j = 0; j < end; ++j) fn(j);
      return;
    }
    if (text_keys) {
      for (int64_t j = 0; j < T; ++j) fn(j);
    }
    int g = 0;
    while (g + 1 < layout.num_grids && i >= grid_start[g + 1]) ++g;
    const int64_t W = layout.grid_width[g], Hh = layout.grid_height[g];
    const int64_t local = i - grid_start[g];
    const int64_t y = local / W, x = local % W;
    const int64_t y0 = y > radius ? y - radius : 0, y1 = y + radius < Hh - 1 ? y + radius : Hh - 1;
    const int64_t x0 = x > radius ? x - radius : 0, x1 = x + radius < W - 1 ? x + radius : W - 1;
    for (int64_t yy = y0; yy <= y1; ++yy) {
      const int64_t row = grid_start[g] + yy * W;
      for (int64_t xx = x0; xx <= x1; ++xx) fn(row + xx);
    }
  }
};

// Checks a layout's structure (counts in range, extents positive, sizes not overflowing);
// when tokens >= 0 also that text + sum(h*w) == tokens. Returns TA_OK or
// TA_ERR_INVALID_ARGUMENT with the message set.
ta_status validate_layout(const ta_token_layout& layout, int64_t tokens);

// The window of a call: active when config.window_radius > 0, a layout is given and
// Nq == Nk; otherwise inactive with the reason (NONE when no window was asked for).
Window make_window(const ta_token_layout* layout, const ta_config& config, int64_t Nq, int64_t Nk);

}  // namespace ta
