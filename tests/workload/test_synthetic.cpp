// The synthetic image-like workload (ta_workload_generate, src/workload/synthetic.h):
// determinism, the properties each step promises (RMSNorm, RoPE, smoothness, alignment),
// dtype and stride handling, and one error per bad argument.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/ta_test_tensor.h"
#include "taylor_attention/taylor_attention.h"
#include "workload/synthetic.h"

namespace {

using tatest::TestTensor;

ta_workload_params params_for(int64_t text, std::vector<std::array<int64_t, 2>> grids) {
  ta_workload_params p;
  EXPECT_EQ(ta_workload_defaults(&p), TA_OK);
  p.layout.text_tokens = text;
  p.layout.num_grids = static_cast<int32_t>(grids.size());
  for (size_t g = 0; g < grids.size(); ++g) {
    p.layout.grid_height[g] = grids[g][0];
    p.layout.grid_width[g] = grids[g][1];
  }
  return p;
}

int64_t token_count(const ta_workload_params& p) {
  int64_t n = p.layout.text_tokens;
  for (int g = 0; g < p.layout.num_grids; ++g) n += p.layout.grid_height[g] * p.layout.grid_width[g];
  return n;
}

// q, k [B,H,N,d] and v [B,H,N,dv] (contiguous unless strides are given) for a layout.
struct Qkv {
  TestTensor q, k, v;
  Qkv(ta_dtype dtype, int64_t B, int64_t H, int64_t N, int64_t d, int64_t dv, std::vector<int64_t> qk_strides = {},
      std::vector<int64_t> v_strides = {})
      : q(dtype, {B, H, N, d}, qk_strides), k(dtype, {B, H, N, d}, qk_strides), v(dtype, {B, H, N, dv}, v_strides) {}

