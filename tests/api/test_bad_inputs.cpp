// Bad inputs on purpose: NULLs, wrong ranks and shapes, zero and negative extents, NULL
// data, overlapping or aliasing outputs, offsets overflowing 64 bits, absurd sizes, NaN /
// Inf / huge values. Always a status (and a message), never a crash, never a write outside
// out, never a non-finite output with TA_OK.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <string>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::make_problem;
using tatest::Problem;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::test_config;

const Shape kSmall{2, 2, 5, 6, 4, 3};  // B2_H2_Nq5_Nk6_d4_dv3

// Every entry point must reject `a` as an argument error with a message, and run must not
// touch out. memory_estimate is excluded where data pointers are the only problem.
// (estimate_too == false: only data pointers are wrong; the estimate and the workspace size
// may answer from shapes, the header leaves the workspace size open; if it answers, it
// must agree with the estimate.)
void expect_invalid(Problem &p, const ta_attention_args &a, const ta_config &c, bool estimate_too = true) {
  ta_reason r = TA_REASON_COUNT_;
  EXPECT_EQ(ta_attention_check(&a, &c, &r), TA_ERR_INVALID_ARGUMENT) << "check; reason " << rname(r);
  EXPECT_GT(std::strlen(ta_last_error_message()), 0u) << "check gave no message";
  size_t bytes = 0;
  const ta_status ws = ta_attention_workspace_size(&a, &c, &bytes);
  if (estimate_too) {
    EXPECT_EQ(ws, TA_ERR_INVALID_ARGUMENT) << "workspace_size";
    ta_memory_estimate est;
    EXPECT_EQ(ta_attention_memory_estimate(&a, &c, &est), TA_ERR_INVALID_ARGUMENT) << "memory_estimate";
  } else if (ws == TA_OK) {
    ta_memory_estimate est;
    ASSERT_EQ(ta_attention_memory_estimate(&a, &c, &est), TA_OK) << ta_last_error_message();
    EXPECT_EQ(static_cast<int64_t>(bytes), est.workspace_bytes);
  } else {
    EXPECT_EQ(ws, TA_ERR_INVALID_ARGUMENT) << "workspace_size";
  }
  p.out.fill_bytes(0xA5);
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT) << "run";
  EXPECT_GT(std::strlen(ta_last_error_message()), 0u) << "run gave no message";
  std::string where;
  EXPECT_TRUE(p.out.canaries_intact(0xA5, &where)) << where;
  EXPECT_EQ(ta_reference_attention(&a, &c, TA_REFERENCE_EXACT_ORIGINAL), TA_ERR_INVALID_ARGUMENT) << "reference";
  EXPECT_TRUE(p.out.canaries_intact(0xA5, &where)) << where;
}

