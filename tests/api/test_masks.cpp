// Key-padding masks: every accepted form in bool and float dtypes, equivalence with
// removing the keys, all-kept == no mask bitwise, broadcast strides, and every refused form.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <ostream>
#include <string>
#include <tuple>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::make_mask;
using tatest::make_problem;
using tatest::MaskForm;
using tatest::Problem;
using tatest::RefKind;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::test_config;

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Random keep pattern [B*Nk]; batch-shared when asked; at least one kept and one
// dropped key per batch.
std::vector<uint8_t> random_keep(const Shape &s, uint64_t seed, bool shared) {
  tatest::Rng rng(seed);
  std::vector<uint8_t> keep(static_cast<size_t>(s.B * s.Nk));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t j = 0; j < s.Nk; ++j)
      keep[static_cast<size_t>(b * s.Nk + j)] =
          (shared && b > 0) ? keep[static_cast<size_t>(j)] : static_cast<uint8_t>(rng.uniform() < 0.6);
  for (int64_t b = 0; b < s.B; ++b) {
    keep[static_cast<size_t>(b * s.Nk + 0)] = 1;
    keep[static_cast<size_t>(b * s.Nk + 1)] = 0;
  }
  return keep;
}

const MaskForm kForms[] = {MaskForm::Nk,        MaskForm::B_Nk,      MaskForm::One_Nk,    MaskForm::B_1_1_Nk,
                           MaskForm::One_1_1_Nk, MaskForm::B_H_Nq_Nk, MaskForm::B_1_Nq_Nk, MaskForm::One_H_1_Nk,
                           MaskForm::B_1_Nk,    MaskForm::One_Nq_Nk, MaskForm::B_Nq_Nk};

class MaskForms : public ::testing::TestWithParam<std::tuple<MaskForm, ta_dtype>> {};

// Bool masks go with f32 inputs, float masks with inputs of their own dtype.
ta_dtype input_dtype(ta_dtype mask_dt) { return mask_dt == TA_DTYPE_BOOL ? TA_DTYPE_F32 : mask_dt; }

TEST_P(MaskForms, MatchesReferenceWithKeysRemoved_B2_H3_Nq7_Nk11_d4_dv3) {
  const auto [form, mdt] = GetParam();
  const Shape s{2, 3, 7, 11, 4, 3};
  const ta_dtype dt = input_dtype(mdt);
  auto p = make_problem(s, dt, 21);
  p.keep = random_keep(s, 5, tatest::mask_form_batch_shared(form));
  p.mask = make_mask(form, mdt, s, p.keep);
  const ta_config c = test_config(3, 1);
  const auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << r.message << " reason " << rname(r.stats.fallback_reason);
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, tatest::rel_tolerance(dt, ref)));
  // Denominators count kept keys only.
  double mn = 1e300, mx = -1e300, mean = 0;
  for (double d : ref.den) { mn = std::min(mn, d); mx = std::max(mx, d); mean += d; }
  mean /= static_cast<double>(ref.den.size());
  const double rel = dt == TA_DTYPE_F64 ? 1e-9 : 1e-4;
  EXPECT_TRUE(tatest::near_rel(r.stats.denom_min, mn, rel));
  EXPECT_TRUE(tatest::near_rel(r.stats.denom_max, mx, rel));
  EXPECT_TRUE(tatest::near_rel(r.stats.denom_mean, mean, rel));
  // The library's exact references honour the same mask.
  const ta_attention_args a = p.args();
  p.out.fill_bytes(0xA5);
  ASSERT_EQ(ta_reference_attention(&a, &c, TA_REFERENCE_EXACT_ORIGINAL), TA_OK) << ta_last_error_message();
  EXPECT_TRUE(p.out.canaries_intact(0xA5));
  const auto exact = tatest::reference_of(p, c, RefKind::ExactOriginal);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), exact.out, dt == TA_DTYPE_F64 ? 1e-12 : 2 * tatest::unit_roundoff(dt)));
}

TEST_P(MaskForms, AllKeptEqualsNoMaskBitwise_B2_H3_Nq7_Nk11_d4_dv3) {
  const auto [form, mdt] = GetParam();
  const Shape s{2, 3, 7, 11, 4, 3};
  const ta_dtype dt = input_dtype(mdt);
  auto p = make_problem(s, dt, 22, 0.5);
  const ta_config c = test_config(4, 1);
  ASSERT_EQ(run_checked(p, c).status, TA_OK);
  const auto no_mask = p.out.element_bytes();
  p.mask = make_mask(form, mdt, s, std::vector<uint8_t>(static_cast<size_t>(s.B * s.Nk), 1));
  ASSERT_EQ(run_checked(p, c).status, TA_OK);
  EXPECT_EQ(p.out.element_bytes(), no_mask) << "an all-attend mask changed the output bits";
}

