// Concurrency under load (issue 5). Many threads call every entry point of the C API at
// once on a mix of calls: all four float dtypes, bool and additive masks, strided views,
// sub-head blocks, guard fallbacks, run-time fallbacks (NaN inputs), argument errors,
// too-small and caller-owned workspaces, a workspace plan that overflows. The problems'
// inputs are shared read-only by every thread; each thread also runs private problems.
// Every call must answer exactly what the same call answered serially: statuses, reason,
// message, reproducible stats and the output bits. The per-thread error message is
// checked with many threads failing differently at once. The tsan preset runs these.
// (tests/api/test_threads.cpp covers one f32 problem and two threads for the message;
// this file widens both.)
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/ta_api_helpers.h"
#include "hardening/hardening_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tahard::ExactBuffer;
using tatest::make_problem;
using tatest::Problem;
using tatest::Shape;
using tatest::TestTensor;
using tatest::test_config;

// How a job's workspace is provided.
enum class Ws { Library, Exact, TooSmall };

struct Job {
  std::string name;
  std::unique_ptr<Problem> p;
  ta_config c;
  Ws ws = Ws::Library;
  bool null_out = false;        // argument error: out is NULL
  bool out_f64 = false;         // argument error: out's dtype differs from q's
};

// Everything one round of calls answers.
struct Outcome {
  ta_status check_status = TA_ERR_INTERNAL;
  ta_reason check_reason = TA_REASON_COUNT_;
  std::string check_message;
  ta_status ws_status = TA_ERR_INTERNAL;
  size_t ws_bytes = 0;
  ta_status est_status = TA_ERR_INTERNAL;
  ta_memory_estimate est{};
  ta_status run_status = TA_ERR_INTERNAL;
  std::string run_message;
  std::vector<uint8_t> stats;
  std::vector<uint8_t> out_bits;  // only when run_status == TA_OK
  ta_status ref_status = TA_ERR_INTERNAL;
  std::vector<uint8_t> ref_bits;  // only when ref_status == TA_OK

  std::string diff(const Outcome &o) const {
    std::string d;
    auto add = [&](bool differs, const char *what) {
      if (differs) d += std::string(d.empty() ? "" : ", ") + what;
    };
    add(check_status != o.check_status, "check status");
    add(check_reason != o.check_reason, "check reason");
    add(check_message != o.check_message, "check message");
    add(ws_status != o.ws_status || ws_bytes != o.ws_bytes, "workspace size");
    add(est_status != o.est_status || std::memcmp(&est, &o.est, sizeof est) != 0, "memory estimate");
    add(run_status != o.run_status, "run status");
    add(run_message != o.run_message, "run message");
    add(stats != o.stats, "stats");
    add(out_bits != o.out_bits, "output bits");
    add(ref_status != o.ref_status || ref_bits != o.ref_bits, "reference");
    return d;
  }
};

// Outputs owned by one thread for one job (the job's inputs are shared).
struct Outs {
  TestTensor out, ref;
};

Outs make_outs(const Job &j) {
  const TestTensor &o = j.p->out;
  return Outs{TestTensor(o.dtype(), o.shape(), o.strides()), TestTensor(o.dtype(), o.shape(), o.strides())};
}

Outcome call(const Job &j, Outs *outs) {
  Outcome r;
  ta_attention_args a = j.p->args();
  ta_tensor out_desc = *outs->out.ptr();
  if (j.out_f64) out_desc.dtype = TA_DTYPE_F64;
  a.out = j.null_out ? nullptr : &out_desc;
  outs->out.fill_bytes(0xA5);

  r.check_status = ta_attention_check(&a, &j.c, &r.check_reason);
  r.check_message = ta_last_error_message();
  r.ws_status = ta_attention_workspace_size(&a, &j.c, &r.ws_bytes);
  std::memset(&r.est, 0, sizeof r.est);
  r.est_status = ta_attention_memory_estimate(&a, &j.c, &r.est);

  std::unique_ptr<ExactBuffer> ws;
  if (j.ws == Ws::Exact) ws = std::make_unique<ExactBuffer>(r.ws_bytes);
  if (j.ws == Ws::TooSmall) ws = std::make_unique<ExactBuffer>(r.ws_bytes / 3);
  ta_stats st;
  ta_stats_init(&st);
  r.run_status = ta_attention_run(&a, &j.c, ws ? ws->data() : nullptr, ws ? ws->size() : 0, nullptr, &st);
  r.run_message = ta_last_error_message();
  r.stats = tahard::stats_key(st);
  if (r.run_status == TA_OK) r.out_bits = outs->out.element_bytes();

  if (!j.null_out && !j.out_f64) {
    ta_attention_args ra = j.p->args();
    ra.out = outs->ref.ptr();
    r.ref_status = ta_reference_attention(&ra, &j.c, TA_REFERENCE_TAYLOR_QUADRATIC);
    if (r.ref_status == TA_OK) r.ref_bits = outs->ref.element_bytes();
  }
  return r;
}