  ta_status generate(const ta_workload_params& p) { return ta_workload_generate(&p, q.ptr(), k.ptr(), v.ptr()); }
};

std::vector<double> row(const TestTensor& t, int64_t b, int64_t h, int64_t i) {
  std::vector<double> r(static_cast<size_t>(t.shape()[3]));
  for (int64_t j = 0; j < t.shape()[3]; ++j) r[static_cast<size_t>(j)] = t.get({b, h, i, j});
  return r;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  return dot(a, b) / std::sqrt(dot(a, a) * dot(b, b));
}

// ------------------------------------------------------------------ defaults

TEST(Workload, DefaultsAre256TextPlus64x64GridSmoothness3Alignment07) {
  ta_workload_params p;
  std::memset(&p, 0xAB, sizeof p);
  ASSERT_EQ(ta_workload_defaults(&p), TA_OK);
  EXPECT_EQ(p.struct_size, sizeof(ta_workload_params));
  EXPECT_EQ(p.layout.text_tokens, 256);
  EXPECT_EQ(p.layout.num_grids, 1);
  EXPECT_EQ(p.layout.grid_height[0], 64);
  EXPECT_EQ(p.layout.grid_width[0], 64);
  EXPECT_EQ(p.smoothness, 3.0);
  EXPECT_EQ(p.gain, 1.0);
  EXPECT_EQ(p.alignment, 0.7);
  EXPECT_EQ(p.rope, 1);
  EXPECT_EQ(p.seed, 0u);
  EXPECT_EQ(ta_workload_defaults(nullptr), TA_ERR_INVALID_ARGUMENT);
}

// ------------------------------------------------------------------ determinism

TEST(Workload, SameSeedSameBitsDifferentSeedDiffers_B2_H3_text5_grid6x7_d16_dv8) {
  ta_workload_params p = params_for(5, {{6, 7}});
  const int64_t N = token_count(p);
  Qkv a(TA_DTYPE_F32, 2, 3, N, 16, 8), b(TA_DTYPE_F32, 2, 3, N, 16, 8);
  ASSERT_EQ(a.generate(p), TA_OK) << ta_last_error_message();
  ASSERT_EQ(b.generate(p), TA_OK);
  EXPECT_EQ(a.q.element_bytes(), b.q.element_bytes());
  EXPECT_EQ(a.k.element_bytes(), b.k.element_bytes());
  EXPECT_EQ(a.v.element_bytes(), b.v.element_bytes());
  p.seed = 1;
  ASSERT_EQ(b.generate(p), TA_OK);
  EXPECT_NE(a.q.element_bytes(), b.q.element_bytes());
  EXPECT_NE(a.k.element_bytes(), b.k.element_bytes());
  EXPECT_NE(a.v.element_bytes(), b.v.element_bytes());
}

TEST(Workload, EveryBatchAndHeadGetsItsOwnValues_B2_H2_text4_grid5x5_d8) {
  ta_workload_params p = params_for(4, {{5, 5}});
  const int64_t N = token_count(p);
  Qkv a(TA_DTYPE_F64, 2, 2, N, 8, 8);
  ASSERT_EQ(a.generate(p), TA_OK);
  for (int64_t i : {int64_t{0}, N - 1}) {
    EXPECT_NE(row(a.q, 0, 0, i), row(a.q, 0, 1, i)) << "heads share projections, token " << i;
    EXPECT_NE(row(a.q, 0, 0, i), row(a.q, 1, 0, i)) << "batches share content, token " << i;
    EXPECT_NE(row(a.v, 0, 0, i), row(a.v, 1, 1, i));
  }
}

// Changing B or H must not change the numbers of the (b, h) pairs both shapes have, so a
// reported case can be rerun at a smaller size.
TEST(Workload, StreamsDoNotDependOnTheNumberOfHeadsOrBatches_text3_grid4x4_d8) {
  ta_workload_params p = params_for(3, {{4, 4}});
  const int64_t N = token_count(p);
  Qkv small(TA_DTYPE_F64, 1, 1, N, 8, 8), large(TA_DTYPE_F64, 2, 3, N, 8, 8);
  ASSERT_EQ(small.generate(p), TA_OK);
  ASSERT_EQ(large.generate(p), TA_OK);
  for (int64_t i = 0; i < N; ++i) {
    EXPECT_EQ(row(small.q, 0, 0, i), row(large.q, 0, 0, i)) << i;
    EXPECT_EQ(row(small.v, 0, 0, i), row(large.v, 0, 0, i)) << i;
  }
}

// ------------------------------------------------------------------ RMSNorm

TEST(Workload, QAndKNormIsGainTimesSqrtD_RopeOnAndOff_text6_grids3x4_2x5_d32_dv12) {
  for (int rope : {0, 1}) {
    for (double gain : {1.0, 2.5, -0.5}) {
      ta_workload_params p = params_for(6, {{3, 4}, {2, 5}});
      p.rope = rope;
      p.gain = gain;
      const int64_t N = token_count(p);
      Qkv a(TA_DTYPE_F64, 1, 2, N, 32, 12);
      ASSERT_EQ(a.generate(p), TA_OK);
      const double expect = std::abs(gain) * std::sqrt(32.0);
      for (int64_t h = 0; h < 2; ++h) {
        for (int64_t i = 0; i < N; ++i) {
          // eps = 1e-6 in the RMS shortens the norm by a relative ~5e-7 / mean(x^2).
          EXPECT_NEAR(std::sqrt(dot(row(a.q, 0, h, i), row(a.q, 0, h, i))), expect, 1e-5 * expect)
              << "rope " << rope << " gain " << gain << " token " << i;
          EXPECT_NEAR(std::sqrt(dot(row(a.k, 0, h, i), row(a.k, 0, h, i))), expect, 1e-5 * expect);
        }
      }
    }
  }
}

// ------------------------------------------------------------------ RoPE

TEST(WorkloadRope, AxesFollowFluxSplit) {
  EXPECT_EQ(ta::workload::rope_axes(128), (std::array<int64_t, 3>{16, 56, 56}));
  EXPECT_EQ(ta::workload::rope_axes(64), (std::array<int64_t, 3>{8, 28, 28}));
  EXPECT_EQ(ta::workload::rope_axes(32), (std::array<int64_t, 3>{4, 14, 14}));
  EXPECT_EQ(ta::workload::rope_axes(2), (std::array<int64_t, 3>{0, 0, 2}));
  for (int64_t d = 2; d <= 256; d += 2) {
    const auto a = ta::workload::rope_axes(d);
    EXPECT_EQ(a[0] + a[1] + a[2], d);
    for (int64_t w : a) EXPECT_EQ(w % 2, 0) << "d=" << d;
  }
}

TEST(WorkloadRope, PairTurnsByPositionTimesThetaPower_d128) {
  // Unit vector on pair i = 3 of axis 1 (dims 16 + 6, 16 + 7), position y = 5.
  std::vector<double> x(128, 0.0);
  x[22] = 1.0;
  ta::workload::apply_rope(x.data(), 128, {0, 5, 9});
  const double angle = 5.0 * std::pow(10000.0, -6.0 / 56.0);
  EXPECT_NEAR(x[22], std::cos(angle), 1e-15);
  EXPECT_NEAR(x[23], std::sin(angle), 1e-15);
  for (size_t j = 0; j < x.size(); ++j) {
    if (j != 22 && j != 23) EXPECT_EQ(x[j], 0.0) << j;
  }
  // Pair 0 of axis 0 (grid index) turns by g * 1.
  std::vector<double> z(128, 0.0);
  z[1] = 1.0;
  ta::workload::apply_rope(z.data(), 128, {2, 0, 0});
  EXPECT_NEAR(z[0], -std::sin(2.0), 1e-15);
  EXPECT_NEAR(z[1], std::cos(2.0), 1e-15);
}

// The property attention sees: rope(a, p) . rope(b, p') = a . rope(b, p' - p).
TEST(WorkloadRope, ScoresDependOnRelativePositionOnly_d128_d32) {
  tatest::Rng rng(7);
  for (int64_t d : {128, 32}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<double> a(static_cast<size_t>(d)), b(a.size());
      for (size_t j = 0; j < a.size(); ++j) {
        a[j] = rng.normal();
        b[j] = rng.normal();
      }
      const std::array<int64_t, 3> p{static_cast<int64_t>(rng.next() % 3), static_cast<int64_t>(rng.next() % 64),
                                     static_cast<int64_t>(rng.next() % 64)};
      const std::array<int64_t, 3> p2{static_cast<int64_t>(rng.next() % 3), static_cast<int64_t>(rng.next() % 64),
                                      static_cast<int64_t>(rng.next() % 64)};
      std::vector<double> ra = a, rb = b, rel = b;
      ta::workload::apply_rope(ra.data(), d, p);
      ta::workload::apply_rope(rb.data(), d, p2);
      ta::workload::apply_rope(rel.data(), d, {p2[0] - p[0], p2[1] - p[1], p2[2] - p[2]});
      EXPECT_NEAR(dot(ra, rb), dot(a, rel), 1e-10) << "d=" << d << " trial " << trial;
      EXPECT_NEAR(dot(ra, ra), dot(a, a), 1e-10);  // a rotation keeps norms
    }
  }
}

