// The local-exact hybrid (config.window_*, args.layout) against the independent fp64
// reference's hybrid kind, on awkward layouts: several grids, odd sizes, windows at grid
// edges, radii larger than the grid, no text, only text; with sub_head_blocks,
// qk_normalize, masks, dv != d and every dtype. Also when the window does not apply, the
// layout's validation, the stats and the probe.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "common/ta_token_layout.h"
#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::RefKind;
using tatest::Shape;
using Layout = tatest::TokenLayout;

struct WinCase {
  Layout layout;
  int radius;
  bool text_keys, text_queries;
  int G = 1;
  bool normalize = false;
  bool mask = false;
  int64_t d = 8, dv = 8;
};

std::string case_name(const WinCase &c) {
  return c.layout.name() + "_r" + std::to_string(c.radius) + (c.text_keys ? "_tk" : "") +
         (c.text_queries ? "_tq" : "") + "_G" + std::to_string(c.G) + (c.normalize ? "_norm" : "") +
         (c.mask ? "_mask" : "") + "_d" + std::to_string(c.d) + "_dv" + std::to_string(c.dv);
}

void PrintTo(const WinCase &c, std::ostream *os) { *os << case_name(c); }

tatest::RefWindow ref_window(const WinCase &c) {
  tatest::RefWindow w;
  w.text = c.layout.text;
  w.grids = c.layout.grids;
  w.radius = c.radius;
  w.text_keys = c.text_keys;
  w.text_queries = c.text_queries;
  return w;
}

// Exact-set size of query i with every key kept, from the reference's predicate.
int64_t exact_pairs(const WinCase &c, const std::vector<uint8_t> &keep, int64_t B) {
  const tatest::RefWindow w = ref_window(c);
  const int64_t N = c.layout.tokens();
  int64_t n = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        if (!keep.empty() && !keep[static_cast<size_t>(b * N + j)]) continue;
        n += w.exact(i, j) ? 1 : 0;
      }
    }
  }
  return n;
}

struct Built {
  tatest::Problem p;
  ta_config c;
  tatest::RefOutput ref;
};

Built build(const WinCase &wc, ta_dtype dt, uint64_t seed) {
  Shape s;
  s.B = 2;
  s.H = 2;
  s.Nq = s.Nk = wc.layout.tokens();
  s.d = wc.d;
  s.dv = wc.dv;
  Built b{tatest::make_problem(s, dt, seed, 0.9), tatest::test_config(3, wc.G), {}};
  b.p.layout = wc.layout.c_layout();
  if (wc.mask) {
    // Every third key of batch 1 blocked (text and grid keys alike), batch 0 complete.
    b.p.keep.assign(static_cast<size_t>(s.B * s.Nk), 1);
    for (int64_t j = 0; j < s.Nk; j += 3) b.p.keep[static_cast<size_t>(s.Nk + j)] = 0;
    b.p.mask = tatest::make_mask(tatest::MaskForm::B_Nk, TA_DTYPE_BOOL, s, b.p.keep);
  }
  b.c.qk_normalize = wc.normalize;
  b.c.window_radius = wc.radius;
  b.c.window_text_keys = wc.text_keys;
  b.c.window_text_queries = wc.text_queries;
  auto prm = tatest::params_of(b.c);
  prm.window = ref_window(wc);
  const std::vector<double> q = b.p.q.dense(), k = b.p.k.dense(), v = b.p.v.dense();
  tatest::RefInput in;
  in.B = s.B; in.H = s.H; in.Nq = s.Nq; in.Nk = s.Nk; in.d = s.d; in.dv = s.dv;
  in.q = q.data(); in.k = k.data(); in.v = v.data();
  in.keep = b.p.keep.empty() ? nullptr : b.p.keep.data();
  b.ref = tatest::reference_attention(in, prm, RefKind::Hybrid);
  return b;
}

class Window : public ::testing::TestWithParam<std::tuple<WinCase, ta_dtype>> {};