// The shared mix of calls. Small shapes: ThreadSanitizer runs this too.
std::vector<Job> shared_jobs() {
  std::vector<Job> jobs;
  auto add = [&](std::string name, Problem p, ta_config c) -> Job & {
    Job j;
    j.name = std::move(name);
    j.p = std::make_unique<Problem>(std::move(p));
    j.c = c;
    jobs.push_back(std::move(j));
    return jobs.back();
  };
  {
    ta_config c = test_config(3, 2);
    c.num_threads = 2;
    add("f64_B2_H2_Nq13_Nk11_d8_dv6_G2_P3", make_problem(Shape{2, 2, 13, 11, 8, 6}, TA_DTYPE_F64, 11), c);
  }
  {
    ta_config c = test_config(4, 3);
    c.qk_normalize = 1;
    c.quality_check = 1;
    c.num_threads = 0;
    add("f32_B1_H3_Nq17_Nk17_d12_dv12_G3_P4_norm_quality", make_problem(Shape{1, 3, 17, 17, 12, 12}, TA_DTYPE_F32, 12),
        c);
  }
  {
    Problem p = make_problem(Shape{2, 1, 9, 14, 4, 4}, TA_DTYPE_F16, 13);
    tahard::add_bool_key_mask(&p, 3);
    ta_config c = test_config(5, 1);
    c.num_threads = 1;
    add("f16_B2_H1_Nq9_Nk14_d4_dv4_P5_boolmask", std::move(p), c);
  }
  {
    const Shape s{1, 2, 10, 10, 8, 8};
    Problem p = make_problem(s, TA_DTYPE_BF16, 14);
    tahard::add_float_key_mask(&p, TA_DTYPE_BF16, 4);
    tahard::restride(&p.q, tahard::bnhd_strides(s.H, s.Nq, s.d, 3));
    tahard::restride(&p.v, tahard::bnhd_strides(s.H, s.Nk, s.dv, 1));
    tahard::restride(&p.out, tahard::bnhd_strides(s.H, s.Nq, s.dv, 2));
    ta_config c = test_config(3, 2);
    c.num_threads = 3;
    add("bf16_B1_H2_Nq10_Nk10_d8_dv8_G2_floatmask_strided", std::move(p), c);
  }
  {
    ta_config c = test_config(3, 1);
    c.enabled = 0;
    add("guard_disabled_f32", make_problem(Shape{1, 2, 6, 6, 4, 4}, TA_DTYPE_F32, 15), c);
  }
  {
    ta_config c = test_config(4, 1);
    c.max_feature_dim_R = 5;
    add("guard_feature_dim_f32", make_problem(Shape{1, 1, 6, 6, 4, 4}, TA_DTYPE_F32, 16), c);
  }
  {
    Problem p = make_problem(Shape{1, 2, 8, 7, 4, 4}, TA_DTYPE_F32, 17);
    p.k.set({0, 1, 2, 3}, std::numeric_limits<double>::quiet_NaN());
    ta_config c = test_config(3, 1);
    c.probe_samples = 64;
    add("runtime_nan_k_probe_f32", std::move(p), c);
  }
  {
    Problem p = make_problem(Shape{1, 2, 8, 7, 4, 4}, TA_DTYPE_F64, 18);
    p.v.set({0, 0, 5, 1}, std::numeric_limits<double>::infinity());
    ta_config c = test_config(3, 1);
    c.early_probe = 0;
    c.num_threads = 2;
    add("runtime_inf_v_noprobe_f64", std::move(p), c);
  }
  {
    ta_config c = test_config(3, 1);
    c.P = 0;
    add("error_config_P0", make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F32, 19), c);
  }
  add("error_out_null", make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F32, 20), test_config()).null_out = true;
  add("error_out_dtype", make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F32, 21), test_config()).out_f64 = true;
  add("workspace_too_small_f32", make_problem(Shape{1, 2, 9, 9, 8, 8}, TA_DTYPE_F32, 22), test_config(3, 2)).ws =
      Ws::TooSmall;
  add("workspace_exact_f64", make_problem(Shape{2, 1, 9, 12, 6, 3}, TA_DTYPE_F64, 23), test_config(4, 3)).ws =
      Ws::Exact;
  {
    // R(96, 16) fits int64 but the workspace does not fit the engine's byte limit: an
    // out_of_memory answer without any allocation, on every thread.
    ta_config c = test_config(16, 1);
    c.max_feature_dim_R = std::numeric_limits<int64_t>::max();
    add("plan_overflow_d96_P16", make_problem(Shape{1, 1, 2, 2, 96, 1}, TA_DTYPE_F32, 24), c);
  }
  return jobs;
}

