#include "core/window.h"

#include "api/errors.h"

namespace ta {

ta_status validate_layout(const ta_token_layout& layout, int64_t tokens) {
  auto invalid = [](const std::string& m) { return fail(TA_ERR_INVALID_ARGUMENT, "layout: " + m); };
  if (layout.text_tokens < 0) return invalid("text_tokens is negative (" + std::to_string(layout.text_tokens) + ")");
  if (layout.num_grids < 0 || layout.num_grids > TA_MAX_GRIDS) {
    return invalid("num_grids must be in 0.." + std::to_string(TA_MAX_GRIDS) + ", is " +
                   std::to_string(layout.num_grids));
  }
  int64_t total = layout.text_tokens;
  for (int g = 0; g < layout.num_grids; ++g) {
    const int64_t h = layout.grid_height[g], w = layout.grid_width[g];
    const std::string at = "grid " + std::to_string(g);
    if (h < 1 || w < 1) return invalid(at + " is " + std::to_string(h) + "x" + std::to_string(w) + " (need >= 1x1)");
    int64_t size = 0;
    if (__builtin_mul_overflow(h, w, &size) || __builtin_add_overflow(total, size, &total)) {
      return invalid("token count overflows int64");
    }
  }
  if (tokens >= 0 && total != tokens) {
    return invalid("text " + std::to_string(layout.text_tokens) + " + grid tokens = " + std::to_string(total) +
                   ", but the call has N = " + std::to_string(tokens) + " tokens");
  }
  return TA_OK;
}

Window make_window(const ta_token_layout* layout, const ta_config& c, int64_t Nq, int64_t Nk) {
  Window w;
  if (c.window_radius <= 0) return w;
  if (layout == nullptr) {
    w.reason = TA_REASON_WINDOW_NO_LAYOUT;
    return w;
  }
  if (Nq != Nk) {
    w.reason = TA_REASON_WINDOW_CROSS_ATTENTION;
    return w;
  }
  w.active = true;
  w.radius = c.window_radius;
  w.text_keys = c.window_text_keys != 0;
  w.text_queries = c.window_text_queries != 0;
  w.layout = *layout;
  int64_t start = layout->text_tokens;
  for (int g = 0; g < layout->num_grids; ++g) {
    w.grid_start[g] = start;
    start += layout->grid_height[g] * layout->grid_width[g];
  }
  return w;
}

}  // namespace ta