TEST(WorkloadRope, TokenPositionsTextAtOriginThenGridRowMajor_text3_grids2x3_4x1) {
  const ta_workload_params p = params_for(3, {{2, 3}, {4, 1}});
  using P = std::array<int64_t, 3>;
  EXPECT_EQ(ta::workload::token_position(p.layout, 0), (P{0, 0, 0}));
  EXPECT_EQ(ta::workload::token_position(p.layout, 2), (P{0, 0, 0}));
  EXPECT_EQ(ta::workload::token_position(p.layout, 3), (P{0, 0, 0}));
  EXPECT_EQ(ta::workload::token_position(p.layout, 5), (P{0, 0, 2}));
  EXPECT_EQ(ta::workload::token_position(p.layout, 6), (P{0, 1, 0}));
  EXPECT_EQ(ta::workload::token_position(p.layout, 8), (P{0, 1, 2}));
  EXPECT_EQ(ta::workload::token_position(p.layout, 9), (P{1, 0, 0}));
  EXPECT_EQ(ta::workload::token_position(p.layout, 12), (P{1, 3, 0}));
}

// Generating with rope on equals generating with rope off, then rotating each token by
// its position: the generator applies exactly the documented rotation, to q and k only.
TEST(WorkloadRope, GeneratedRopeIsTheRotationOfTheUnrotatedVectors_text4_grids5x6_3x3_d32_dv6) {
  ta_workload_params p = params_for(4, {{5, 6}, {3, 3}});
  const int64_t N = token_count(p);
  Qkv plain(TA_DTYPE_F64, 1, 2, N, 32, 6), rotated(TA_DTYPE_F64, 1, 2, N, 32, 6);
  p.rope = 0;
  ASSERT_EQ(plain.generate(p), TA_OK);
  p.rope = 1;
  ASSERT_EQ(rotated.generate(p), TA_OK);
  int64_t moved = 0;
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < N; ++i) {
      const auto pos = ta::workload::token_position(p.layout, i);
      for (const auto& [src, dst] : {std::pair{&plain.q, &rotated.q}, std::pair{&plain.k, &rotated.k}}) {
        std::vector<double> expect = row(*src, 0, h, i);
        ta::workload::apply_rope(expect.data(), 32, pos);
        const std::vector<double> got = row(*dst, 0, h, i);
        for (size_t j = 0; j < got.size(); ++j) EXPECT_NEAR(got[j], expect[j], 1e-12) << "token " << i;
        if (row(*src, 0, h, i) != got) ++moved;
      }
      EXPECT_EQ(row(plain.v, 0, h, i), row(rotated.v, 0, h, i)) << "v must not rotate";
    }
  }
  EXPECT_GT(moved, N);  // the rotation did something (every non-origin token moves)
}

