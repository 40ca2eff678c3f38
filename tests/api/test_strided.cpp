// Strided and non-contiguous views: transposed [B,N,H,D] buffers, padded and gapped last
// dimensions, zero-stride broadcasts, strided outputs with gaps (guarded by canaries).
// Gaps of inputs hold NaN bytes, so reading one would poison the output.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::Problem;
using tatest::RefKind;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::TestTensor;
using tatest::test_config;

// Strides of a logical [B,H,N,D] tensor stored as [B,N,H,D+pad] (ComfyUI's q.view(B,N,H,D)
// seen through .transpose(1,2)), with element stride `es` in the last dimension.
std::vector<int64_t> bnhd(const Shape &s, int64_t N, int64_t D, int64_t pad = 0, int64_t es = 1) {
  const int64_t row = D * es + pad;
  return {N * s.H * row, row, s.H * row, es};
}

struct Layout {
  const char *name;
  std::vector<int64_t> (*q)(const Shape &);
  std::vector<int64_t> (*k)(const Shape &);
  std::vector<int64_t> (*v)(const Shape &);
  std::vector<int64_t> (*out)(const Shape &);
};

std::vector<int64_t> contiguous(const Shape &) { return {}; }

// Readable parameter names in test listings (instead of the struct's bytes).
void PrintTo(const Layout &l, std::ostream *os) { *os << l.name; }

const Layout kLayouts[] = {
    {"q_bnhd", [](const Shape &s) { return bnhd(s, s.Nq, s.d); }, contiguous, contiguous, contiguous},
    {"all_bnhd", [](const Shape &s) { return bnhd(s, s.Nq, s.d); }, [](const Shape &s) { return bnhd(s, s.Nk, s.d); },
     [](const Shape &s) { return bnhd(s, s.Nk, s.dv); }, [](const Shape &s) { return bnhd(s, s.Nq, s.dv); }},
    {"v_padded_rows", contiguous, contiguous,
     [](const Shape &s) { return std::vector<int64_t>{s.H * s.Nk * (s.dv + 5), s.Nk * (s.dv + 5), s.dv + 5, 1}; },
     contiguous},
    {"kv_last_dim_stride2", contiguous, [](const Shape &s) { return bnhd(s, s.Nk, s.d, 1, 2); },
     [](const Shape &s) { return std::vector<int64_t>{s.H * s.Nk * s.dv * 3, s.Nk * s.dv * 3, s.dv * 3, 3}; },
     contiguous},
    {"out_bnhd_padded", contiguous, contiguous, contiguous,
     [](const Shape &s) { return bnhd(s, s.Nq, s.dv, 3); }},
    {"out_last_dim_stride2", contiguous, contiguous, contiguous,
     [](const Shape &s) { return std::vector<int64_t>{s.H * s.Nq * s.dv * 2 + 7, s.Nq * s.dv * 2 + 1, s.dv * 2, 2}; }},
    {"k_broadcast_heads", contiguous,
     [](const Shape &s) { return std::vector<int64_t>{s.Nk * s.d, 0, s.d, 1}; }, contiguous, contiguous},
    {"kv_broadcast_batch_and_heads", contiguous, [](const Shape &s) { return std::vector<int64_t>{0, 0, s.d, 1}; },
     [](const Shape &s) { return std::vector<int64_t>{0, 0, s.dv, 1}; }, contiguous},
    {"q_one_row_broadcast", [](const Shape &s) { return std::vector<int64_t>{s.H * s.d, s.d, 0, 1}; }, contiguous,
     contiguous, contiguous},
    {"v_column_major_rows", contiguous, contiguous,
     [](const Shape &s) { return std::vector<int64_t>{s.H * s.Nk * s.dv, s.Nk * s.dv, 1, s.Nk}; }, contiguous},
    {"everything_strided", [](const Shape &s) { return bnhd(s, s.Nq, s.d, 2, 2); },
     [](const Shape &s) { return std::vector<int64_t>{0, s.Nk * s.d, s.d, 1}; },
     [](const Shape &s) { return bnhd(s, s.Nk, s.dv, 1, 1); }, [](const Shape &s) { return bnhd(s, s.Nq, s.dv, 2, 2); }},
};

Problem make_strided(const Shape &s, ta_dtype dt, const Layout &l, uint64_t seed) {
  Problem p;
  p.s = s;
  p.q = TestTensor(dt, {s.B, s.H, s.Nq, s.d}, l.q(s));
  p.k = TestTensor(dt, {s.B, s.H, s.Nk, s.d}, l.k(s));
  p.v = TestTensor(dt, {s.B, s.H, s.Nk, s.dv}, l.v(s));
  p.out = TestTensor(dt, {s.B, s.H, s.Nq, s.dv}, l.out(s));
  tatest::Rng rng(seed);
  p.q.fill_normal(rng, 0.8);
  p.k.fill_normal(rng, 0.8);
  p.v.fill_normal(rng, 1.0);
  return p;
}

