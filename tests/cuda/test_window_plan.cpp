// The CUDA backend's host-side description of the local-exact hybrid (cuda/window_plan.h)
// against core/window.h: the index arithmetic the window kernels walk (ExactSet), a replay
// of the tensor-core kernel's tiles, stages and per-warp n-tiles (each exact key weighted
// once, buffers never overrun), the text-row splits and their workspace, and the count of
// exact pairs. Plain host code: runs with or without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/mask.h"
#include "core/window.h"
#include "cuda/window_plan.h"

namespace {

using ta::cuda::ExactSet;
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

// Replays the tensor-core kernel's walk over `tiles` on the host: the tiles cover every
// query once, and for every query the keys its warp weights exactly, over the stages of
// its tile (and every key range of a split text tile), are E(i) once each; the walk stays
// inside the staging buffers. Split counts 1..3 for text rows exact over every key.
void replay_walk(const ta::Window& w, const ta_token_layout& layout, int64_t N, const std::vector<WindowTile>& tiles) {
  WindowArgs a = ta::cuda::window_args(w, 3);
  constexpr int KT = ta::cuda::kWindowTextKeys, KROWS = ta::cuda::kWindowStageRows;
  constexpr int VROWS = KROWS + ta::cuda::kWindowPadRows;
  const int nw = ta::cuda::window_stage_ntiles(a.radius);
  for (int32_t splits = 1; splits <= (w.text_queries ? 3 : 1); ++splits) {
    ta::cuda::window_set_splits(a, splits, N);
    ASSERT_GE(static_cast<int64_t>(a.splits) * a.split_keys, N);
    ASSERT_EQ(a.split_keys % KT, 0);
    std::vector<int> seen(static_cast<size_t>(N), 0);
    std::vector<std::vector<int64_t>> got(static_cast<size_t>(N));
    for (const WindowTile& t : tiles) {
      ASSERT_GE(t.cols, 1);
      ASSERT_GE(t.rows, 1);
      ASSERT_LE(static_cast<int64_t>(t.rows) * t.width, ta::cuda::kWindowTileQueries);
      ASSERT_LE(t.cols, t.width);
      const int64_t ranges = t.grid < 0 && w.text_queries ? a.splits : 1;
      for (int64_t split = 0; split < ranges; ++split) {
        const ta::cuda::TilePlan plan = ta::cuda::tile_plan(a, t, split, N);
        for (int warp = 0; warp < ta::cuda::kWindowWarps; ++warp) {
          const ta::cuda::WarpRows wr = ta::cuda::warp_rows(t, warp);
          for (int l = 0; l < 16; ++l) {
            const int64_t lc = wr.lc0 + l;
            if (!wr.active || lc >= t.cols) continue;
            const int64_t i = t.q0 + wr.wy * plan.W + lc;
            ASSERT_GE(i, 0);
            ASSERT_LT(i, N);
            if (split == 0) seen[static_cast<size_t>(i)] += 1;
            if (t.grid >= 0) {  // the query sits where the tile says
              const int64_t local = i - w.grid_start[t.grid];
              EXPECT_EQ(local / layout.grid_width[t.grid], wr.qy) << "query " << i;
              EXPECT_EQ(local % layout.grid_width[t.grid], t.x0 + lc) << "query " << i;
            } else {
              EXPECT_LT(i, w.text());
            }
            for (int64_t st = 0; st < plan.stages; ++st) {
              const ta::cuda::StageKeys k = ta::cuda::stage_keys(plan, ta::cuda::window_stage_order(plan, t, st));
              ASSERT_GE(k.n, 0);
              ASSERT_LE(k.row_first + k.n, k.window ? ta::cuda::kWindowPieceKeys : KT);
              const int count = k.window ? nw : KT / 8;
              const int nt0 = ta::cuda::warp_first_ntile(a, plan, k, wr, count);
              if (nt0 < 0) continue;
              // Sub-stages of 3 (window) or 4 (text) n-tiles; P.V reads values up to the
              // next even n-tile.
              const int sub = k.window ? 3 : 4;
              ASSERT_EQ(count % sub, 0);
              ASSERT_GE(nt0, 0);
              ASSERT_LE((nt0 + count) * 8, KROWS) << "key rows past the buffer";
              ASSERT_LE((nt0 + count - sub + (sub + 1) / 2 * 2) * 8, VROWS) << "value rows past the buffer";
              for (int row = nt0 * 8; row < (nt0 + count) * 8; ++row) {
                if (row < k.row_first || row >= k.row_first + k.n) continue;  // zeros: weight 0
                const int64_t key = k.tok_first + (row - k.row_first);
                ASSERT_GE(key, 0);
                ASSERT_LT(key, N);
                if (k.window && !ta::cuda::window_exact(k, wr.lc0, l, row, a.radius)) continue;
                got[static_cast<size_t>(i)].push_back(key);
              }
            }
          }
        }
      }
    }
    for (int64_t i = 0; i < N; ++i) {
      ASSERT_EQ(seen[static_cast<size_t>(i)], 1) << "query " << i;
      std::vector<int64_t> keys = got[static_cast<size_t>(i)], want = core_set(w, i, N);
      std::sort(keys.begin(), keys.end());
      std::sort(want.begin(), want.end());
      ASSERT_EQ(keys, want) << "query " << i << " splits " << splits;
    }
  }
}

// The kernel's stage order is a permutation of the plan's stages that starts a grid tile at
// its own first query row, reaches the key rows in order of distance from it (0, 1 below,
// 1 above, 2 below, ...), and ends with the text stages; text tiles keep the plan's order.
TEST_P(WindowPlan, StageOrderIsCentreOutPermutation) {
  int64_t N = 0;
  ta_token_layout layout;
  const ta::Window w = window_of(GetParam(), &N, &layout);
  const WindowArgs a = ta::cuda::window_args(w, 3);
  for (const WindowTile& t : ta::cuda::window_tiles(w)) {
    const ta::cuda::TilePlan plan = ta::cuda::tile_plan(a, t, 0, N);
    std::vector<int> hits(static_cast<size_t>(plan.stages), 0);
    int64_t last_distance = -1;
    for (int64_t st = 0; st < plan.stages; ++st) {
      const int64_t o = ta::cuda::window_stage_order(plan, t, st);
      ASSERT_GE(o, 0);
      ASSERT_LT(o, plan.stages);
      hits[static_cast<size_t>(o)] += 1;
      if (t.grid < 0) {
        EXPECT_EQ(o, st);
        continue;
      }
      const bool text_stage = o < plan.text_stages;
      EXPECT_EQ(text_stage, st >= plan.stages - plan.text_stages) << "text stages last, stage " << st;
      if (text_stage) continue;
      const ta::cuda::StageKeys k = ta::cuda::stage_keys(plan, o);
      if (st == 0) EXPECT_EQ(k.ky, t.y) << "starts at the tile's first row";
      const int64_t dist = k.ky == t.y ? 0 : k.ky > t.y ? 2 * (k.ky - t.y) - 1 : 2 * (t.y - k.ky);
      if ((o - plan.text_stages) % plan.pieces == 0) {  // the first piece of each key row
        EXPECT_GT(dist, last_distance) << "stage " << st;
        last_distance = dist;
      }
    }
    for (int64_t i = 0; i < plan.stages; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)], 1) << "stage " << i;
  }
}