TEST_P(Window, MatchesIndependentReference) {
  const auto [wc, dt] = GetParam();
  Built b = build(wc, dt, 7000 + static_cast<uint64_t>(wc.layout.tokens() * 13 + wc.radius));
  const auto r = tatest::run_checked(b.p, b.c);
  ASSERT_EQ(r.status, TA_OK) << r.message << " reason " << tatest::rname(r.stats.fallback_reason);
  EXPECT_TRUE(tatest::close_rel_l2(b.p.out.dense(), b.ref.out, tatest::rel_tolerance(dt, b.ref)));
  EXPECT_EQ(r.stats.window_active, 1);
  EXPECT_EQ(r.stats.window_reason, TA_REASON_NONE);
  EXPECT_EQ(r.stats.window_exact_pairs, exact_pairs(wc, b.p.keep, b.p.s.B) * b.p.s.H * wc.G);
  // The reported denominators are the hybrid's (stabilised), as the reference's.
  double ref_min = 1e300, ref_max = -1e300;
  for (double den : b.ref.den) {
    ref_min = std::min(ref_min, den);
    ref_max = std::max(ref_max, den);
  }
  const double rel = dt == TA_DTYPE_F64 ? 1e-9 : 1e-3;
  EXPECT_TRUE(tatest::near_rel(r.stats.denom_min, ref_min, rel, 1e-6));
  EXPECT_TRUE(tatest::near_rel(r.stats.denom_max, ref_max, rel, 1e-6));
}

TEST_P(Window, LibraryHybridReferenceMatchesOurs) {
  const auto [wc, dt] = GetParam();
  Built b = build(wc, dt, 9100 + static_cast<uint64_t>(wc.layout.tokens()));
  const ta_attention_args a = b.p.args();
  b.p.out.fill_bytes(0xA5);
  ASSERT_EQ(ta_reference_attention(&a, &b.c, TA_REFERENCE_HYBRID_QUADRATIC), TA_OK) << ta_last_error_message();
  EXPECT_TRUE(b.p.out.canaries_intact(0xA5));
  EXPECT_TRUE(tatest::close_rel_l2(b.p.out.dense(), b.ref.out, dt == TA_DTYPE_F64 ? 1e-12 : 2 * tatest::unit_roundoff(dt)));
}

const WinCase kCases[] = {
    {{5, {{7, 9}, {3, 4}}}, 1, true, true},
    {{5, {{7, 9}, {3, 4}}}, 2, true, false},
    {{5, {{7, 9}, {3, 4}}}, 1, false, false},
    {{5, {{7, 9}, {3, 4}}}, 1, false, true},
    {{0, {{6, 6}}}, 1, true, true},            // no text
    {{20, {}}, 3, true, false},                // only text: text keys exact
    {{20, {}}, 3, false, false},               // only text, nothing exact: plain Taylor
    {{3, {{1, 1}, {4, 1}, {1, 5}}}, 1, true, true},  // degenerate grids
    {{4, {{5, 7}}}, 12, true, true},           // radius larger than the grid
    {{4, {{5, 7}}}, 2, true, true, 2},         // sub_head_blocks
    {{4, {{5, 7}}}, 1, true, true, 1, true},   // qk_normalize
    {{6, {{5, 5}, {2, 3}}}, 1, true, true, 1, false, true},  // key mask
    {{2, {{4, 6}}}, 2, true, false, 1, false, false, 6, 10}, // dv != d
};

INSTANTIATE_TEST_SUITE_P(Layouts, Window,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16,
                                                              TA_DTYPE_BF16)),
                         [](const auto &info) {
                           return case_name(std::get<0>(info.param)) + "_" +
                                  ta_dtype_name(std::get<1>(info.param));
                         });

// ---- When the window does not apply -------------------------------------------------