INSTANTIATE_TEST_SUITE_P(Api, MaskForms,
                         ::testing::Combine(::testing::ValuesIn(kForms),
                                            ::testing::Values(TA_DTYPE_BOOL, TA_DTYPE_F32, TA_DTYPE_F64,
                                                              TA_DTYPE_F16, TA_DTYPE_BF16)),
                         [](const auto &info) {
                           return std::string(tatest::mask_form_name(std::get<0>(info.param))) + "_" +
                                  tatest::dtype_tag(std::get<1>(info.param));
                         });

// Masking keys gives the output of the call with those keys removed; the dropped keys'
// contents (here: wild values) do not matter.
TEST(Masks, MaskingEqualsRemovingKeys_B2_H2_Nq9_Nk16_d6_dv5) {
  const Shape s{2, 2, 9, 16, 6, 5};
  auto p = make_problem(s, TA_DTYPE_F64, 31);
  std::vector<uint8_t> keep(static_cast<size_t>(s.B * s.Nk));
  for (int64_t j = 0; j < s.Nk; ++j) keep[static_cast<size_t>(j)] = keep[static_cast<size_t>(s.Nk + j)] = (j % 3 != 1);
  p.keep = keep;
  p.mask = make_mask(MaskForm::Nk, TA_DTYPE_BOOL, s, keep);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t j = 0; j < s.Nk; ++j)
        if (j % 3 == 1) {
          for (int64_t m = 0; m < s.d; ++m) p.k.set({b, h, j, m}, 50.0 * (m % 2 ? 1 : -1));
          for (int64_t e = 0; e < s.dv; ++e) p.v.set({b, h, j, e}, 1e6);
        }
  const ta_config c = test_config(3, 1);
  ASSERT_EQ(run_checked(p, c).status, TA_OK);
  const auto masked = p.out.dense();

  // The same call on the kept keys only.
  int64_t nk = 0;
  for (int64_t j = 0; j < s.Nk; ++j) nk += keep[static_cast<size_t>(j)];
  const Shape s2{s.B, s.H, s.Nq, nk, s.d, s.dv};
  auto p2 = make_problem(s2, TA_DTYPE_F64, 1);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      for (int64_t i = 0; i < s.Nq; ++i)
        for (int64_t m = 0; m < s.d; ++m) p2.q.set({b, h, i, m}, p.q.get({b, h, i, m}));
      int64_t jj = 0;
      for (int64_t j = 0; j < s.Nk; ++j) {
        if (!keep[static_cast<size_t>(j)]) continue;
        for (int64_t m = 0; m < s.d; ++m) p2.k.set({b, h, jj, m}, p.k.get({b, h, j, m}));
        for (int64_t e = 0; e < s.dv; ++e) p2.v.set({b, h, jj, e}, p.v.get({b, h, j, e}));
        ++jj;
      }
    }
  ASSERT_EQ(run_checked(p2, c).status, TA_OK);
  EXPECT_TRUE(tatest::close_rel_l2(masked, p2.out.dense(), 1e-12));
  EXPECT_TRUE(tatest::close_rel_l2(masked, tatest::reference_of(p, c, RefKind::Taylor).out, 1e-9));
}

// A full [B,H,Nq,Nk] mask broadcast from [B,Nk] through zero strides.
TEST(Masks, ZeroStrideBroadcastFullShape_B2_H3_Nq5_Nk8_d4_dv4) {
  const Shape s{2, 3, 5, 8, 4, 4};
  for (ta_dtype mdt : {TA_DTYPE_BOOL, TA_DTYPE_F32}) {
    SCOPED_TRACE(tatest::dtype_tag(mdt));
    auto p = make_problem(s, TA_DTYPE_F64, 41);
    p.keep = random_keep(s, 7, false);
    tatest::TestTensor m(mdt, {s.B, s.H, s.Nq, s.Nk}, {s.Nk, 0, 0, 1});
    m.for_each([&](const std::array<int64_t, 4> &i, int64_t off) {
      const bool k = p.keep[static_cast<size_t>(i[0] * s.Nk + i[3])];
      m.set_at(off, mdt == TA_DTYPE_BOOL ? (k ? 1.0 : 0.0) : (k ? 0.0 : -kInf));
    });
    p.mask = std::move(m);
    const ta_config c = test_config(3, 2);
    const auto r = run_checked(p, c);
    ASSERT_EQ(r.status, TA_OK) << r.message << rname(r.stats.fallback_reason);
    EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), tatest::reference_of(p, c, RefKind::Taylor).out, 1e-9));
  }
}