// The same values in contiguous tensors.
Problem contiguous_copy(const Problem &p) {
  Problem c;
  c.s = p.s;
  c.q = TestTensor(p.q.dtype(), p.q.shape());
  c.k = TestTensor(p.k.dtype(), p.k.shape());
  c.v = TestTensor(p.v.dtype(), p.v.shape());
  c.out = TestTensor(p.out.dtype(), p.out.shape());
  c.q.set_dense(p.q.dense());
  c.k.set_dense(p.k.dense());
  c.v.set_dense(p.v.dense());
  return c;
}

class Strided : public ::testing::TestWithParam<std::tuple<Layout, ta_dtype>> {};

TEST_P(Strided, MatchesContiguousAndReference_B2_H3_Nq10_Nk12_d6_dv4) {
  const auto [l, dt] = GetParam();
  const Shape s{2, 3, 10, 12, 6, 4};
  auto p = make_strided(s, dt, l, 81);
  ta_config c = test_config(3, 2);
  c.block_size_q = 4;
  c.block_size_k = 5;
  const auto r = run_checked(p, c);  // also checks the canaries in out's gaps
  ASSERT_EQ(r.status, TA_OK) << r.message << " " << rname(r.stats.fallback_reason);
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, tatest::rel_tolerance(dt, ref)));
  auto cc = contiguous_copy(p);
  ASSERT_EQ(run_checked(cc, c).status, TA_OK);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), cc.out.dense(), dt == TA_DTYPE_F64 ? 1e-12 : tatest::rel_tolerance(dt, ref)));
  // The library's references read the same views.
  const ta_attention_args a = p.args();
  p.out.fill_bytes(0xA5);
  ASSERT_EQ(ta_reference_attention(&a, &c, TA_REFERENCE_TAYLOR_QUADRATIC), TA_OK) << ta_last_error_message();
  std::string where;
  EXPECT_TRUE(p.out.canaries_intact(0xA5, &where)) << where;
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, dt == TA_DTYPE_F64 ? 1e-12 : 2 * tatest::unit_roundoff(dt)));
}

INSTANTIATE_TEST_SUITE_P(Api, Strided,
                         ::testing::Combine(::testing::ValuesIn(kLayouts),
                                            ::testing::Values(TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16)),
                         [](const auto &info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  tatest::dtype_tag(std::get<1>(info.param));
                         });

// Fully broadcast q (all strides 0): every query row is the same, so is every output row.
TEST(StridedExtra, FullyBroadcastQuery_B2_H2_Nq9_Nk7_d4_dv4) {
  const Shape s{2, 2, 9, 7, 4, 4};
  Layout l{"q_zero", [](const Shape &) { return std::vector<int64_t>{0, 0, 0, 0}; }, contiguous, contiguous, contiguous};
  auto p = make_strided(s, TA_DTYPE_F64, l, 82);
  const ta_config c = test_config(3, 1);
  ASSERT_EQ(run_checked(p, c).status, TA_OK);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), tatest::reference_of(p, c, RefKind::Taylor).out, 1e-9));
  for (int64_t i = 1; i < s.Nq; ++i)
    for (int64_t e = 0; e < s.dv; ++e) EXPECT_EQ(p.out.get({1, 1, i, e}), p.out.get({1, 1, 0, e}));
}

// An out view inside a bigger buffer: elements written, the interleaved other view untouched.
TEST(StridedExtra, OutIsOneOfTwoInterleavedViews_B1_H2_Nq5_Nk6_d4_dv3) {
  const Shape s{1, 2, 5, 6, 4, 3};
  // [B,N,2H,dv] buffer; out uses heads 0..H-1 of every row, the rest is a neighbour's
  Layout l{"out_half", contiguous, contiguous, contiguous,
           [](const Shape &x) { return std::vector<int64_t>{x.Nq * 2 * x.H * x.dv, x.dv, 2 * x.H * x.dv, 1}; }};
  auto p = make_strided(s, TA_DTYPE_F32, l, 83);
  const ta_config c = test_config(3, 1);
  const auto r = run_checked(p, c);  // canaries cover the neighbour's bytes
  ASSERT_EQ(r.status, TA_OK);
  const auto ref = tatest::reference_of(p, c, RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, tatest::rel_tolerance(TA_DTYPE_F32, ref)));
}

}  // namespace