TEST(WindowOff, RadiusZeroIsPlainTaylorBitForBit) {
  const WinCase wc{{5, {{7, 9}}}, 0, true, true};
  Built with = build(wc, TA_DTYPE_F32, 42), without = build(wc, TA_DTYPE_F32, 42);
  without.p.layout.reset();
  ASSERT_EQ(tatest::run_checked(with.p, with.c).status, TA_OK);
  const auto r = tatest::run_checked(without.p, without.c);
  ASSERT_EQ(r.status, TA_OK);
  EXPECT_TRUE(tatest::same_bits(with.p.out, without.p.out));
  EXPECT_EQ(r.stats.window_active, 0);
  EXPECT_EQ(r.stats.window_reason, TA_REASON_NONE);
  EXPECT_EQ(r.stats.window_exact_pairs, 0);
}

TEST(WindowOff, NoLayoutRunsPlainTaylorWithReason) {
  const WinCase wc{{5, {{7, 9}}}, 2, true, true};
  Built b = build(wc, TA_DTYPE_F64, 43);
  b.p.layout.reset();
  const auto r = tatest::run_checked(b.p, b.c);
  ASSERT_EQ(r.status, TA_OK);
  EXPECT_EQ(r.stats.window_active, 0);
  EXPECT_EQ(r.stats.window_reason, TA_REASON_WINDOW_NO_LAYOUT);
  EXPECT_STREQ(ta_reason_name(r.stats.window_reason), "window_no_layout");
  const auto plain = tatest::reference_of(b.p, b.c, RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(b.p.out.dense(), plain.out, 1e-9));
}

TEST(WindowOff, CrossAttentionRunsPlainTaylorWithReason) {
  Shape s;
  s.Nq = 12;
  s.Nk = 20;
  auto p = tatest::make_problem(s, TA_DTYPE_F64, 44);
  ta_token_layout l{};
  l.text_tokens = 2;
  l.num_grids = 1;
  l.grid_height[0] = 2;
  l.grid_width[0] = 9;  // a layout of the keys; no window applies across different token sets
  p.layout = l;
  ta_config c = tatest::test_config();
  c.window_radius = 1;
  const auto r = tatest::run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK);
  EXPECT_EQ(r.stats.window_active, 0);
  EXPECT_EQ(r.stats.window_reason, TA_REASON_WINDOW_CROSS_ATTENTION);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), tatest::reference_of(p, c, RefKind::Taylor).out, 1e-9));
}

// ---- Layout validation ----------------------------------------------------------------

TEST(WindowLayout, BadLayoutsAreInvalidArguments) {
  const WinCase wc{{5, {{7, 9}}}, 1, true, true};
  Built b = build(wc, TA_DTYPE_F32, 45);
  struct Bad {
    const char *what;
    void (*edit)(ta_token_layout *);
    const char *message_part;
  };
  const Bad bad[] = {
      {"count mismatch", [](ta_token_layout *l) { l->text_tokens = 6; }, "N = 68"},
      {"negative text", [](ta_token_layout *l) { l->text_tokens = -1; }, "text_tokens is negative"},
      {"too many grids", [](ta_token_layout *l) { l->num_grids = TA_MAX_GRIDS + 1; }, "num_grids"},
      {"negative grids", [](ta_token_layout *l) { l->num_grids = -1; }, "num_grids"},
      {"zero width", [](ta_token_layout *l) { l->grid_width[0] = 0; }, "grid 0"},
      {"overflow", [](ta_token_layout *l) { l->grid_height[0] = INT64_MAX; }, "overflows"},
  };
  for (const Bad &x : bad) {
    SCOPED_TRACE(x.what);
    ta_token_layout l = *b.p.layout;
    x.edit(&l);
    ta_attention_args a = b.p.args();
    a.layout = &l;
    ta_reason why = TA_REASON_COUNT_;
    EXPECT_EQ(ta_attention_check(&a, &b.c, &why), TA_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(ta_last_error_message()).find(x.message_part), std::string::npos)
        << ta_last_error_message();
    ta_stats st;
    ta_stats_init(&st);
    EXPECT_EQ(ta_attention_run(&a, &b.c, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ta_reference_attention(&a, &b.c, TA_REFERENCE_HYBRID_QUADRATIC), TA_ERR_INVALID_ARGUMENT);
  }
}

TEST(WindowLayout, NegativeRadiusIsInvalid) {
  ta_config c = tatest::test_config();
  c.window_radius = -1;
  EXPECT_EQ(ta_config_validate(&c), TA_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ta_last_error_message()).find("window_radius"), std::string::npos);
}

