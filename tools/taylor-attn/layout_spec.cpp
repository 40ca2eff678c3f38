// layout_spec.cpp - see layout_spec.h.
#include "layout_spec.h"

#include <cstring>

#include "args.h"

namespace ta_cli {
namespace {

// 'text' in quotes, built by append (GCC 12 -Wrestrict false positive on "'" + string).
std::string quoted(std::string_view text) {
  std::string s;
  s.reserve(text.size() + 2);
  s.push_back('\'');
  s.append(text);
  s.push_back('\'');
  return s;
}

}  // namespace

bool parse_grid_extent(std::string_view text, int64_t *height, int64_t *width) {
  const size_t x = text.find('x');
  if (x == std::string_view::npos) return false;
  int64_t h = 0, w = 0;
  if (!parse_int64(text.substr(0, x), &h) || !parse_int64(text.substr(x + 1), &w)) return false;
  if (h < 1 || w < 1) return false;
  *height = h;
  *width = w;
  return true;
}

bool parse_layout_spec(std::string_view spec, ta_token_layout *layout, std::string *error) {
  ta_token_layout out;
  std::memset(&out, 0, sizeof out);
  bool have_text = false;
  int64_t total = 0;
  if (spec.empty()) {
    *error = "empty layout (expected e.g. text=256,grid=64x64)";
    return false;
  }
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t comma = spec.find(',', start);
    const std::string_view item =
        spec.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    start = comma == std::string_view::npos ? spec.size() + 1 : comma + 1;
    if (item.empty()) {
      *error = "empty item in " + quoted(spec);
      return false;
    }
    if (item.substr(0, 5) == "text=") {
      int64_t n = 0;
      if (have_text) {
        *error = "text= given twice in " + quoted(spec);
        return false;
      }
      if (!parse_int64(item.substr(5), &n) || n < 0) {
        *error = quoted(item) + ": text tokens must be an integer >= 0";
        return false;
      }
      have_text = true;
      out.text_tokens = n;
      if (__builtin_add_overflow(total, n, &total)) {
        *error = "the token count of " + quoted(spec) + " overflows 64 bits";
        return false;
      }
    } else if (item.substr(0, 5) == "grid=") {
      int64_t h = 0, w = 0, size = 0;
      if (!parse_grid_extent(item.substr(5), &h, &w)) {
        *error = quoted(item) + ": a grid is HxW with integers >= 1 (e.g. grid=64x64)";
        return false;
      }
      if (out.num_grids == TA_MAX_GRIDS) {
        *error = "more than " + std::to_string(TA_MAX_GRIDS) + " grids in " + quoted(spec);
        return false;
      }
      if (__builtin_mul_overflow(h, w, &size) || __builtin_add_overflow(total, size, &total)) {
        *error = "the token count of " + quoted(spec) + " overflows 64 bits";
        return false;
      }
      out.grid_height[out.num_grids] = h;
      out.grid_width[out.num_grids] = w;
      ++out.num_grids;
    } else {
      *error = "unknown item " + quoted(item) + " (expected text=N or grid=HxW)";
      return false;
    }
  }
  if (total == 0) {
    *error = quoted(spec) + " has no tokens";
    return false;
  }
  *layout = out;
  return true;
}

int64_t layout_tokens(const ta_token_layout &layout) {
  int64_t n = layout.text_tokens;
  for (int g = 0; g < layout.num_grids && g < TA_MAX_GRIDS; ++g) {
    n += layout.grid_height[g] * layout.grid_width[g];
  }
  return n;
}

std::string layout_spec_text(const ta_token_layout &layout) {
  std::string s;
  if (layout.text_tokens > 0 || layout.num_grids == 0) {
    s += "text=";
    s += std::to_string(layout.text_tokens);
  }
  for (int g = 0; g < layout.num_grids && g < TA_MAX_GRIDS; ++g) {
    if (!s.empty()) s += ',';
    s += "grid=";
    s += std::to_string(layout.grid_height[g]);
    s += 'x';
    s += std::to_string(layout.grid_width[g]);
  }
  return s;
}

}  // namespace ta_cli