TEST(BadInputs, NullPointers_B2_H2_Nq5_Nk6_d4_dv3) {
  auto p = make_problem(kSmall, TA_DTYPE_F32, 1);
  const ta_config c = test_config();
  const ta_attention_args good = p.args();
  ta_reason r;
  size_t bytes;
  ta_memory_estimate est;
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_check(nullptr, &c, &r), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_check(&good, nullptr, &r), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_workspace_size(nullptr, &c, &bytes), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_workspace_size(&good, nullptr, &bytes), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_workspace_size(&good, &c, nullptr), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_memory_estimate(nullptr, &c, &est), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_memory_estimate(&good, nullptr, &est), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_memory_estimate(&good, &c, nullptr), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_run(nullptr, &c, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_attention_run(&good, nullptr, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_reference_attention(nullptr, &c, TA_REFERENCE_EXACT_ORIGINAL), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_reference_attention(&good, nullptr, TA_REFERENCE_EXACT_ORIGINAL), TA_ERR_INVALID_ARGUMENT);
  for (int which = 0; which < 4; ++which) {
    SCOPED_TRACE("null tensor " + std::to_string(which));
    ta_attention_args a = good;
    (which == 0 ? a.q : which == 1 ? a.k : which == 2 ? a.v : a.out) = nullptr;
    expect_invalid(p, a, c);
  }
  // And the success after all these errors clears the message.
  EXPECT_EQ(ta_attention_check(&good, &c, &r), TA_OK);
  EXPECT_STREQ(ta_last_error_message(), "");
}

TEST(BadInputs, WrongRank_B2_H2_Nq5_Nk6_d4_dv3) {
  const ta_config c = test_config();
  for (int which = 0; which < 4; ++which) {
    for (int nd : {0, 1, 3, 5, -1}) {
      SCOPED_TRACE("tensor " + std::to_string(which) + " ndim " + std::to_string(nd));
      auto p = make_problem(kSmall, TA_DTYPE_F32, 1);
      tatest::TestTensor *t[] = {&p.q, &p.k, &p.v, &p.out};
      t[which]->desc().ndim = nd;
      expect_invalid(p, p.args(), c);
    }
  }
}

TEST(BadInputs, ShapeMismatches_B2_H2_Nq5_Nk6_d4_dv3) {
  const ta_config c = test_config();
  struct Case { const char *what; std::function<void(Problem &)> edit; };
  const Case cases[] = {
      {"k.B", [](Problem &p) { p.k.desc().shape[0] = 1; }},
      {"v.B", [](Problem &p) { p.v.desc().shape[0] = 1; }},
      {"k.H", [](Problem &p) { p.k.desc().shape[1] = 1; }},
      {"v.H", [](Problem &p) { p.v.desc().shape[1] = 1; }},
      {"k.d", [](Problem &p) { p.k.desc().shape[3] = 3; }},
      {"v.N", [](Problem &p) { p.v.desc().shape[2] = 5; }},
      {"out.B", [](Problem &p) { p.out.desc().shape[0] = 1; }},
      {"out.H", [](Problem &p) { p.out.desc().shape[1] = 1; }},
      {"out.N", [](Problem &p) { p.out.desc().shape[2] = 4; }},
      {"out.N_is_Nk", [](Problem &p) { p.out.desc().shape[2] = 6; }},
      {"out.dv", [](Problem &p) { p.out.desc().shape[3] = 2; }},
      {"out.dv_is_d", [](Problem &p) { p.out.desc().shape[3] = 4; }},
      {"out.dtype", [](Problem &p) { p.out.desc().dtype = TA_DTYPE_F64; }},
      {"out.dtype_f16", [](Problem &p) { p.out.desc().dtype = TA_DTYPE_F16; }},
  };
  for (const Case &cs : cases) {
    SCOPED_TRACE(cs.what);
    auto p = make_problem(kSmall, TA_DTYPE_F32, 1);
    cs.edit(p);
    expect_invalid(p, p.args(), c);
  }
}

TEST(BadInputs, ZeroSizeDimensions_B2_H2_Nq5_Nk6_d4_dv3) {
  const ta_config c = test_config();
  const char *names[] = {"B", "H", "Nq", "Nk", "d", "dv"};
  for (int dim = 0; dim < 6; ++dim) {
    SCOPED_TRACE(std::string("zero ") + names[dim]);
    auto p = make_problem(kSmall, TA_DTYPE_F32, 1);  // keeps real data pointers
    auto set = [](tatest::TestTensor &t, int i) { t.desc().shape[i] = 0; };
    switch (dim) {
      case 0: for (auto *t : {&p.q, &p.k, &p.v, &p.out}) set(*t, 0); break;
      case 1: for (auto *t : {&p.q, &p.k, &p.v, &p.out}) set(*t, 1); break;
      case 2: set(p.q, 2); set(p.out, 2); break;
      case 3: set(p.k, 2); set(p.v, 2); break;
      case 4: set(p.q, 3); set(p.k, 3); break;
      case 5: set(p.v, 3); set(p.out, 3); break;
    }
    expect_invalid(p, p.args(), c);
  }
}

TEST(BadInputs, NegativeExtent_B2_H2_Nq5_Nk6_d4_dv3) {
  const ta_config c = test_config();
  for (int dim = 0; dim < 4; ++dim) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    auto p = make_problem(kSmall, TA_DTYPE_F32, 1);
    for (auto *t : {&p.q, &p.k, &p.v, &p.out}) t->desc().shape[dim] = -t->desc().shape[dim];
    expect_invalid(p, p.args(), c);
  }
}