// ------------------------------------------------------------------ content

TEST(WorkloadContent, GridChannelsAreStandardisedTextIsStandardNormal_text400_grid20x30) {
  const ta_workload_params p = params_for(400, {{20, 30}});
  const std::vector<double> c = ta::workload::batch_content(p.layout, 3.0, 11, 0, 2);
  const int64_t C = ta::workload::kChannels;
  ASSERT_EQ(static_cast<int64_t>(c.size()), (400 + 600) * C);
  for (int64_t ch = 0; ch < C; ++ch) {
    double mean = 0.0, sq = 0.0;
    for (int64_t t = 400; t < 1000; ++t) mean += c[static_cast<size_t>(t * C + ch)];
    mean /= 600.0;
    for (int64_t t = 400; t < 1000; ++t) sq += std::pow(c[static_cast<size_t>(t * C + ch)] - mean, 2);
    EXPECT_NEAR(mean, 0.0, 1e-12) << "channel " << ch;
    EXPECT_NEAR(sq / 600.0, 1.0, 1e-12) << "channel " << ch;
  }
  double sum = 0.0, sum2 = 0.0;
  for (int64_t i = 0; i < 400 * C; ++i) {
    sum += c[static_cast<size_t>(i)];
    sum2 += c[static_cast<size_t>(i)] * c[static_cast<size_t>(i)];
  }
  const double n = 400.0 * static_cast<double>(C);
  EXPECT_NEAR(sum / n, 0.0, 0.03);
  EXPECT_NEAR(sum2 / n, 1.0, 0.05);
}

// Edge renormalisation: a corner averages a quarter of the kernel's noise, divided by a
// quarter of its weight, so its variance is about 4x the interior's (2x per axis). Without
// renormalisation it would be about 1/4 of it.
TEST(WorkloadContent, CornersAreRenormalisedNotDimmed_grid30x30_smoothness3) {
  const ta_workload_params p = params_for(0, {{30, 30}});
  const int64_t C = ta::workload::kChannels;
  double corner = 0.0, centre = 0.0;
  for (int64_t b = 0; b < 8; ++b) {
    const std::vector<double> c = ta::workload::batch_content(p.layout, 3.0, 5, b, 2);
    for (int64_t ch = 0; ch < C; ++ch) {
      for (int64_t t : {int64_t{0}, int64_t{29}, int64_t{870}, int64_t{899}}) {
        corner += std::pow(c[static_cast<size_t>(t * C + ch)], 2);
      }
      for (int64_t t : {int64_t{14 * 30 + 14}, int64_t{14 * 30 + 15}, int64_t{15 * 30 + 14}, int64_t{15 * 30 + 15}}) {
        centre += std::pow(c[static_cast<size_t>(t * C + ch)], 2);
      }
    }
  }
  EXPECT_GT(corner / centre, 2.0);
  EXPECT_LT(corner / centre, 8.0);
}

