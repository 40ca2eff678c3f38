// Failure injection on the CPU (issue 5): too-small and mismatched workspaces, a plan that
// cannot be addressed, failures that must not poison the next call, and non-finite inputs
// placed where the engine's early checks do not look. Extends tests/api (test_stats.cpp:
// one too-small workspace case; test_bad_inputs.cpp: one poisoned element per tensor).
// The allocation failure itself is in test_allocation_failure.cpp (its own executable).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/ta_api_helpers.h"
#include "hardening/hardening_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tahard::ExactBuffer;
using tatest::make_problem;
using tatest::Problem;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::TestTensor;
using tatest::test_config;

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

bool all_bytes_are(const TestTensor &t, uint8_t b) {
  for (uint8_t x : t.element_bytes())
    if (x != b) return false;
  return true;
}

// ---- Workspaces ----

// Every dtype (f64 accumulates in doubles, the rest in floats) and several G: a workspace
// one byte short is refused with workspace_too_small / out_of_memory before anything is
// written; the exact size works from an exact-size heap block (ASan sees any overrun),
// also when the pointer is not 256-byte aligned (the plan carries the slack for that).
TEST(FailureInjection, WorkspaceBoundaryEveryDtype_B2_H2_Nq11_Nk9_d12_dv6) {
  const Shape s{2, 2, 11, 9, 12, 6};
  for (ta_dtype dt : {TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16}) {
    for (int G : {1, 2, 3}) {
      SCOPED_TRACE(std::string(tatest::dtype_tag(dt)) + " G=" + std::to_string(G));
      auto p = make_problem(s, dt, 31);
      ta_config c = test_config(4, G);
      c.num_threads = 2;
      const ta_attention_args a = p.args();
      size_t ws = 0;
      ASSERT_EQ(ta_attention_workspace_size(&a, &c, &ws), TA_OK) << ta_last_error_message();
      ASSERT_GT(ws, 256u);
      ASSERT_EQ(run_checked(p, c).status, TA_OK);
      const auto want = p.out.element_bytes();

      for (size_t misalign : {size_t{0}, size_t{8}, size_t{100}, size_t{255}}) {
        ExactBuffer exact(ws, misalign);
        const auto r = run_checked(p, c, exact.data(), exact.size());
        ASSERT_EQ(r.status, TA_OK) << "misalign " << misalign << ": " << r.message;
        EXPECT_EQ(p.out.element_bytes(), want) << "misalign " << misalign;
      }
      for (size_t small : {ws - 1, ws - 255, ws - 256, size_t{1}}) {
        ExactBuffer buf(small);
        ta_stats st;
        ta_stats_init(&st);
        p.out.fill_bytes(0xA5);
        EXPECT_EQ(ta_attention_run(&a, &c, buf.data(), small, nullptr, &st), TA_ERR_WORKSPACE_TOO_SMALL)
            << "workspace " << small << " of " << ws;
        EXPECT_EQ(st.fallback_reason, TA_REASON_OUT_OF_MEMORY) << rname(st.fallback_reason);
        EXPECT_EQ(st.backend, TA_BACKEND_NONE);
        EXPECT_NE(std::string(ta_last_error_message()).find(std::to_string(ws)), std::string::npos)
            << "message should quote the size needed: " << ta_last_error_message();
        EXPECT_TRUE(all_bytes_are(p.out, 0xA5)) << "out written by a refused call";
      }
    }
  }
}