// NULL data with elements: an argument error for check / workspace / run; memory_estimate
// works from shapes alone.
TEST(BadInputs, NullData_B2_H2_Nq5_Nk6_d4_dv3) {
  const ta_config c = test_config();
  for (int which = 0; which < 4; ++which) {
    SCOPED_TRACE("null data " + std::to_string(which));
    auto p = make_problem(kSmall, TA_DTYPE_F32, 1);
    tatest::TestTensor *t[] = {&p.q, &p.k, &p.v, &p.out};
    t[which]->desc().data = nullptr;
    expect_invalid(p, p.args(), c, /*estimate_too=*/false);
    ta_memory_estimate est;
    const ta_attention_args a = p.args();
    EXPECT_EQ(ta_attention_memory_estimate(&a, &c, &est), TA_OK) << ta_last_error_message();
  }
}

TEST(BadInputs, NullMaskData_B2_H2_Nq5_Nk6_d4_dv3) {
  auto p = make_problem(kSmall, TA_DTYPE_F32, 1);
  tatest::TestTensor m(TA_DTYPE_BOOL, {kSmall.Nk});
  m.desc().data = nullptr;
  p.mask = std::move(m);
  expect_invalid(p, p.args(), test_config(), /*estimate_too=*/false);
}

// out strides that make two distinct elements share an address.
TEST(BadInputs, OverlappingOutStrides_B2_H2_Nq5_Nk6_d4_dv3) {
  const ta_config c = test_config();
  struct Case { const char *what; int64_t st[4]; };
  const Case cases[] = {
      {"all_zero", {0, 0, 0, 0}},
      {"dv_zero", {30, 15, 3, 0}},
      {"rows_overlap", {20, 10, 2, 1}},
      {"heads_alias", {15, 0, 3, 1}},
      {"batch_into_heads", {15, 15, 3, 1}},
      {"heads_overlap_rows", {30, 14, 3, 1}},
  };
  for (const Case &cs : cases) {
    SCOPED_TRACE(cs.what);
    auto p = make_problem(kSmall, TA_DTYPE_F32, 1);
    // A big enough backing buffer, so no address is out of range if something slips through.
    tatest::TestTensor back(TA_DTYPE_F32, {2 * 2 * 5 * 3 * 4});
    p.out = std::move(back);
    ta_tensor &o = p.out.desc();
    o.ndim = 4;
    const int64_t sh[4] = {2, 2, 5, 3};
    for (int i = 0; i < 4; ++i) { o.shape[i] = sh[i]; o.strides[i] = cs.st[i]; }
    expect_invalid(p, p.args(), c);
  }
}

// Unusual but non-overlapping out strides are accepted (and computed correctly).
TEST(BadInputs, NonOverlappingUnusualOutStridesAccepted_B1_H2_Nq3_Nk4_d2_dv2) {
  const Shape s{1, 2, 3, 4, 2, 2};
  const ta_config c = test_config();
  // offsets h + 2e + 4i: interleaved but disjoint; B extent 1 with stride 0 is no overlap.
  auto p = make_problem(s, TA_DTYPE_F64, 3);
  p.out = tatest::TestTensor(TA_DTYPE_F64, {1, 2, 3, 2}, {0, 1, 4, 2});
  const auto r = run_checked(p, c);
  ASSERT_EQ(r.status, TA_OK) << r.message;
  const auto ref = tatest::reference_of(p, c, tatest::RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, 1e-9));
}