// Mean cosine between the q of horizontally adjacent grid tokens (rope off, so only the
// content differs): high for smooth content, lower for rough; text tokens are unrelated.
double neighbour_cosine(double smoothness, double* text_cosine) {
  ta_workload_params p = params_for(32, {{24, 24}});
  p.rope = 0;
  p.smoothness = smoothness;
  const int64_t N = token_count(p);
  Qkv a(TA_DTYPE_F64, 1, 1, N, 32, 4);
  EXPECT_EQ(a.generate(p), TA_OK);
  double sum = 0.0;
  int64_t pairs = 0;
  for (int64_t y = 0; y < 24; ++y) {
    for (int64_t x = 0; x + 1 < 24; ++x) {
      const int64_t i = 32 + y * 24 + x;
      sum += cosine(row(a.q, 0, 0, i), row(a.q, 0, 0, i + 1));
      ++pairs;
    }
  }
  double text = 0.0;
  for (int64_t i = 0; i + 1 < 32; ++i) text += cosine(row(a.q, 0, 0, i), row(a.q, 0, 0, i + 1));
  *text_cosine = text / 31.0;
  return sum / static_cast<double>(pairs);
}

TEST(WorkloadContent, NeighboursCorrelateMoreForSmootherContent_text32_grid24x24_d32) {
  double text8 = 0.0, text1 = 0.0;
  const double smooth = neighbour_cosine(8.0, &text8);
  const double rough = neighbour_cosine(1.0, &text1);
  const double raw = neighbour_cosine(0.05, &text1);  // sigma far below one token: no blur
  EXPECT_GT(smooth, 0.95);
  EXPECT_GT(smooth, rough + 0.1);
  EXPECT_GT(rough, raw + 0.2);
  EXPECT_LT(std::abs(raw), 0.15);
  EXPECT_LT(std::abs(text8), 0.2);
}

// ------------------------------------------------------------------ alignment

TEST(Workload, AlignmentOneGivesKEqualToQAlignmentZeroDoesNot_text3_grid4x5_d16) {
  ta_workload_params p = params_for(3, {{4, 5}});
  const int64_t N = token_count(p);
  Qkv a(TA_DTYPE_F64, 1, 2, N, 16, 16);
  p.alignment = 1.0;
  ASSERT_EQ(a.generate(p), TA_OK);
  EXPECT_EQ(a.q.element_bytes(), a.k.element_bytes());
  p.alignment = 0.0;
  ASSERT_EQ(a.generate(p), TA_OK);
  EXPECT_NE(a.q.element_bytes(), a.k.element_bytes());
  // With alignment 0 the same token's q and k are unrelated; with 0.9 they mostly agree.
  double c0 = 0.0, c9 = 0.0;
  for (int64_t i = 0; i < N; ++i) c0 += cosine(row(a.q, 0, 0, i), row(a.k, 0, 0, i));
  p.alignment = 0.9;
  ASSERT_EQ(a.generate(p), TA_OK);
  for (int64_t i = 0; i < N; ++i) c9 += cosine(row(a.q, 0, 0, i), row(a.k, 0, 0, i));
  EXPECT_LT(std::abs(c0 / static_cast<double>(N)), 0.3);
  EXPECT_GT(c9 / static_cast<double>(N), 0.7);
}

// ------------------------------------------------------------------ dtypes and strides