TEST(ConcurrencyStress, MixedCallsFromManyThreadsGiveSerialAnswers) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 2;
  std::vector<Job> jobs = shared_jobs();
  // Private problems: different inputs per thread, mixed dtypes and thread counts.
  std::vector<Job> priv(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    const ta_dtype dt = t % 4 == 0 ? TA_DTYPE_F64 : t % 4 == 1 ? TA_DTYPE_F32 : t % 4 == 2 ? TA_DTYPE_F16 : TA_DTYPE_BF16;
    priv[t].name = "private_" + std::to_string(t);
    priv[t].p = std::make_unique<Problem>(make_problem(Shape{1, 2, 7 + t, 5 + 2 * t, 4, 6}, dt, 500 + t));
    priv[t].c = test_config(2 + t % 3, t % 2 == 0 ? 1 : 2);
    priv[t].c.num_threads = t % 3;
  }

  // Serial answers, and a snapshot of every shared input.
  std::vector<Outcome> want;
  for (const Job &j : jobs) {
    Outs o = make_outs(j);
    want.push_back(call(j, &o));
  }
  std::vector<Outcome> want_priv;
  for (const Job &j : priv) {
    Outs o = make_outs(j);
    want_priv.push_back(call(j, &o));
    ASSERT_EQ(want_priv.back().run_status, TA_OK) << j.name << ": " << want_priv.back().run_message;
  }
  // The mix must exercise what it claims to: successes, both fallback kinds and errors.
  auto status_of = [&](const char *name) {
    for (size_t i = 0; i < jobs.size(); ++i)
      if (jobs[i].name == name) return want[i].run_status;
    return TA_ERR_INTERNAL;
  };
  ASSERT_EQ(status_of("f16_B2_H1_Nq9_Nk14_d4_dv4_P5_boolmask"), TA_OK);
  ASSERT_EQ(status_of("bf16_B1_H2_Nq10_Nk10_d8_dv8_G2_floatmask_strided"), TA_OK);
  ASSERT_EQ(status_of("guard_disabled_f32"), TA_FALLBACK);
  ASSERT_EQ(status_of("runtime_nan_k_probe_f32"), TA_FALLBACK);
  ASSERT_EQ(status_of("runtime_inf_v_noprobe_f64"), TA_FALLBACK);
  ASSERT_EQ(status_of("error_config_P0"), TA_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(status_of("error_out_null"), TA_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(status_of("workspace_too_small_f32"), TA_ERR_WORKSPACE_TOO_SMALL);
  ASSERT_EQ(status_of("workspace_exact_f64"), TA_OK);
  ASSERT_EQ(status_of("plan_overflow_d96_P16"), TA_ERR_OUT_OF_MEMORY);
  std::vector<std::vector<std::byte>> snaps;
  for (const Job &j : jobs)
    for (const TestTensor *t : {&j.p->q, &j.p->k, &j.p->v}) snaps.push_back(t->snapshot());

  std::vector<std::vector<Outs>> outs(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (const Job &j : jobs) outs[t].push_back(make_outs(j));
    outs[t].push_back(make_outs(priv[t]));
  }
  std::vector<std::string> mismatches(kThreads);
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      sync.arrive_and_wait();
      const size_t n = jobs.size() + 1;
      for (int round = 0; round < kRounds; ++round) {
        for (size_t i = 0; i < n; ++i) {
          const size_t at = (i + static_cast<size_t>(t) * 3) % n;  // threads start at different jobs
          const bool is_priv = at == jobs.size();
          const Job &j = is_priv ? priv[t] : jobs[at];
          const Outcome got = call(j, &outs[t][at]);
          const std::string d = got.diff(is_priv ? want_priv[t] : want[at]);
          if (!d.empty() && mismatches[t].empty()) mismatches[t] = j.name + " round " + std::to_string(round) + ": " + d;
        }
      }
    });
  }
  for (auto &th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], "") << "thread " << t;
  size_t s = 0;
  for (const Job &j : jobs)
    for (const TestTensor *tt : {&j.p->q, &j.p->k, &j.p->v})
      EXPECT_TRUE(tt->same_bytes(snaps[s++])) << j.name << ": a shared input was modified";
}