// out sharing memory with q, k or v.
TEST(BadInputs, OutOverlapsInputs_B1_H2_Nq6_Nk6_d4_dv4) {
  const Shape s{1, 2, 6, 6, 4, 4};
  const ta_config c = test_config();
  for (int which = 0; which < 3; ++which) {
    for (int shift : {0, 5, -5}) {
      SCOPED_TRACE("input " + std::to_string(which) + " shift " + std::to_string(shift));
      auto p = make_problem(s, TA_DTYPE_F64, 1);
      tatest::TestTensor *in[] = {&p.q, &p.k, &p.v};
      ta_tensor &o = p.out.desc();
      o.data = static_cast<double *>(in[which]->desc().data) + shift;
      const auto snap = in[which]->snapshot();
      const ta_attention_args a = p.args();
      ta_reason r;
      EXPECT_EQ(ta_attention_check(&a, &c, &r), TA_ERR_INVALID_ARGUMENT);
      ta_stats st;
      ta_stats_init(&st);
      EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT);
      EXPECT_TRUE(in[which]->same_bytes(snap)) << "input overwritten";
      EXPECT_EQ(ta_reference_attention(&a, &c, TA_REFERENCE_EXACT_MODIFIED), TA_ERR_INVALID_ARGUMENT);
      EXPECT_TRUE(in[which]->same_bytes(snap)) << "input overwritten by the reference";
    }
  }
}

// q, k and v may alias each other (self-attention on one tensor): inputs are read-only.
TEST(BadInputs, InputsMayAlias_B2_H2_Nq7_Nk7_d4_dv4) {
  const Shape s{2, 2, 7, 7, 4, 4};
  auto p = make_problem(s, TA_DTYPE_F64, 9);
  const ta_config c = test_config();
  ta_attention_args a = p.args();
  a.k = p.q.ptr();
  a.v = p.q.ptr();
  ta_stats st;
  ta_stats_init(&st);
  p.out.fill_bytes(0xA5);
  ASSERT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  EXPECT_TRUE(p.out.canaries_intact(0xA5));
  const auto q = p.q.dense();
  tatest::RefInput in;
  in.B = s.B; in.H = s.H; in.Nq = s.Nq; in.Nk = s.Nk; in.d = s.d; in.dv = s.dv;
  in.q = in.k = in.v = q.data();
  const auto ref = tatest::reference_attention(in, tatest::params_of(c), tatest::RefKind::Taylor);
  EXPECT_TRUE(tatest::close_rel_l2(p.out.dense(), ref.out, 1e-9));
}

// Offsets beyond 64 bits must be refused before any data is touched (the data pointers
// point at a tiny real buffer, so a library that reads first would crash). In each case
// the shapes are otherwise consistent, so the overflow is the only fault.
TEST(BadInputs, OffsetsOverflow64Bit) {
  const ta_config c = test_config();
  struct Spec { int64_t shape[4]; int64_t strides[4]; };
  struct Case { const char *what; Spec q, k, v, out; };
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const Case cases[] = {
      {"q_elements_2pow70",
       {{1, 1, 1LL << 40, 1LL << 30}, {0, 0, 1LL << 30, 1}},
       {{1, 1, 2, 1LL << 30}, {0, 0, 0, 0}},
       {{1, 1, 2, 3}, {0, 0, 3, 1}},
       {{1, 1, 1LL << 40, 3}, {0, 0, 3, 1}}},
      {"k_bytes_2pow64",
       {{1, 1, 5, 4}, {0, 0, 4, 1}},
       {{1, 1, 2, 4}, {0, 0, 1LL << 61, 1}},
       {{1, 1, 2, 3}, {0, 0, 3, 1}},
       {{1, 1, 5, 3}, {0, 0, 3, 1}}},
      {"v_stride_times_extent",
       {{1, 1, 5, 4}, {0, 0, 4, 1}},
       {{1, 1, 6, 4}, {0, 0, 4, 1}},
       {{1, 1, 6, 3}, {0, 0, kMax / 4, 1}},
       {{1, 1, 5, 3}, {0, 0, 3, 1}}},
      {"out_bytes_2pow64",
       {{1, 1, 5, 4}, {0, 0, 4, 1}},
       {{1, 1, 2, 4}, {0, 0, 4, 1}},
       {{1, 1, 2, 3}, {0, 0, 3, 1}},
       {{1, 1, 5, 3}, {0, 0, 1LL << 61, 1}}},
      {"q_sum_of_terms_2pow63",  // each term fits, their sum does not
       {{1, 1, 2, 2}, {0, 0, 1LL << 62, 1LL << 62}},
       {{1, 1, 2, 2}, {0, 0, 2, 1}},
       {{1, 1, 2, 3}, {0, 0, 3, 1}},
       {{1, 1, 2, 3}, {0, 0, 3, 1}}},
  };
  for (const Case &cs : cases) {
    SCOPED_TRACE(cs.what);
    auto p = make_problem(Shape{1, 1, 5, 6, 4, 3}, TA_DTYPE_F64, 1);
    tatest::TestTensor *t[] = {&p.q, &p.k, &p.v, &p.out};
    const Spec *sp[] = {&cs.q, &cs.k, &cs.v, &cs.out};
    for (int w = 0; w < 4; ++w) {
      ta_tensor &d = t[w]->desc();
      for (int i = 0; i < 4; ++i) { d.shape[i] = sp[w]->shape[i]; d.strides[i] = sp[w]->strides[i]; }
    }
    expect_invalid(p, p.args(), c);
  }
}