// f16/bf16/f32 outputs, contiguous or through strided views with gaps, are the f64 values
// rounded once; nothing outside the elements is written.
TEST(Workload, StridedAndLowPrecisionOutputsAreTheF64ValuesRounded_B2_H2_text3_grid3x4_d8_dv6) {
  ta_workload_params p = params_for(3, {{3, 4}});
  const int64_t N = token_count(p);
  Qkv ref(TA_DTYPE_F64, 2, 2, N, 8, 6);
  ASSERT_EQ(ref.generate(p), TA_OK);
  // Strided: heads outermost, tokens spaced 3 rows apart, d with a gap of one element.
  const std::vector<int64_t> qk_strides = {3 * N * 16, 2 * 3 * N * 16, 16 * 3, 2};
  const std::vector<int64_t> v_strides = {6, 2 * 6 * N + 5, 2 * 6, 1};  // batch innermost of rows
  for (ta_dtype dt : {TA_DTYPE_F16, TA_DTYPE_BF16, TA_DTYPE_F32, TA_DTYPE_F64}) {
    for (bool strided : {false, true}) {
      Qkv out = strided ? Qkv(dt, 2, 2, N, 8, 6, qk_strides, v_strides) : Qkv(dt, 2, 2, N, 8, 6);
      for (TestTensor* t : {&out.q, &out.k, &out.v}) t->fill_bytes(0xA5);
      ASSERT_EQ(out.generate(p), TA_OK) << tatest::dtype_tag(dt) << ": " << ta_last_error_message();
      const std::pair<const TestTensor*, const TestTensor*> pairs[] = {
          {&ref.q, &out.q}, {&ref.k, &out.k}, {&ref.v, &out.v}};
      for (const auto& [r, o] : pairs) {
        std::string where;
        EXPECT_TRUE(o->canaries_intact(0xA5, &where)) << tatest::dtype_tag(dt) << ": " << where;
        const std::vector<double> want = r->dense(), got = o->dense();
        for (size_t i = 0; i < want.size(); ++i) {
          ASSERT_EQ(got[i], tatest::round_to(dt, want[i]))
              << tatest::dtype_tag(dt) << (strided ? " strided" : " contiguous") << " element " << i;
        }
      }
    }
  }
}

TEST(Workload, MixedDtypesPerTensorAreAccepted_text2_grid2x2_d4) {
  ta_workload_params p = params_for(2, {{2, 2}});
  TestTensor q(TA_DTYPE_BF16, {1, 1, 6, 4}), k(TA_DTYPE_F32, {1, 1, 6, 4}), v(TA_DTYPE_F64, {1, 1, 6, 3});
  EXPECT_EQ(ta_workload_generate(&p, q.ptr(), k.ptr(), v.ptr()), TA_OK) << ta_last_error_message();
}

// Text-only and grid-only layouts, a 1x1 grid (zero variance) and rope with d = 2.
TEST(Workload, EdgeLayoutsGiveFiniteValues_textOnly_gridOnly_grid1x1_d2) {
  for (const auto& p : {params_for(7, {}), params_for(0, {{3, 5}}), params_for(1, {{1, 1}, {1, 4}})}) {
    const int64_t N = token_count(p);
    Qkv a(TA_DTYPE_F64, 1, 1, N, 2, 3);
    ASSERT_EQ(a.generate(p), TA_OK) << ta_last_error_message();
    for (double x : a.q.dense()) EXPECT_TRUE(std::isfinite(x));
    for (double x : a.v.dense()) EXPECT_TRUE(std::isfinite(x));
  }
}

TEST(Workload, HugeSmoothnessStaysFiniteAndFast_text0_grid8x8) {
  ta_workload_params p = params_for(0, {{8, 8}});
  p.smoothness = 1e300;  // the kernel is cut at the grid's extent, not at 3e300 taps
  Qkv a(TA_DTYPE_F64, 1, 1, 64, 4, 4);
  ASSERT_EQ(a.generate(p), TA_OK);
  for (double x : a.q.dense()) EXPECT_TRUE(std::isfinite(x));
}

// ------------------------------------------------------------------ bad inputs

