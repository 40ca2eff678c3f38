// layout_spec.h - token layouts (ta_token_layout) written on the command line.
//
// A SPEC is comma-separated items: at most one `text=N` (leading non-grid tokens, default
// 0) and 1 to TA_MAX_GRIDS `grid=HxW` items (row-major image grids, in token order), e.g.
// "text=256,grid=64x64" (Flux at 1024^2 with 256 text tokens) or
// "text=512,grid=64x64,grid=32x48" (a latent and a reference latent). A text-only layout
// is "text=N".
#ifndef TAYLOR_ATTN_LAYOUT_SPEC_H_
#define TAYLOR_ATTN_LAYOUT_SPEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "taylor_attention/taylor_attention.h"

namespace ta_cli {

// Parses a SPEC. On failure returns false with a one-line reason naming the bad item
// (without the flag name: callers prefix it).
bool parse_layout_spec(std::string_view spec, ta_token_layout *layout, std::string *error);

// Parses "HxW" (both >= 1), as in grid=HxW and check's --grid list.
bool parse_grid_extent(std::string_view text, int64_t *height, int64_t *width);

// text + sum of h*w (the caller's layout came from parse_layout_spec, so it fits).
int64_t layout_tokens(const ta_token_layout &layout);

// The canonical SPEC: "text=256,grid=64x64" (text=0 is left out when there are grids).
std::string layout_spec_text(const ta_token_layout &layout);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_LAYOUT_SPEC_H_