// Absurd sizes with NULL data: an error, at once, with nothing allocated.
TEST(BadInputs, AbsurdSizeNullData_B1_H1_Nq2pow40_Nk2pow40_d64_dv64) {
  const int64_t N = 1LL << 40;
  ta_tensor q{}, k{}, v{}, out{};
  const int64_t shape[4] = {1, 1, N, 64};
  ASSERT_EQ(ta_tensor_init_contiguous(&q, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, shape), TA_OK);
  k = v = out = q;
  const ta_attention_args a{&q, &k, &v, nullptr, &out};
  ta_config c = test_config(3, 4);
  ta_reason r;
  EXPECT_EQ(ta_attention_check(&a, &c, &r), TA_ERR_INVALID_ARGUMENT);
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_reference_attention(&a, &c, TA_REFERENCE_EXACT_ORIGINAL), TA_ERR_INVALID_ARGUMENT);
  // Shapes alone are fine for the estimate, which must be consistent and not allocate.
  ta_memory_estimate est;
  std::memset(&est, 0, sizeof est);
  if (ta_attention_memory_estimate(&a, &c, &est) == TA_OK) {
    EXPECT_EQ(est.output_bytes, N * 64 * 4);
    EXPECT_EQ(est.total_bytes, est.workspace_bytes + est.output_bytes);
    EXPECT_EQ(est.feature_dim, 153);  // R(16, 3)
    EXPECT_GE(est.state_bytes, 0);
  } else {
    EXPECT_GT(std::strlen(ta_last_error_message()), 0u);
  }
}

TEST(BadInputs, UnknownDtypeNoCrash_B1_H1_Nq4_Nk4_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F32, 1);
  for (auto *t : {&p.q, &p.k, &p.v, &p.out}) t->desc().dtype = static_cast<ta_dtype>(42);
  const ta_attention_args a = p.args();
  const ta_config c = test_config();
  ta_reason r = TA_REASON_COUNT_;
  const ta_status st = ta_attention_check(&a, &c, &r);
  EXPECT_TRUE(st == TA_ERR_INVALID_ARGUMENT || (st == TA_OK && r == TA_REASON_UNSUPPORTED_DTYPE))
      << ta_status_string(st) << " " << rname(r);
  ta_stats stats;
  ta_stats_init(&stats);
  p.out.fill_bytes(0xA5);
  const ta_status rs = ta_attention_run(&a, &c, nullptr, 0, nullptr, &stats);
  EXPECT_TRUE(rs == TA_ERR_INVALID_ARGUMENT ||
              (rs == TA_FALLBACK && stats.fallback_reason == TA_REASON_UNSUPPORTED_DTYPE));
  EXPECT_TRUE(p.out.canaries_intact(0xA5));
}