struct BadCase {
  const char* name;
  const char* message;  // a fragment the error message must contain
  void (*spoil)(ta_workload_params* p, ta_tensor* q, ta_tensor* k, ta_tensor* v, const ta_tensor** qp,
                const ta_tensor** kp, const ta_tensor** vp, const ta_workload_params** pp);
};

class WorkloadBadInput : public ::testing::TestWithParam<BadCase> {};

// One good call (text 2 + grid 2x3, B=1, H=2, d=4, dv=2), spoiled in one way per case.
TEST_P(WorkloadBadInput, ReturnsInvalidArgumentNamingTheProblem) {
  const BadCase& c = GetParam();
  ta_workload_params p = params_for(2, {{2, 3}});
  TestTensor tq(TA_DTYPE_F32, {1, 2, 8, 4}), tk(TA_DTYPE_F32, {1, 2, 8, 4}), tv(TA_DTYPE_F32, {1, 2, 8, 2});
  ta_tensor q = tq.desc(), k = tk.desc(), v = tv.desc();
  const ta_tensor *qp = &q, *kp = &k, *vp = &v;
  const ta_workload_params* pp = &p;
  ASSERT_EQ(ta_workload_generate(pp, qp, kp, vp), TA_OK) << "the unspoiled call must work";
  tq.fill_bytes(0x5A);
  const auto before = tq.snapshot();
  c.spoil(&p, &q, &k, &v, &qp, &kp, &vp, &pp);
  EXPECT_EQ(ta_workload_generate(pp, qp, kp, vp), TA_ERR_INVALID_ARGUMENT) << c.name;
  const std::string message = ta_last_error_message();
  EXPECT_NE(message.find(c.message), std::string::npos) << c.name << ": " << message;
  EXPECT_TRUE(tq.same_bytes(before)) << c.name << ": q written before the arguments were checked";
}

