// The CUDA backend's host-side description of the local-exact hybrid (cuda/window_plan.h)
// against core/window.h: the index arithmetic the window kernels walk (ExactSet), the
// tensor-core kernel's tiles and candidate keys, and the count of exact pairs. Plain host
// code: runs with or without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/mask.h"
#include "core/window.h"
#include "cuda/window_plan.h"

namespace {

using ta::cuda::ExactSet;
using ta::cuda::TileKeys;
using ta::cuda::WindowArgs;
using ta::cuda::WindowTile;

struct PlanCase {
  int64_t text;
  std::vector<std::pair<int64_t, int64_t>> grids;  // (height, width)
  int radius;
  bool text_keys, text_queries;
};

std::string name_of(const PlanCase& c) {
  std::string s = "t" + std::to_string(c.text);
  for (auto [h, w] : c.grids) s += "_" + std::to_string(h) + "x" + std::to_string(w);
  return s + "_r" + std::to_string(c.radius) + (c.text_keys ? "_tk" : "") + (c.text_queries ? "_tq" : "");
}

void PrintTo(const PlanCase& c, std::ostream* os) { *os << name_of(c); }

ta::Window window_of(const PlanCase& c, int64_t* tokens, ta_token_layout* layout) {
  *layout = ta_token_layout{};
  layout->text_tokens = c.text;
  layout->num_grids = static_cast<int32_t>(c.grids.size());
  *tokens = c.text;
  for (size_t g = 0; g < c.grids.size(); ++g) {
    layout->grid_height[g] = c.grids[g].first;
    layout->grid_width[g] = c.grids[g].second;
    *tokens += c.grids[g].first * c.grids[g].second;
  }
  ta_config cfg{};
  cfg.window_radius = c.radius;
  cfg.window_text_keys = c.text_keys;
  cfg.window_text_queries = c.text_queries;
  return ta::make_window(layout, cfg, *tokens, *tokens);
}

std::vector<int64_t> core_set(const ta::Window& w, int64_t i, int64_t N) {
  std::vector<int64_t> keys;
  w.for_each_exact_key(i, N, [&](int64_t j) { keys.push_back(j); });
  return keys;
}

class WindowPlan : public ::testing::TestWithParam<PlanCase> {};

// The kernels' enumeration of E(i) is core/window.h's, key for key and in order.
TEST_P(WindowPlan, ExactSetMatchesCore) {
  int64_t N = 0;
  ta_token_layout layout;
  const ta::Window w = window_of(GetParam(), &N, &layout);
  ASSERT_TRUE(w.active);
  const WindowArgs a = ta::cuda::window_args(w, 3);
  for (int64_t i = 0; i < N; ++i) {
    const std::vector<int64_t> want = core_set(w, i, N);
    const ExactSet es = ta::cuda::exact_set(a, i, N);
    ASSERT_EQ(es.count, static_cast<int64_t>(want.size())) << "query " << i;
    for (int64_t k = 0; k < es.count; ++k) ASSERT_EQ(es.key(k), want[static_cast<size_t>(k)]) << "query " << i << " k " << k;
  }
}

// Tiles cover every query once (text first), and each query's exact set is exactly the
// candidates the tensor-core kernel accepts: all text-range keys, and row keys whose
// column is within the radius of the query's.
TEST_P(WindowPlan, TilesCoverQueriesAndCandidatesHoldExactSets) {
  int64_t N = 0;
  ta_token_layout layout;
  const ta::Window w = window_of(GetParam(), &N, &layout);
  const WindowArgs a = ta::cuda::window_args(w, 3);
  const std::vector<WindowTile> tiles = ta::cuda::window_tiles(w);
  EXPECT_EQ(static_cast<int64_t>(tiles.size()), ta::cuda::window_tile_count(w));
  std::vector<int> seen(static_cast<size_t>(N), 0);
  bool grid_seen = false;
  for (const WindowTile& t : tiles) {
    ASSERT_GE(t.count, 1);
    ASSERT_LE(t.count, ta::cuda::kWindowTileQueries);
    if (t.grid >= 0) grid_seen = true;
    EXPECT_FALSE(grid_seen && t.grid < 0) << "text tiles must come first";
    const TileKeys tk = ta::cuda::tile_keys(a, t, N);
    for (int32_t q = 0; q < t.count; ++q) {
      const int64_t i = t.q0 + q;
      ASSERT_LT(i, N);
      seen[static_cast<size_t>(i)] += 1;
      std::set<int64_t> got;
      for (int64_t j = 0; j < tk.text_len; ++j) got.insert(j);
      for (int64_t r = 0; r < tk.rows; ++r) {
        for (int64_t c = 0; c < tk.cols; ++c) {
          const int64_t j = tk.row_tok0 + r * tk.W + c, col = tk.col_lo + c;
          ASSERT_GE(j, 0);
          ASSERT_LT(j, N);
          const int64_t x = t.x0 + q;
          if (col >= x - w.radius && col <= x + w.radius) got.insert(j);
        }
      }
      const std::vector<int64_t> want = core_set(w, i, N);
      EXPECT_EQ(got, std::set<int64_t>(want.begin(), want.end())) << "query " << i;
      if (t.grid >= 0) {  // a grid tile stays in one row of its grid
        const int64_t local = i - w.grid_start[t.grid];
        EXPECT_EQ(local / layout.grid_width[t.grid], t.y);
        EXPECT_EQ(local % layout.grid_width[t.grid], t.x0 + q);
      } else {
        EXPECT_LT(i, w.text());
      }
    }
  }
  for (int64_t i = 0; i < N; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << "query " << i;
}

// Exact pairs from prefix sums equal a key-by-key count, with no mask, a mask shared by
// the batch and one per batch entry.
TEST_P(WindowPlan, ExactPairsMatchKeyByKeyCount) {
  int64_t N = 0;
  ta_token_layout layout;
  const ta::Window w = window_of(GetParam(), &N, &layout);
  const int64_t B = 3;
  std::mt19937_64 rng(static_cast<uint64_t>(N * 31 + GetParam().radius));
  for (int form = 0; form < 3; ++form) {
    ta::KeyMask mask;
    if (form > 0) {
      const int64_t rows = form == 1 ? 1 : B;
      mask.keep.resize(static_cast<size_t>(rows * N));
      for (auto& k : mask.keep) k = (rng() % 4) != 0;
      mask.batch_stride = form == 1 ? 0 : N;
    }
    int64_t want = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < N; ++i) {
        w.for_each_exact_key(i, N, [&](int64_t j) { want += mask.attends(b, j) ? 1 : 0; });
      }
    }
    EXPECT_EQ(ta::cuda::exact_pairs_per_slice(w, mask, B, N), want) << "mask form " << form;
  }
}

const PlanCase kPlanCases[] = {
    {5, {{7, 9}, {3, 4}}, 1, true, true},
    {5, {{7, 9}, {3, 4}}, 2, true, false},
    {5, {{7, 9}, {3, 4}}, 1, false, false},
    {5, {{7, 9}, {3, 4}}, 1, false, true},
    {0, {{6, 6}}, 1, true, true},
    {20, {}, 3, true, false},
    {97, {}, 2, false, true},
    {3, {{1, 1}, {4, 1}, {1, 5}}, 1, true, true},
    {4, {{5, 7}}, 12, true, true},
    {70, {{3, 130}, {2, 64}, {4, 65}}, 4, true, true},
    {1, {{2, 200}}, 70, false, false},
    {2, {{9, 3}, {1, 1}, {2, 2}, {1, 2}, {3, 1}, {1, 3}, {2, 1}, {5, 5}}, 1, true, false},
};

INSTANTIATE_TEST_SUITE_P(Layouts, WindowPlan, ::testing::ValuesIn(kPlanCases),
                         [](const auto& info) { return name_of(info.param); });

}  // namespace