// ---- Non-finite inputs: a named run-time fallback, never NaN output with TA_OK. ----
struct NonFiniteCase {
  const char *name;
  int which;     // 0 q, 1 k, 2 v
  double value;  // NaN, +inf or -inf
  ta_reason want;
};

void PrintTo(const NonFiniteCase &c, std::ostream *os) { *os << c.name; }

class NonFiniteInputs : public ::testing::TestWithParam<std::tuple<NonFiniteCase, ta_dtype, int>> {};

TEST_P(NonFiniteInputs, NamedFallback_B2_H2_Nq9_Nk11_d8_dv6) {
  const auto [cs, dt, probe] = GetParam();
  const Shape s{2, 2, 9, 11, 8, 6};
  auto p = make_problem(s, dt, 17);
  tatest::TestTensor *t[] = {&p.q, &p.k, &p.v};
  // one poisoned element in batch 1, head 0, row 3
  t[cs.which]->set({1, 0, 3, 1}, cs.value);
  ta_config c = test_config(3, 2);
  c.early_probe = probe;
  c.probe_samples = 64;  // covers every query: the probe sees the bad one
  const auto r = run_checked(p, c);
  EXPECT_EQ(r.status, TA_FALLBACK);
  EXPECT_EQ(r.stats.fallback_reason, cs.want) << "got " << rname(r.stats.fallback_reason);
  c.fallback_on_negative = 0;  // clamping does not make NaN or Inf acceptable
  const auto r2 = run_checked(p, c);
  EXPECT_EQ(r2.status, TA_FALLBACK);
  EXPECT_EQ(r2.stats.fallback_reason, cs.want) << "got " << rname(r2.stats.fallback_reason);
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

INSTANTIATE_TEST_SUITE_P(
    Api, NonFiniteInputs,
    ::testing::Combine(::testing::Values(NonFiniteCase{"qNaN", 0, kNaN, TA_REASON_DENOMINATOR_INVALID},
                                         NonFiniteCase{"qInf", 0, kInf, TA_REASON_DENOMINATOR_INVALID},
                                         NonFiniteCase{"kNaN", 1, kNaN, TA_REASON_DENOMINATOR_INVALID},
                                         NonFiniteCase{"kNegInf", 1, -kInf, TA_REASON_DENOMINATOR_INVALID},
                                         NonFiniteCase{"vNaN", 2, kNaN, TA_REASON_NON_FINITE_OUTPUT},
                                         NonFiniteCase{"vInf", 2, kInf, TA_REASON_NON_FINITE_OUTPUT}),
                       ::testing::Values(TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16),
                       ::testing::Values(0, 1)),
    [](const auto &info) {
      return std::string(std::get<0>(info.param).name) + "_" + tatest::dtype_tag(std::get<1>(info.param)) +
             (std::get<2>(info.param) ? "_probe" : "_noprobe");
    });

// Huge but finite inputs: whatever happens (overflow in features), TA_OK only with a
// finite output (run_checked asserts that), otherwise a named run-time reason.
TEST(BadInputs, HugeFiniteInputs_B1_H2_Nq16_Nk16_d8_dv8) {
  for (ta_dtype dt : {TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16, TA_DTYPE_F64}) {
    for (double mag : {1e4, 1e15, 1e30, 1e100}) {
      SCOPED_TRACE(std::string(tatest::dtype_tag(dt)) + " magnitude " + std::to_string(mag));
      auto p = make_problem(Shape{1, 2, 16, 16, 8, 8}, dt, 4, 1.0);
      tatest::Rng rng(99);
      for (auto *t : {&p.q, &p.k, &p.v})
        t->for_each([&](const std::array<int64_t, 4> &, int64_t off) { t->set_at(off, rng.normal() * mag); });
      for (int P : {3, 4}) {
        ta_config c = test_config(P, 1);
        const auto r = run_checked(p, c);
        if (r.status != TA_OK) {
          EXPECT_EQ(r.status, TA_FALLBACK);
          EXPECT_TRUE(tatest::is_runtime_reason(r.stats.fallback_reason)) << rname(r.stats.fallback_reason);
        }
      }
    }
  }
}

}  // namespace