// The planner's tiles: text first, then each grid's at its chosen width.
TEST_P(WindowPlan, KernelWalkWeightsEachExactKeyOnce) {
  int64_t N = 0;
  ta_token_layout layout;
  const ta::Window w = window_of(GetParam(), &N, &layout);
  const std::vector<WindowTile> tiles = ta::cuda::window_tiles(w);
  ASSERT_EQ(static_cast<int64_t>(tiles.size()), ta::cuda::window_tile_count(w));
  const int64_t text_tiles = ta::cuda::window_text_tile_count(ta::cuda::window_args(w, 3));
  for (size_t t = 0; t < tiles.size(); ++t) {
    EXPECT_EQ(tiles[t].grid < 0, static_cast<int64_t>(t) < text_tiles) << "text tiles first, tile " << t;
  }
  replay_walk(w, layout, N, tiles);
}

// Every tile width on every grid (the planner picks one per grid; the walk must hold for
// each, including key rows split into pieces).
TEST_P(WindowPlan, KernelWalkHoldsForEveryTileWidth) {
  int64_t N = 0;
  ta_token_layout layout;
  const ta::Window w = window_of(GetParam(), &N, &layout);
  const WindowArgs a = ta::cuda::window_args(w, 3);
  for (int32_t width : {16, 32, 64}) {
    std::vector<WindowTile> tiles;
    for (int64_t q0 = 0; q0 < w.text(); q0 += ta::cuda::kWindowTileQueries) {
      tiles.push_back(WindowTile{q0, 0, 0, 1, static_cast<int32_t>(std::min<int64_t>(128, w.text() - q0)), 128, -1});
    }
    for (int g = 0; g < a.num_grids; ++g) {
      ta::cuda::for_each_grid_tile(a, g, width, [&](const WindowTile& t) { tiles.push_back(t); });
    }
    SCOPED_TRACE("width " + std::to_string(width));
    replay_walk(w, layout, N, tiles);
  }
}