// A [B,Nk] mask read through a strided view (every other byte / element).
TEST(Masks, StridedMaskView_B2_H1_Nq4_Nk9_d4_dv4) {
  const Shape s{2, 1, 4, 9, 4, 4};
  auto p = make_problem(s, TA_DTYPE_F64, 42);
  p.keep = random_keep(s, 8, false);
  tatest::TestTensor m(TA_DTYPE_BOOL, {s.B, s.Nk}, {3 * s.Nk, 2});
  m.for_each([&](const std::array<int64_t, 4> &i, int64_t off) {
    m.set_at(off, p.keep[static_cast<size_t>(i[0] * s.Nk + i[1])]);
  });
  // Gaps of a bool mask hold 0xFF bytes (= attend): a library reading them would keep wrong keys.
  p.mask = std::move(m);
  const ta_config c = test_config(3, 1);
  ASSERT_EQ(run_checked(p, c).status, TA_OK);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), tatest::reference_of(p, c, RefKind::Taylor).out, 1e-9));
}

// -1e4 exactly blocks; -0.0 attends (it equals 0).
TEST(Masks, FloatThresholdAndNegativeZero_B1_H1_Nq3_Nk5_d4_dv4) {
  const Shape s{1, 1, 3, 5, 4, 4};
  auto p = make_problem(s, TA_DTYPE_F32, 43);
  p.keep = {1, 0, 1, 0, 1};
  tatest::TestTensor m(TA_DTYPE_F32, {s.Nk});
  const double vals[] = {-0.0, -1e4, 0.0, -kInf, -0.0};
  for (int j = 0; j < 5; ++j) m.set_at(j, vals[j]);
  p.mask = std::move(m);
  const ta_config c = test_config(3, 1);
  const auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << r.message << rname(r.stats.fallback_reason);
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, tatest::rel_tolerance(TA_DTYPE_F32, ref)));
}

// Every key of one batch masked: every denominator there is 0. A fallback with
// fallback_on_negative, a zero output (0 / eps) when clamping.
TEST(Masks, AllKeysMaskedInOneBatch_B2_H2_Nq4_Nk6_d4_dv4) {
  const Shape s{2, 2, 4, 6, 4, 4};
  auto p = make_problem(s, TA_DTYPE_F64, 44);
  p.keep = {1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  p.mask = make_mask(MaskForm::B_Nk, TA_DTYPE_BOOL, s, p.keep);
  ta_config c = test_config(3, 1);
  auto r = run_checked(p, c);
  EXPECT_EQ(r.status, TA_FALLBACK);
  EXPECT_EQ(r.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << rname(r.stats.fallback_reason);
  c.fallback_on_negative = 0;
  r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, 1e-9));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t e = 0; e < 4; ++e) EXPECT_EQ(p.out.get({1, h, i, e}), 0.0);
  EXPECT_EQ(r.stats.denom_le_eps, 2 * 4);  // batch 1: H * Nq denominators of 0
  EXPECT_EQ(r.stats.denom_min, 0.0);
}

// ---- Refused masks ----
struct BadMask {
  const char *name;
  ta_dtype dt;
  std::vector<int64_t> shape;
  // value at (index in row-major order, idx)
  double (*value)(const std::array<int64_t, 4> &idx, size_t nd);
};

class RefusedMasks : public ::testing::TestWithParam<BadMask> {};

void PrintTo(const BadMask &m, std::ostream *os) { *os << m.name; }

TEST_P(RefusedMasks, UnsupportedMask_B2_H3_Nq5_Nk8_d4_dv4) {
  const BadMask &bm = GetParam();
  const Shape s{2, 3, 5, 8, 4, 4};
  auto p = make_problem(s, TA_DTYPE_F32, 51);
  tatest::TestTensor m(bm.dt, bm.shape);
  const size_t nd = bm.shape.size();
  m.for_each([&](const std::array<int64_t, 4> &i, int64_t off) { m.set_at(off, bm.value(i, nd)); });
  p.mask = std::move(m);
  const ta_config c = test_config(3, 1);
  const auto r = run_checked(p, c);
  EXPECT_EQ(r.check_reason, TA_REASON_UNSUPPORTED_MASK) << rname(r.check_reason);
  EXPECT_EQ(r.status, TA_FALLBACK);
  EXPECT_EQ(r.stats.fallback_reason, TA_REASON_UNSUPPORTED_MASK);
  const ta_attention_args a = p.args();
  p.out.fill_bytes(0xA5);
  EXPECT_EQ(ta_reference_attention(&a, &c, TA_REFERENCE_EXACT_ORIGINAL), TA_ERR_UNSUPPORTED);
  EXPECT_TRUE(p.out.canaries_intact(0xA5));
}