// A workspace sized for one call and reused for a call that needs more (more worker
// threads, a wider accumulator, a larger P) is refused, never overrun.
TEST(FailureInjection, WorkspaceSizedForAnotherCall_B2_H3_Nq12_Nk12_d8_dv8) {
  const Shape s{2, 3, 12, 12, 8, 8};
  auto p32 = make_problem(s, TA_DTYPE_F32, 32);
  auto p64 = make_problem(s, TA_DTYPE_F64, 32);
  ta_config one = test_config(3, 1);
  one.num_threads = 1;
  one.block_size_q = 4;
  one.block_size_k = 4;
  size_t ws1 = 0;
  const ta_attention_args a32 = p32.args(), a64 = p64.args();
  ASSERT_EQ(ta_attention_workspace_size(&a32, &one, &ws1), TA_OK);
  ExactBuffer buf(ws1);

  struct Variant {
    const char *what;
    const ta_attention_args *a;
    ta_config c;
  };
  ta_config four = one;
  four.num_threads = 4;
  ta_config p5 = one;
  p5.P = 5;
  ta_config bigger_blocks = one;
  bigger_blocks.block_size_q = 12;
  bigger_blocks.block_size_k = 12;
  for (const Variant &v : {Variant{"4 threads", &a32, four}, Variant{"f64 accumulator", &a64, one},
                           Variant{"P=5", &a32, p5}, Variant{"bigger blocks", &a32, bigger_blocks}}) {
    SCOPED_TRACE(v.what);
    size_t need = 0;
    ASSERT_EQ(ta_attention_workspace_size(v.a, &v.c, &need), TA_OK);
    ASSERT_GT(need, ws1) << "the variant must need more than the first call";
    ta_stats st;
    ta_stats_init(&st);
    EXPECT_EQ(ta_attention_run(v.a, &v.c, buf.data(), buf.size(), nullptr, &st), TA_ERR_WORKSPACE_TOO_SMALL);
    EXPECT_EQ(st.fallback_reason, TA_REASON_OUT_OF_MEMORY);
  }
  // And the original call still runs in it.
  EXPECT_EQ(ta_attention_run(&a32, &one, buf.data(), buf.size(), nullptr, nullptr), TA_OK) << ta_last_error_message();
}

// workspace == NULL means "library allocates" whatever workspace_bytes says.
TEST(FailureInjection, NullWorkspaceIgnoresWorkspaceBytes_B1_H2_Nq8_Nk8_d4_dv4) {
  auto p = make_problem(Shape{1, 2, 8, 8, 4, 4}, TA_DTYPE_F32, 33);
  const ta_config c = test_config();
  ASSERT_EQ(run_checked(p, c).status, TA_OK);
  const auto want = p.out.element_bytes();
  for (size_t bytes : {size_t{1}, size_t{1} << 40, std::numeric_limits<size_t>::max()}) {
    const auto r = run_checked(p, c, nullptr, bytes);
    EXPECT_EQ(r.status, TA_OK) << bytes << ": " << r.message;
    EXPECT_EQ(p.out.element_bytes(), want);
  }
}

// ---- A plan that cannot be addressed ----