const BadCase kBadCases[] = {
    {"null_params", "params is NULL",
     [](ta_workload_params*, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params** pp) { *pp = nullptr; }},
    {"null_q", "q is NULL",
     [](ta_workload_params*, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor** qp, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { *qp = nullptr; }},
    {"null_k", "k is NULL",
     [](ta_workload_params*, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor** kp,
        const ta_tensor**, const ta_workload_params**) { *kp = nullptr; }},
    {"null_v", "v is NULL",
     [](ta_workload_params*, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor** vp, const ta_workload_params**) { *vp = nullptr; }},
    {"struct_size", "struct_size",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->struct_size -= 8; }},
    {"smoothness_zero", "smoothness",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->smoothness = 0.0; }},
    {"smoothness_negative", "smoothness",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->smoothness = -2.0; }},
    {"smoothness_nan", "smoothness",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->smoothness = std::nan(""); }},
    {"smoothness_inf", "smoothness",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->smoothness = std::numeric_limits<double>::infinity(); }},
    {"alignment_below", "alignment",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->alignment = -0.01; }},
    {"alignment_above", "alignment",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->alignment = 1.5; }},
    {"alignment_nan", "alignment",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->alignment = std::nan(""); }},
    {"gain_inf", "gain",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->gain = -std::numeric_limits<double>::infinity(); }},
    {"gain_nan", "gain",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->gain = std::nan(""); }},
    {"rope_two", "rope must be 0 or 1",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->rope = 2; }},
    {"layout_token_count", "N = 8",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->layout.text_tokens = 3; }},
    {"layout_too_many_grids", "num_grids",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->layout.num_grids = TA_MAX_GRIDS + 1; }},
    {"layout_empty_grid", "grid 0 is 0x3",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->layout.grid_height[0] = 0; }},
    {"layout_negative_text", "text_tokens is negative",
     [](ta_workload_params* p, ta_tensor*, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { p->layout.text_tokens = -1; }},
    {"cuda_tensor", "q must be a CPU tensor",
     [](ta_workload_params*, ta_tensor* q, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { q->device = TA_DEVICE_CUDA; }},
    {"three_dims", "k must have 4 dimensions",
     [](ta_workload_params*, ta_tensor*, ta_tensor* k, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { k->ndim = 3; }},
    {"zero_extent", "v.shape[1] is 0",
     [](ta_workload_params*, ta_tensor*, ta_tensor*, ta_tensor* v, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { v->shape[1] = 0; }},
    {"bool_dtype", "dtype bool is not supported",
     [](ta_workload_params*, ta_tensor* q, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { q->dtype = TA_DTYPE_BOOL; }},
    {"unknown_dtype", "dtype unknown (77)",
     [](ta_workload_params*, ta_tensor* q, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) {
       const int32_t raw = 77;
       std::memcpy(&q->dtype, &raw, sizeof raw);
     }},
    {"null_data", "v.data is NULL",
     [](ta_workload_params*, ta_tensor*, ta_tensor*, ta_tensor* v, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { v->data = nullptr; }},
    {"negative_stride", "q.strides[2] is negative",
     [](ta_workload_params*, ta_tensor* q, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { q->strides[2] = -4; }},
    {"overlapping_elements", "k strides make distinct elements overlap",
     [](ta_workload_params*, ta_tensor*, ta_tensor* k, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { k->strides[1] = 0; }},
    {"stride_overflow", "overflow",
     [](ta_workload_params*, ta_tensor* q, ta_tensor*, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { q->strides[1] = INT64_MAX / 2; }},
    {"k_shape", "q and k shapes differ",
     [](ta_workload_params*, ta_tensor*, ta_tensor* k, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { k->shape[3] = 2; }},
    {"v_tokens", "v must be [B,H,N,dv]",
     [](ta_workload_params*, ta_tensor*, ta_tensor*, ta_tensor* v, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { v->shape[2] = 4; }},
    {"odd_head_dim_with_rope", "rope needs an even head dim",
     [](ta_workload_params*, ta_tensor* q, ta_tensor* k, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { q->shape[3] = k->shape[3] = 3; }},
    {"q_and_k_share_memory", "q and k memory overlaps",
     [](ta_workload_params*, ta_tensor* q, ta_tensor* k, ta_tensor*, const ta_tensor**, const ta_tensor**,
        const ta_tensor**, const ta_workload_params**) { k->data = q->data; }},
};

INSTANTIATE_TEST_SUITE_P(Workload, WorkloadBadInput, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(Workload, OddHeadDimIsFineWithoutRope_text2_grid2x3_d3) {
  ta_workload_params p = params_for(2, {{2, 3}});
  p.rope = 0;
  TestTensor q(TA_DTYPE_F32, {1, 1, 8, 3}), k(TA_DTYPE_F32, {1, 1, 8, 3}), v(TA_DTYPE_F32, {1, 1, 8, 5});
  EXPECT_EQ(ta_workload_generate(&p, q.ptr(), k.ptr(), v.ptr()), TA_OK) << ta_last_error_message();
}

}  // namespace

// Regression (fuzz/fuzz_workload, fuzz/regressions/fuzz_workload/gain-overflows-dtype): a
// finite but huge gain overflowed f16/bf16/f32 and the generator returned infinities with
// TA_OK. It now names the gain and the dtype instead; a representable gain still works.
TEST(WorkloadRegression, GainThatOverflowsTheDtypeIsAnError_text2_grid3x3_d8) {
  for (auto [dt, gain] : {std::pair{TA_DTYPE_F16, 1e5}, std::pair{TA_DTYPE_BF16, 1e300}, std::pair{TA_DTYPE_F32, 1e300}}) {
    SCOPED_TRACE(ta_dtype_name(dt));
    ta_workload_params p;
    ASSERT_EQ(ta_workload_defaults(&p), TA_OK);
    p.layout.text_tokens = 2;
    p.layout.grid_height[0] = p.layout.grid_width[0] = 3;
    p.gain = gain;
    Qkv t(dt, 1, 1, 11, 8, 4);
    EXPECT_EQ(t.generate(p), TA_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(ta_last_error_message()).find("overflow"), std::string::npos) << ta_last_error_message();
    p.gain = 100.0;
    EXPECT_EQ(t.generate(p), TA_OK) << ta_last_error_message();
  }
}