double attend_all_bool(const std::array<int64_t, 4> &, size_t) { return 1; }

INSTANTIATE_TEST_SUITE_P(
    Api, RefusedMasks,
    ::testing::Values(
        BadMask{"bool_varies_over_heads", TA_DTYPE_BOOL, {2, 3, 1, 8},
                [](const std::array<int64_t, 4> &i, size_t) { return (i[1] == 2 && i[3] == 5) ? 0.0 : 1.0; }},
        BadMask{"bool_varies_over_queries", TA_DTYPE_BOOL, {2, 1, 5, 8},
                [](const std::array<int64_t, 4> &i, size_t) { return (i[0] == 1 && i[2] == 4 && i[3] == 7) ? 0.0 : 1.0; }},
        BadMask{"bool_full_varies_over_queries_deep", TA_DTYPE_BOOL, {2, 3, 5, 8},
                [](const std::array<int64_t, 4> &i, size_t) { return (i[0] == 1 && i[1] == 2 && i[2] == 3 && i[3] == 6) ? 0.0 : 1.0; }},
        BadMask{"bool_3d_varies_over_queries", TA_DTYPE_BOOL, {2, 5, 8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[1] == i[2] ? 0.0 : 1.0; }},
        BadMask{"float_causal", TA_DTYPE_F32, {1, 1, 5, 8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[3] > i[2] ? -kInf : 0.0; }},
        BadMask{"float_graded_bias", TA_DTYPE_F32, {8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[0] == 3 ? -0.5 : 0.0; }},
        BadMask{"float_just_above_threshold", TA_DTYPE_F32, {2, 8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[1] == 2 ? -9999.0 : 0.0; }},
        BadMask{"float_positive", TA_DTYPE_F64, {8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[0] == 0 ? 1.0 : 0.0; }},
        BadMask{"float_pos_inf", TA_DTYPE_F32, {8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[0] == 7 ? kInf : 0.0; }},
        BadMask{"float_nan", TA_DTYPE_F32, {2, 1, 1, 8},
                [](const std::array<int64_t, 4> &i, size_t) { return (i[0] == 1 && i[3] == 4) ? kNaN : 0.0; }},
        BadMask{"f16_nan", TA_DTYPE_F16, {8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[0] == 4 ? kNaN : 0.0; }},
        BadMask{"bf16_minus_9000_is_graded", TA_DTYPE_BF16, {8},
                [](const std::array<int64_t, 4> &i, size_t) { return i[0] == 4 ? -9000.0 : 0.0; }},
        BadMask{"wrong_last_dim_short", TA_DTYPE_BOOL, {7}, attend_all_bool},
        BadMask{"wrong_last_dim_long", TA_DTYPE_BOOL, {2, 9}, attend_all_bool},
        BadMask{"wrong_last_dim_4d", TA_DTYPE_F32, {1, 1, 1, 5},
                [](const std::array<int64_t, 4> &, size_t) { return 0.0; }}),
    [](const auto &info) { return std::string(info.param.name); });

// A batch extent that is neither 1 nor B: refused, either as an argument error or as an
// unsupported mask (the header does not say which), never run.
TEST(Masks, WrongBatchExtentRefused_B2_H1_Nq4_Nk6_d4_dv4) {
  const Shape s{2, 1, 4, 6, 4, 4};
  auto p = make_problem(s, TA_DTYPE_F32, 52);
  tatest::TestTensor m(TA_DTYPE_BOOL, {3, s.Nk});
  m.for_each([&](const std::array<int64_t, 4> &, int64_t off) { m.set_at(off, 1); });
  p.mask = std::move(m);
  const ta_attention_args a = p.args();
  const ta_config c = test_config();
  ta_reason r = TA_REASON_COUNT_;
  const ta_status st = ta_attention_check(&a, &c, &r);
  EXPECT_TRUE(st == TA_ERR_INVALID_ARGUMENT || (st == TA_OK && r == TA_REASON_UNSUPPORTED_MASK))
      << ta_status_string(st) << " " << rname(r);
}

}  // namespace