// Many threads fail at once, each with its own message, while the others succeed or fail
// differently: every thread reads back exactly its own last message, the pointer it got
// keeps its text while other threads call, and a success on a thread clears only that
// thread's message.
TEST(ConcurrencyStress, LastErrorMessageIsPerThreadAcrossManyThreads) {
  constexpr int kThreads = 12;
  constexpr int kRounds = 40;
  auto p = make_problem(Shape{1, 1, 6, 6, 4, 4}, TA_DTYPE_F32, 77);
  std::barrier sync(kThreads);
  std::vector<std::string> bad(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto note = [&](const std::string &what) {
        if (bad[t].empty()) bad[t] = what;
      };
      for (int round = 0; round < kRounds; ++round) {
        // Phase 1: thread t fails in its own way (a P only it uses: the message quotes it).
        ta_config c = test_config();
        c.P = 17 + t + round * kThreads;
        const std::string want = "is " + std::to_string(c.P);
        const ta_attention_args a = p.args();
        ta_reason r;
        const ta_status s = (t % 3 == 0)   ? ta_config_validate(&c)
                            : (t % 3 == 1) ? ta_attention_check(&a, &c, &r)
                                           : ta_attention_run(&a, &c, nullptr, 0, nullptr, nullptr);
        if (s != TA_ERR_INVALID_ARGUMENT) note("status " + std::string(ta_status_string(s)));
        const char *msg = ta_last_error_message();
        const std::string mine = msg;
        if (mine.find(want) == std::string::npos) note("message '" + mine + "' lacks '" + want + "'");
        sync.arrive_and_wait();
        // Phase 2: even threads succeed (clearing their own message), odd ones fail with
        // a different error on another entry point.
        if (t % 2 == 0) {
          ta_config ok = test_config();
          if (ta_config_validate(&ok) != TA_OK) note("valid config refused");
          if (std::string(ta_last_error_message()) != "") note("success did not clear the message");
        } else {
          if (ta_stats_init(nullptr) != TA_ERR_INVALID_ARGUMENT) note("ta_stats_init(NULL) accepted");
          if (std::string(ta_last_error_message()) != "stats is NULL") note("stats message");
        }
        sync.arrive_and_wait();
        // Phase 3: odd threads fail once more with a value only they use and read back
        // exactly their own text, although every other thread just changed its message.
        if (t % 2 == 1) {
          ta_config c2 = test_config();
          c2.P = -(t + 1);
          ta_config_validate(&c2);
          const std::string again = ta_last_error_message();
          if (again.find("is " + std::to_string(-(t + 1))) == std::string::npos) note("re-fail message '" + again + "'");
        }
        sync.arrive_and_wait();
      }
    });
  }
  for (auto &th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(bad[t], "") << "thread " << t;
}

// The message pointer stays valid and unchanged on this thread while other threads fail
// with long messages (a shared buffer would be overwritten or reallocated under it).
TEST(ConcurrencyStress, MessagePointerUnaffectedByOtherThreads) {
  ta_config c = test_config();
  c.P = 99;
  ASSERT_EQ(ta_config_validate(&c), TA_ERR_INVALID_ARGUMENT);
  const char *msg = ta_last_error_message();
  const std::string before = msg;
  ASSERT_NE(before, "");
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        ta_config bad = test_config();
        bad.struct_size = 1000u + static_cast<uint32_t>(t * 1000 + i);  // long message with numbers
        ta_config_validate(&bad);
      }
    });
  }
  for (auto &th : threads) th.join();
  EXPECT_EQ(std::string(msg), before);
  EXPECT_EQ(ta_last_error_message(), msg) << "the pointer of this thread's message moved";
}

}  // namespace
