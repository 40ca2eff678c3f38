// Determinism (same inputs -> same bits, any num_threads) and thread safety: concurrent
// calls on shared read-only inputs and on private inputs give the serial bits, and the
// last-error message is per thread.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <string>
#include <thread>
#include <vector>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::make_problem;
using tatest::Problem;
using tatest::run_checked;
using tatest::Shape;
using tatest::TestTensor;
using tatest::test_config;

TEST(Determinism, RepeatedCallsBitIdentical_B2_H2_Nq45_Nk38_d16_dv8) {
  for (ta_dtype dt : {TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16}) {
    SCOPED_TRACE(tatest::dtype_tag(dt));
    auto p = make_problem(Shape{2, 2, 45, 38, 16, 8}, dt, 101, 0.6);
    ta_config c = test_config(4, 2);
    c.quality_check = 1;
    ASSERT_EQ(run_checked(p, c).status, TA_OK);
    const auto first = p.out.element_bytes();
    for (int rep = 0; rep < 3; ++rep)
      for (int nt : {0, 1, 2}) {
        c.num_threads = nt;
        const auto r = run_checked(p, c);
        ASSERT_EQ(r.status, TA_OK);
        EXPECT_EQ(p.out.element_bytes(), first) << "rep " << rep << " num_threads " << nt;
      }
  }
}

// Runs `a` with its own stats; returns status.
ta_status run_args(const ta_attention_args &a, const ta_config &c, ta_stats *st) {
  ta_stats_init(st);
  return ta_attention_run(&a, &c, nullptr, 0, nullptr, st);
}

TEST(ThreadSafety, ConcurrentRunsGiveSerialBits_B1_H2_Nq33_Nk27_d8_dv8) {
  const Shape s{1, 2, 33, 27, 8, 8};
  constexpr int kThreads = 8;
  constexpr int kIters = 6;
  const ta_config c_base = test_config(3, 2);

  // Shared read-only inputs, and private inputs per thread.
  auto shared = make_problem(s, TA_DTYPE_F32, 7);
  std::vector<Problem> priv;
  for (int t = 0; t < kThreads; ++t) priv.push_back(make_problem(s, TA_DTYPE_F32, 200 + t));

  // Serial results.
  ASSERT_EQ(run_checked(shared, c_base).status, TA_OK);
  const auto shared_bits = shared.out.element_bytes();
  std::vector<std::vector<uint8_t>> priv_bits;
  for (auto &p : priv) {
    ASSERT_EQ(run_checked(p, c_base).status, TA_OK);
    priv_bits.push_back(p.out.element_bytes());
  }
  const auto shared_q = shared.q.snapshot(), shared_k = shared.k.snapshot(), shared_v = shared.v.snapshot();

  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  std::vector<TestTensor> outs;
  for (int t = 0; t < kThreads; ++t) outs.emplace_back(TA_DTYPE_F32, std::vector<int64_t>{s.B, s.H, s.Nq, s.dv});
  std::barrier sync(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ta_config c = c_base;
      c.num_threads = t % 3;  // 0, 1, 2 inner workers
      sync.arrive_and_wait();
      for (int it = 0; it < kIters; ++it) {
        ta_stats st;
        ta_attention_args a = shared.args();
        a.out = outs[t].ptr();
        if (run_args(a, c, &st) != TA_OK) ++failures;
        if (outs[t].element_bytes() != shared_bits) ++mismatches;
        ta_attention_args b = priv[t].args();
        if (run_args(b, c, &st) != TA_OK) ++failures;
        if (priv[t].out.element_bytes() != priv_bits[t]) ++mismatches;
      }
    });
  }
  for (auto &th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_TRUE(shared.q.same_bytes(shared_q));
  EXPECT_TRUE(shared.k.same_bytes(shared_k));
  EXPECT_TRUE(shared.v.same_bytes(shared_v));
  for (auto &o : outs) EXPECT_TRUE(o.canaries_intact(0xFF)) << "a thread wrote outside its out";
}

// Concurrent fallbacks with different reasons: each thread sees its own reason.
TEST(ThreadSafety, ConcurrentFallbackReasonsStayPrivate_B1_H1_Nq12_Nk12_d8_dv8) {
  const Shape s{1, 1, 12, 12, 8, 8};
  constexpr int kThreads = 6;
  std::vector<Problem> probs;
  for (int t = 0; t < kThreads; ++t) probs.push_back(make_problem(s, TA_DTYPE_F64, 300 + t));
  std::vector<ta_config> cfgs(kThreads, test_config(3, 1));
  std::vector<ta_reason> want(kThreads, TA_REASON_NONE);
  cfgs[1].enabled = 0, want[1] = TA_REASON_DISABLED;
  cfgs[2].min_tokens = 100, want[2] = TA_REASON_BELOW_MIN_TOKENS;
  cfgs[3].max_head_dim = 4, want[3] = TA_REASON_HEAD_DIM_TOO_LARGE;
  cfgs[4].max_feature_dim_R = 10, want[4] = TA_REASON_FEATURE_DIM_TOO_LARGE;
  cfgs[5].sub_head_blocks = 3, want[5] = TA_REASON_SUB_HEAD_BLOCK_MISMATCH;
  std::atomic<int> wrong{0};
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      const ta_attention_args a = probs[t].args();
      sync.arrive_and_wait();
      for (int it = 0; it < 50; ++it) {
        ta_stats st;
        const ta_status status = run_args(a, cfgs[t], &st);
        if (status != (want[t] == TA_REASON_NONE ? TA_OK : TA_FALLBACK) || st.fallback_reason != want[t]) ++wrong;
        ta_reason r = TA_REASON_COUNT_;
        if (ta_attention_check(&a, &cfgs[t], &r) != TA_OK || r != want[t]) ++wrong;
      }
    });
  for (auto &th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// ta_last_error_message is per thread: one thread's failure is not another's message, and
// a success on one thread does not clear another's.
TEST(ThreadSafety, LastErrorMessageIsPerThread) {
  constexpr int kRounds = 200;
  std::barrier sync(2);
  std::atomic<int> bad{0};
  std::thread failing([&] {
    for (int i = 0; i < kRounds; ++i) {
      ta_config c;
      ta_config_defaults(&c);
      c.P = 0;  // invalid
      if (ta_config_validate(&c) != TA_ERR_INVALID_ARGUMENT) ++bad;
      const std::string mine = ta_last_error_message();
      if (mine.empty()) ++bad;
      sync.arrive_and_wait();  // the other thread succeeds now
      sync.arrive_and_wait();
      if (std::string(ta_last_error_message()) != mine) ++bad;
    }
  });
  std::thread succeeding([&] {
    for (int i = 0; i < kRounds; ++i) {
      sync.arrive_and_wait();  // the other thread has failed
      ta_config c;
      ta_config_defaults(&c);
      if (ta_config_validate(&c) != TA_OK) ++bad;
      if (std::string(ta_last_error_message()) != "") ++bad;
      sync.arrive_and_wait();
    }
  });
  failing.join();
  succeeding.join();
  EXPECT_EQ(bad.load(), 0);
  // And this (third) thread never failed: its message is empty after a success.
  ta_config c;
  ta_config_defaults(&c);
  EXPECT_EQ(ta_config_validate(&c), TA_OK);
  EXPECT_STREQ(ta_last_error_message(), "");
}

}  // namespace