// R(96, 16) = 1.36e18 fits int64 and passes a max_feature_dim_R of INT64_MAX, but the
// workspace would exceed the engine's byte limit: every entry point that plans memory
// says out_of_memory (with a message), run writes nothing, and nothing is allocated.
TEST(FailureInjection, PlanBeyondAddressableMemory_B1_H1_Nq2_Nk2_d96_dv1_P16) {
  auto p = make_problem(Shape{1, 1, 2, 2, 96, 1}, TA_DTYPE_F32, 34);
  ta_config c = test_config(16, 1);
  c.max_feature_dim_R = std::numeric_limits<int64_t>::max();
  const ta_attention_args a = p.args();
  int64_t R = 0;
  ASSERT_EQ(ta_feature_dim(96, 16, &R), TA_OK);
  EXPECT_EQ(R, 1359472297966470765LL);
  ta_reason reason = TA_REASON_COUNT_;
  ASSERT_EQ(ta_attention_check(&a, &c, &reason), TA_OK);
  EXPECT_EQ(reason, TA_REASON_NONE) << "no guard declines: only memory does";
  size_t ws = 123;
  EXPECT_EQ(ta_attention_workspace_size(&a, &c, &ws), TA_ERR_OUT_OF_MEMORY);
  EXPECT_GT(std::strlen(ta_last_error_message()), 0u);
  ta_memory_estimate est;
  EXPECT_EQ(ta_attention_memory_estimate(&a, &c, &est), TA_ERR_OUT_OF_MEMORY);
  for (bool caller_ws : {false, true}) {
    SCOPED_TRACE(caller_ws ? "caller workspace" : "library workspace");
    ExactBuffer buf(4096);
    ta_stats st;
    ta_stats_init(&st);
    p.out.fill_bytes(0xA5);
    EXPECT_EQ(ta_attention_run(&a, &c, caller_ws ? buf.data() : nullptr, caller_ws ? buf.size() : 0, nullptr, &st),
              TA_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(st.fallback_reason, TA_REASON_OUT_OF_MEMORY) << rname(st.fallback_reason);
    EXPECT_EQ(st.backend, TA_BACKEND_NONE);
    EXPECT_GT(std::strlen(ta_last_error_message()), 0u);
    EXPECT_TRUE(all_bytes_are(p.out, 0xA5));
  }
}

// ---- Failures do not poison the next call ----

// Alternates every kind of failure with one good call on the same thread: the good call
// always returns TA_OK, the same bits, an empty message and clean stats.
TEST(FailureInjection, FailuresDoNotPoisonTheNextCall_B2_H2_Nq10_Nk9_d8_dv4) {
  auto good = make_problem(Shape{2, 2, 10, 9, 8, 4}, TA_DTYPE_F32, 35);
  const ta_config gc = test_config(3, 2);
  ASSERT_EQ(run_checked(good, gc).status, TA_OK);
  const auto want = good.out.element_bytes();

  auto nan_k = make_problem(Shape{2, 2, 10, 9, 8, 4}, TA_DTYPE_F32, 36);
  nan_k.k.set({1, 1, 4, 2}, kNaN);
  auto big = make_problem(Shape{1, 1, 2, 2, 96, 1}, TA_DTYPE_F32, 37);
  ta_config big_c = test_config(16, 1);
  big_c.max_feature_dim_R = std::numeric_limits<int64_t>::max();
  ta_config bad_c = gc;
  bad_c.eps = -1;
  ta_config off = gc;
  off.enabled = 0;
  size_t ws = 0;
  const ta_attention_args ga = good.args();
  ASSERT_EQ(ta_attention_workspace_size(&ga, &gc, &ws), TA_OK);
  ExactBuffer small(ws / 2);

  struct Failure {
    const char *what;
    ta_status want;
    std::function<ta_status()> call;
  };
  const ta_attention_args na = nan_k.args(), ba = big.args();
  const std::vector<Failure> failures = {
      {"invalid config", TA_ERR_INVALID_ARGUMENT, [&] { return ta_attention_run(&ga, &bad_c, nullptr, 0, nullptr, nullptr); }},
      {"null args", TA_ERR_INVALID_ARGUMENT, [&] { return ta_attention_run(nullptr, &gc, nullptr, 0, nullptr, nullptr); }},
      {"guard fallback", TA_FALLBACK, [&] { return ta_attention_run(&ga, &off, nullptr, 0, nullptr, nullptr); }},
      {"run-time fallback", TA_FALLBACK, [&] { return ta_attention_run(&na, &gc, nullptr, 0, nullptr, nullptr); }},
      {"workspace too small", TA_ERR_WORKSPACE_TOO_SMALL,
       [&] { return ta_attention_run(&ga, &gc, small.data(), small.size(), nullptr, nullptr); }},
      {"plan out of memory", TA_ERR_OUT_OF_MEMORY, [&] { return ta_attention_run(&ba, &big_c, nullptr, 0, nullptr, nullptr); }},
  };
  for (int rep = 0; rep < 3; ++rep) {
    for (const Failure &f : failures) {
      SCOPED_TRACE(std::string(f.what) + " rep " + std::to_string(rep));
      EXPECT_EQ(f.call(), f.want);
      const auto r = run_checked(good, gc);
      EXPECT_EQ(r.status, TA_OK) << r.message;
      EXPECT_EQ(r.message, "");
      EXPECT_EQ(r.stats.fallback_reason, TA_REASON_NONE);
      EXPECT_EQ(good.out.element_bytes(), want);
    }
  }
}

// ---- Non-finite inputs the probe cannot see ----

// The probe samples one query; the poisoned query is another one, so the query pass must
// catch it. Every dtype, NaN and both infinities, each tensor.
TEST(FailureInjection, NonFiniteInUnsampledQueryCaughtByQueryPass_B1_H2_Nq24_Nk10_d8_dv4) {
  const Shape s{1, 2, 24, 10, 8, 4};
  for (ta_dtype dt : {TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16}) {
    for (double bad : {kNaN, kInf, -kInf}) {
      SCOPED_TRACE(std::string(tatest::dtype_tag(dt)) + " value " + std::to_string(bad));
      auto clean = make_problem(s, dt, 38);
      ta_config c = test_config(3, 2);
      c.probe_samples = 1;
      const auto rc = run_checked(clean, c);
      ASSERT_EQ(rc.status, TA_OK);
      ASSERT_EQ(rc.stats.probe_samples, 1);
      // At most one of three rows is the sampled one; the others reach the query pass
      // (which then has counted denominators: the probe alone counts none).
      int caught_by_query_pass = 0;
      for (int64_t row : {0, 7, 23}) {
        auto p = make_problem(s, dt, 38);
        p.q.set({0, 1, row, 5}, bad);
        const auto r = run_checked(p, c);
        EXPECT_EQ(r.status, TA_FALLBACK) << "row " << row;
        EXPECT_EQ(r.stats.fallback_reason, TA_REASON_DENOMINATOR_INVALID)
            << "row " << row << ": " << rname(r.stats.fallback_reason);
        caught_by_query_pass += r.stats.denom_count > 0;
      }
      EXPECT_GE(caught_by_query_pass, 2);
    }
  }
}

// A non-finite value in a key the mask blocks is never read: the call succeeds with the
// bits of the same call with a finite value there. In an attended key it falls back.
TEST(FailureInjection, NonFiniteInMaskedKeyIsNeverRead_B2_H2_Nq7_Nk12_d6_dv5) {
  const Shape s{2, 2, 7, 12, 6, 5};
  for (ta_dtype dt : {TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16}) {
    for (double bad : {kNaN, kInf}) {
      SCOPED_TRACE(std::string(tatest::dtype_tag(dt)) + " value " + std::to_string(bad));
      auto p = make_problem(s, dt, 39);
      tahard::add_bool_key_mask(&p, 4);  // blocks key j of batch b when (j + b) % 4 == 0
      ta_config c = test_config(3, 1);
      c.quality_check = 1;
      ASSERT_EQ(run_checked(p, c).status, TA_OK);
      const auto want = p.out.element_bytes();
      // Key 4 of batch 0 is blocked, key 5 of batch 0 is attended.
      ASSERT_EQ(p.keep[4], 0);
      ASSERT_EQ(p.keep[5], 1);
      for (auto *t : {&p.k, &p.v}) t->set({0, 1, 4, 2}, bad);
      const auto r = run_checked(p, c);
      EXPECT_EQ(r.status, TA_OK) << r.message;
      EXPECT_EQ(p.out.element_bytes(), want) << "a blocked key changed the output";
      EXPECT_TRUE(std::isfinite(r.stats.quality_vs_original.rel_l2)) << "quality check read a blocked key";
      p.k.set({0, 1, 5, 2}, bad);
      const auto r2 = run_checked(p, c);
      EXPECT_EQ(r2.status, TA_FALLBACK);
      EXPECT_EQ(r2.stats.fallback_reason, TA_REASON_DENOMINATOR_INVALID) << rname(r2.stats.fallback_reason);
    }
  }
}

// Clamping a negative denominator at eps (fallback_on_negative = 0) gives a finite but
// enormous quotient; in f16 it overflows when stored: non_finite_output, not Inf with OK.
// In f32 the same quotient fits: TA_OK with a finite output.
TEST(FailureInjection, ClampedQuotientOverflowingF16IsNamed_B1_H1_Nq2_Nk3_d4_dv2_P2) {
  const Shape s{1, 1, 2, 3, 4, 2};
  for (ta_dtype dt : {TA_DTYPE_F16, TA_DTYPE_F32}) {
    SCOPED_TRACE(tatest::dtype_tag(dt));
    auto p = make_problem(s, dt, 40);
    // q = -k: scores -s*|k|^2 far below -1, so T_2 = 1 + score < 0 for every key.
    p.q.for_each([&](const std::array<int64_t, 4> &i, int64_t off) { p.q.set_at(off, i[3] % 2 ? -3.0 : -2.0); });
    p.k.for_each([&](const std::array<int64_t, 4> &i, int64_t off) { p.k.set_at(off, i[3] % 2 ? 3.0 : 2.0); });
    p.v.for_each([&](const std::array<int64_t, 4> &, int64_t off) { p.v.set_at(off, 1.0); });
    ta_config c = test_config(2, 1);
    c.fallback_on_negative = 0;
    c.early_probe = 0;
    const auto r = run_checked(p, c);
    if (dt == TA_DTYPE_F16) {
      EXPECT_EQ(r.status, TA_FALLBACK);
      EXPECT_EQ(r.stats.fallback_reason, TA_REASON_NON_FINITE_OUTPUT) << rname(r.stats.fallback_reason);
    } else {
      EXPECT_EQ(r.status, TA_OK) << rname(r.stats.fallback_reason);  // run_checked: output finite
      EXPECT_GT(r.stats.denom_le_eps, 0);
    }
    c.fallback_on_negative = 1;
    const auto r2 = run_checked(p, c);
    EXPECT_EQ(r2.status, TA_FALLBACK);
    EXPECT_EQ(r2.stats.fallback_reason, TA_REASON_DENOMINATOR_TOO_SMALL) << rname(r2.stats.fallback_reason);
  }
}

// Randomised poisoning: random shapes, dtypes, configs and up to three non-finite or
// extreme values in q, k or v. run_checked enforces the invariants (TA_OK => every output
// element finite, nothing written outside out, inputs untouched, check agrees with run);
// on top, for P >= 2 a non-finite value stored in an attended element must end in a named
// run-time fallback (the function depends on every q, k and v element then).
TEST(FailureInjection, RandomPoisoningNeverGivesNonFiniteOk) {
  tatest::Rng rng(2024);
  const ta_dtype dts[] = {TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16};
  const double values[] = {kNaN, kInf, -kInf, 1e300, -1e300, 7e4, 3e38, 1e-310, -0.0};
  int fallbacks = 0, oks = 0;
  for (int trial = 0; trial < 150; ++trial) {
    const ta_dtype dt = dts[rng.next() % 4];
    const int G = 1 + static_cast<int>(rng.next() % 2);
    const Shape s{1 + static_cast<int64_t>(rng.next() % 2), 1 + static_cast<int64_t>(rng.next() % 2),
                  1 + static_cast<int64_t>(rng.next() % 9), 1 + static_cast<int64_t>(rng.next() % 9),
                  G * (1 + static_cast<int64_t>(rng.next() % 4)), G * (1 + static_cast<int64_t>(rng.next() % 3))};
    auto p = make_problem(s, dt, 1000 + static_cast<uint64_t>(trial));
    ta_config c = test_config(1 + static_cast<int>(rng.next() % 5), G);
    c.early_probe = static_cast<int32_t>(rng.next() % 2);
    c.probe_samples = static_cast<int32_t>(rng.next() % 4);
    c.fallback_on_negative = static_cast<int32_t>(rng.next() % 2);
    c.qk_normalize = static_cast<int32_t>(rng.next() % 2);
    c.quality_check = static_cast<int32_t>(rng.next() % 2);
    bool attended_non_finite = false;
    const int n_bad = 1 + static_cast<int>(rng.next() % 3);
    std::string what;
    for (int b = 0; b < n_bad; ++b) {
      TestTensor *t = (rng.next() % 3 == 0) ? &p.q : (rng.next() % 2 ? &p.k : &p.v);
      const auto &sh = t->shape();
      const std::array<int64_t, 4> idx{static_cast<int64_t>(rng.next() % sh[0]), static_cast<int64_t>(rng.next() % sh[1]),
                                       static_cast<int64_t>(rng.next() % sh[2]), static_cast<int64_t>(rng.next() % sh[3])};
      const double v = values[rng.next() % (sizeof values / sizeof values[0])];
      t->set(idx, v);
      what += std::string(t == &p.q ? "q" : t == &p.k ? "k" : "v") + "=" + std::to_string(v) + " ";
      attended_non_finite = attended_non_finite || !std::isfinite(t->get(idx));
    }
    SCOPED_TRACE("trial " + std::to_string(trial) + " " + tatest::dtype_tag(dt) + " " + s.name() + " P=" +
                 std::to_string(c.P) + " " + what);
    const auto r = run_checked(p, c);
    if (r.status == TA_OK) {
      ++oks;
      EXPECT_FALSE(attended_non_finite && c.P >= 2) << "non-finite input gave TA_OK";
    } else {
      ++fallbacks;
      ASSERT_EQ(r.status, TA_FALLBACK) << r.message;
      EXPECT_TRUE(tatest::is_runtime_reason(r.stats.fallback_reason)) << rname(r.stats.fallback_reason);
    }
  }
  // The sweep must see both outcomes, or it tests less than it claims.
  EXPECT_GT(fallbacks, 20);
  EXPECT_GT(oks, 5);
}

}  // namespace