// ---- Guards and the probe see the hybrid denominators ------------------------------------

// P=2 (a linear kernel): a plain Taylor denominator goes negative, but with the window
// (text queries exact, every grid query's own large score exact) the hybrid's stay positive.
TEST(WindowGuards, HybridRescuesNegativeDenominators) {
  Shape s;
  s.H = 1;
  s.Nq = s.Nk = 4 + 36;
  s.d = s.dv = 16;
  auto p = tatest::make_problem(s, TA_DTYPE_F64, 46, 1.0);
  // q_i = 3 k_i (peaky), k alternating in sign along the grid so far keys score negative.
  auto q = p.q.dense();
  auto k = p.k.dense();
  for (int64_t i = 0; i < s.Nq; ++i) {
    for (int64_t c = 0; c < s.d; ++c) p.q.set({0, 0, i, c}, 3.0 * k[static_cast<size_t>(i * s.d + c)]);
  }
  // A text query anti-aligned with the sum of the keys: its plain denominator
  // sum_j (1 + s_0j) = Nk - 10 scale |sum_j k_j| is negative.
  std::vector<double> ksum(static_cast<size_t>(s.d), 0.0);
  double norm = 0;
  for (int64_t j = 0; j < s.Nk; ++j) {
    for (int64_t c = 0; c < s.d; ++c) ksum[static_cast<size_t>(c)] += k[static_cast<size_t>(j * s.d + c)];
  }
  for (double x : ksum) norm += x * x;
  norm = std::sqrt(norm);
  for (int64_t c = 0; c < s.d; ++c) p.q.set({0, 0, 0, c}, -10.0 * ksum[static_cast<size_t>(c)] / norm);
  ta_token_layout l{};
  l.text_tokens = 4;
  l.num_grids = 1;
  l.grid_height[0] = 6;
  l.grid_width[0] = 6;
  p.layout = l;
  ta_config c = tatest::test_config(2, 1);
  c.early_probe = 1;
  c.probe_samples = 40;  // every row
  const auto plain_ref = tatest::reference_of(p, c, RefKind::Taylor);
  double plain_min = 1e300;
  for (double den : plain_ref.den) plain_min = std::min(plain_min, den);
  ASSERT_LT(plain_min, 0) << "test precondition: plain Taylor has a negative denominator";

  // Plain: the probe sees it and falls back.
  auto plain_run = tatest::run_checked(p, c);
  EXPECT_EQ(plain_run.status, TA_FALLBACK);
  EXPECT_EQ(plain_run.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL);

  // Hybrid with text queries exact: every denominator holds an exact exp(0) term.
  c.window_radius = 1;
  const auto r = tatest::run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << tatest::rname(r.stats.fallback_reason);
  EXPECT_EQ(r.stats.probe_ran, 1);
  EXPECT_GT(r.stats.probe_denom_min, 0);
  EXPECT_GT(r.stats.denom_min, 0);
  (void)q;
}

// quality_check compares the hybrid output, so its error against the modified softmax is
// the hybrid's (far below plain Taylor's on peaky inputs).
TEST(WindowQuality, QualityCheckSeesTheHybridOutput) {
  const WinCase wc{{3, {{8, 8}}}, 2, true, true};
  Built b = build(wc, TA_DTYPE_F64, 47);
  b.c.quality_check = 1;
  b.c.quality_check_samples = 67;
  const auto r = tatest::run_checked(b.p, b.c);
  ASSERT_EQ(r.status, TA_OK);
  const auto exact = tatest::reference_of(b.p, b.c, RefKind::ExactModified);
  const double hybrid_err = tatest::rel_l2(b.ref.out, exact.out);
  EXPECT_NEAR(r.stats.quality_truncation.rel_l2, hybrid_err, 1e-9);
}

}  // namespace