// The split choices (text tiles with the grid tiles, or alone): 1 without text_queries,
// within [1, kWindowMaxSplits], and the workspace bound covers every batch size the launcher
// may see.
TEST_P(WindowPlan, TextSplitsFitTheirWorkspace) {
  int64_t N = 0;
  ta_token_layout layout;
  const ta::Window w = window_of(GetParam(), &N, &layout);
  const WindowArgs a = ta::cuda::window_args(w, 3);
  const int64_t grid_cost = ta::cuda::window_grid_cost(a);
  for (int sms : {1, 132}) {
    const int64_t bytes = ta::cuda::window_partial_bytes(w, 40, 64, N, sms);
    for (int64_t units = 1; units <= 40; ++units) {
      for (const int32_t s : {ta::cuda::window_text_splits(a, units, N, sms, grid_cost),
                              ta::cuda::window_text_only_splits(a, units, N, sms)}) {
        ASSERT_GE(s, 1);
        ASSERT_LE(s, ta::cuda::kWindowMaxSplits);
        if (!w.text_queries) {
          ASSERT_EQ(s, 1);
        }
        EXPECT_LE(ta::cuda::window_partial_floats_for(a, units, s, 64) * 4, bytes) << "units " << units;
      }
    }
  }
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
    {8, {{6, 64}}, 4, true, true},       // one 64-wide tile per two rows, one stage per key row
    {3, {{7, 150}}, 5, true, false},     // r = 5: 6 n-tiles per warp, two pieces per key row
    {3, {{5, 150}}, 8, false, true},     // r = 8: a key row of 80 columns, two pieces
    {300, {{3, 40}}, 2, true, true},     // three text tiles; splits cross tile boundaries of keys
};

INSTANTIATE_TEST_SUITE_P(Layouts, WindowPlan, ::testing::ValuesIn(kPlanCases),
                         [](const auto& info) { return name_of(info.param); });

// The key ranges that hold keys (window_live_splits): what window_merge reads and the 2-D
// kernel's text items cover. They tile [0, N) in order, each non-empty; the ranges after
// them (window_set_splits rounds the length up to whole stages) are empty.
TEST(WindowLiveSplits, CoverTheKeysWithoutEmptyRanges) {
  for (int64_t N : {1, 63, 64, 65, 1000, 1080, 16400, 65792}) {
    for (int32_t splits = 1; splits <= ta::cuda::kWindowMaxSplits; ++splits) {
      WindowArgs a{};
      ta::cuda::window_set_splits(a, splits, N);
      const int32_t live = ta::cuda::window_live_splits(a, N);
      ASSERT_GE(live, 1);
      ASSERT_LE(live, a.splits);
      if (a.splits == 1) {
        ASSERT_EQ(live, 1);
        continue;
      }
      EXPECT_LT(static_cast<int64_t>(live - 1) * a.split_keys, N) << "N " << N << " splits " << splits;
      EXPECT_GE(static_cast<int64_t>(live) * a.split_keys, N) << "N " << N << " splits " << splits;
    }
  }
}

// The 2-D grid kernel's walk (window_grid_wg.cuh), for every radius it takes: the load order
// is a permutation of the tile's window stages; every key of every query's window lies in
// exactly one stage the query's warpgroup computes, inside the patch's columns, and
// grid_patch_exact says so there; every other key of those stages is not exact.
TEST(GridKernelPlan, EveryWindowKeyInExactlyOneComputedStage) {
  using namespace ta::cuda;  // NOLINT(google-build-using-namespace): the plan's constants
  for (int64_t r = 1; r <= kGridMaxRadius; ++r) {
    SCOPED_TRACE("r = " + std::to_string(r));
    const int ns = grid_window_stages(r);
    std::vector<int> seen(static_cast<size_t>(ns), 0);
    for (int i = 0; i < ns; ++i) {
      const int ps = grid_stage_at(r, i);
      ASSERT_GE(ps, 0);
      ASSERT_LT(ps, ns);
      ++seen[static_cast<size_t>(ps)];
    }
    for (int c : seen) ASSERT_EQ(c, 1);
    for (int wg = 0; wg < 2; ++wg) {
      for (int qr = kGridWgRows * wg; qr < kGridWgRows * (wg + 1); ++qr) {
        for (int qc = 0; qc < kGridTileCols; ++qc) {
          int64_t exact = 0;
          for (int ps = 0; ps < ns; ++ps) {
            if (!grid_stage_used(r, wg, ps)) continue;
            for (int pr = kGridStageRows * ps; pr < kGridStageRows * (ps + 1); ++pr) {
              for (int pc = 0; pc < kGridPatchCols; ++pc) {
                const bool in = std::abs(pr - r - qr) <= r && std::abs(pc - r - qc) <= r;
                ASSERT_EQ(ta::cuda::grid_patch_exact(r, pr, pc, qr, qc), in) << pr << " " << pc << " " << qr << " " << qc;
                exact += in ? 1 : 0;
              }
            }
          }
          ASSERT_EQ(exact, (2 * r + 1) * (2 * r + 1)) << "query " << qr << " " << qc;
        }
      }
    }
  }
  EXPECT_EQ(ta::cuda::grid_tiles_x(17), 3);
  EXPECT_EQ(ta::cuda::grid_tiles_y(17), 2);
  EXPECT_FALSE(ta::cuda::grid_kernel_radius_ok(0));
  EXPECT_FALSE(ta::cuda::grid_kernel_radius_ok(kGridMaxRadius + 1));
}

}  // namespace
