// Allocation failure (issue 5): a call whose inputs are tiny but whose workspace is absurd
// (P = 16 on a 64-dim slice: R = C(79, 15) = 5.4e15 features, a workspace of ~3.7e17
// bytes, beyond any address space) with workspace == NULL, so the library itself must
// allocate. It must answer TA_ERR_OUT_OF_MEMORY with reason out_of_memory and a message,
// write nothing, and leave the next call on the same thread unaffected.
//
// Sanitizer runtimes abort on such a request by default instead of letting
// operator new(std::nothrow) return NULL, which is what the library relies on; this
// executable (and only this one) turns on allocator_may_return_null for them.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

extern "C" {
// Read by AddressSanitizer / ThreadSanitizer at start-up when linked in; an
// ASAN_OPTIONS / TSAN_OPTIONS environment variable still overrides single flags.
__attribute__((visibility("default"), used)) const char *__asan_default_options() {
  return "allocator_may_return_null=1";
}
__attribute__((visibility("default"), used)) const char *__tsan_default_options() {
  return "allocator_may_return_null=1";
}
}

namespace {

using tatest::make_problem;
using tatest::rname;
using tatest::run_checked;
using tatest::Shape;
using tatest::test_config;

constexpr int64_t kHugeR = 5391644226101705LL;  // C(64 + 15, 15)

ta_config huge_config() {
  ta_config c = test_config(16, 1);
  c.max_feature_dim_R = std::numeric_limits<int64_t>::max();
  c.block_size_q = 1 << 20;  // clamped to the token counts; asked for anyway
  c.block_size_k = 1 << 20;
  c.num_threads = 1;
  return c;
}

TEST(AllocationFailure, AbsurdLibraryAllocationIsOutOfMemory_B1_H1_Nq8_Nk8_d64_dv8_P16) {
  for (ta_dtype dt : {TA_DTYPE_F32, TA_DTYPE_F64}) {
    SCOPED_TRACE(tatest::dtype_tag(dt));
    auto p = make_problem(Shape{1, 1, 8, 8, 64, 8}, dt, 41);
    const ta_config c = huge_config();
    const ta_attention_args a = p.args();
    ta_reason reason = TA_REASON_COUNT_;
    ASSERT_EQ(ta_attention_check(&a, &c, &reason), TA_OK) << ta_last_error_message();
    ASSERT_EQ(reason, TA_REASON_NONE) << "the guards must let it through: only memory stops it";
    size_t ws = 0;
    ASSERT_EQ(ta_attention_workspace_size(&a, &c, &ws), TA_OK) << ta_last_error_message();
    // Beyond 2^57 bytes: no 57-bit (5-level paging) address space holds it, so the
    // allocation fails on every machine whatever its overcommit policy.
    EXPECT_GT(ws, size_t{1} << 57);
    ta_memory_estimate est;
    ASSERT_EQ(ta_attention_memory_estimate(&a, &c, &est), TA_OK);
    EXPECT_EQ(est.feature_dim, kHugeR);
    EXPECT_EQ(est.workspace_bytes, static_cast<int64_t>(ws));

    p.out.fill_bytes(0xA5);
    ta_stats st;
    ta_stats_init(&st);
    EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_ERR_OUT_OF_MEMORY);
    const std::string msg = ta_last_error_message();
    EXPECT_NE(msg.find(std::to_string(ws)), std::string::npos) << "message should quote the size: " << msg;
    EXPECT_EQ(st.fallback_reason, TA_REASON_OUT_OF_MEMORY) << rname(st.fallback_reason);
    EXPECT_EQ(st.backend, TA_BACKEND_NONE);
    EXPECT_EQ(st.feature_dim, kHugeR);
    for (uint8_t b : p.out.element_bytes()) ASSERT_EQ(b, 0xA5) << "out written by a failed call";

    // stats == NULL takes the same path.
    EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, nullptr), TA_ERR_OUT_OF_MEMORY);

    // A caller workspace that cannot be that large is the caller's error, not an allocation.
    unsigned char small[512];
    ta_stats_init(&st);
    EXPECT_EQ(ta_attention_run(&a, &c, small, sizeof small, nullptr, &st), TA_ERR_WORKSPACE_TOO_SMALL);
    EXPECT_EQ(st.fallback_reason, TA_REASON_OUT_OF_MEMORY);

    // The next, ordinary call on this thread is unaffected.
    auto ok = make_problem(Shape{1, 2, 8, 8, 8, 8}, dt, 42);
    const auto r = run_checked(ok, test_config(3, 2));
    EXPECT_EQ(r.status, TA_OK) << r.message;
    EXPECT_EQ(r.message, "");
  }
}

}  // namespace
