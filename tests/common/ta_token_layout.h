// A token layout for tests of the local-exact hybrid: `text` leading tokens, then row-major
// grids of (height, width), as the C ABI's ta_token_layout describes them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "taylor_attention/taylor_attention.h"

namespace tatest {

struct TokenLayout {
  int64_t text = 0;
  std::vector<std::pair<int64_t, int64_t>> grids;  // (height, width)

  int64_t tokens() const {
    int64_t n = text;
    for (auto [h, w] : grids) n += h * w;
    return n;
  }
  ta_token_layout c_layout() const {
    ta_token_layout l{};
    l.text_tokens = text;
    l.num_grids = static_cast<int32_t>(grids.size());
    for (size_t g = 0; g < grids.size(); ++g) {
      l.grid_height[g] = grids[g].first;
      l.grid_width[g] = grids[g].second;
    }
    return l;
  }
  // "t5_7x9_3x4": the text length, then each grid (a test-name fragment).
  std::string name() const {
    std::string s = "t" + std::to_string(text);
    for (auto [h, w] : grids) s += "_" + std::to_string(h) + "x" + std::to_string(w);
    return s;
  }
};

}  // namespace tatest
