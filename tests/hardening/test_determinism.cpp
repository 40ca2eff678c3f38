// Determinism on the CPU (issue 5): the same inputs and parameters give bit-identical
// outputs and statistics run to run, for num_threads 1, 2, 0 (all hardware threads) and
// more threads than work units, with the library's workspace or the caller's (aligned or
// not), for all four dtypes with masks, strided views, sub-head blocks, qk_normalize, the
// probe and the quality check. tests/api covers plain contiguous problems
// (Determinism.RepeatedCallsBitIdentical, Params.NumThreadsBitIdentical); this adds the
// rest of the call surface, the stats, and the references.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/ta_api_helpers.h"
#include "hardening/hardening_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tahard::ExactBuffer;
using tatest::make_problem;
using tatest::Problem;
using tatest::run_checked;
using tatest::Shape;
using tatest::test_config;

struct Variant {
  const char *name;
  void (*setup)(Problem *p, ta_config *c);
};

const Shape kS{2, 3, 21, 17, 12, 6};  // B2_H3_Nq21_Nk17_d12_dv6: 6 to 18 work units

const Variant kVariants[] = {
    {"plain_G1_P4", [](Problem *, ta_config *c) { *c = test_config(4, 1); }},
    {"G3_norm_probe_quality_boolmask",
     [](Problem *p, ta_config *c) {
       *c = test_config(3, 3);
       c->qk_normalize = 1;
       c->quality_check = 1;
       c->quality_check_samples = 5;
       c->probe_samples = 7;
       tahard::add_bool_key_mask(p, 3);
     }},
    {"G2_floatmask_strided_blocks",
     [](Problem *p, ta_config *c) {
       *c = test_config(5, 2);
       c->block_size_q = 5;
       c->block_size_k = 3;
       tahard::add_float_key_mask(p, p->q.dtype() == TA_DTYPE_BOOL ? TA_DTYPE_F32 : p->q.dtype(), 5);
       tahard::restride(&p->q, tahard::bnhd_strides(kS.H, kS.Nq, kS.d, 2));
       tahard::restride(&p->k, tahard::bnhd_strides(kS.H, kS.Nk, kS.d, 0));
       tahard::restride(&p->out, tahard::bnhd_strides(kS.H, kS.Nq, kS.dv, 3));
     }},
};

class DeterminismHardening : public ::testing::TestWithParam<std::tuple<ta_dtype, int>> {};

TEST_P(DeterminismHardening, BitsAndStatsIndependentOfThreadsAndWorkspace_B2_H3_Nq21_Nk17_d12_dv6) {
  const auto [dt, vi] = GetParam();
  const Variant &v = kVariants[vi];
  auto p = make_problem(kS, dt, 60 + static_cast<uint64_t>(vi));
  ta_config c;
  v.setup(&p, &c);
  c.num_threads = 1;
  const auto first = run_checked(p, c);
  ASSERT_EQ(first.status, TA_OK) << first.message;
  const auto bits = p.out.element_bytes();
  const auto stats = tahard::stats_key(first.stats);

  const ta_attention_args a = p.args();
  for (int rep = 0; rep < 2; ++rep) {
    for (int nt : {1, 2, 0, 3, 64}) {
      c.num_threads = nt;
      size_t ws = 0;
      ASSERT_EQ(ta_attention_workspace_size(&a, &c, &ws), TA_OK);
      for (int mode = 0; mode < 3; ++mode) {  // library workspace, caller aligned, caller misaligned
        SCOPED_TRACE("rep " + std::to_string(rep) + " num_threads " + std::to_string(nt) + " workspace mode " +
                     std::to_string(mode));
        std::unique_ptr<ExactBuffer> buf;
        if (mode > 0) buf = std::make_unique<ExactBuffer>(ws, mode == 2 ? 24 : 0);
        const auto r = run_checked(p, c, buf ? buf->data() : nullptr, buf ? buf->size() : 0);
        ASSERT_EQ(r.status, TA_OK) << r.message;
        EXPECT_EQ(p.out.element_bytes(), bits) << "output bits changed";
        EXPECT_EQ(tahard::stats_key(r.stats), stats) << "reproducible stats changed";
      }
    }
  }
}

// The references are computed in parallel over row blocks: their bits must not depend on
// num_threads either (tools and the Python fallback path use them).
TEST_P(DeterminismHardening, ReferencesIndependentOfThreads_B2_H3_Nq21_Nk17_d12_dv6) {
  const auto [dt, vi] = GetParam();
  const Variant &v = kVariants[vi];
  auto p = make_problem(kS, dt, 70 + static_cast<uint64_t>(vi));
  ta_config c;
  v.setup(&p, &c);
  for (ta_reference_kind kind :
       {TA_REFERENCE_EXACT_ORIGINAL, TA_REFERENCE_EXACT_MODIFIED, TA_REFERENCE_TAYLOR_QUADRATIC}) {
    SCOPED_TRACE("reference kind " + std::to_string(kind));
    std::vector<uint8_t> want;
    for (int nt : {1, 2, 0, 5}) {
      c.num_threads = nt;
      p.out.fill_bytes(0xA5);
      const ta_attention_args a = p.args();
      ASSERT_EQ(ta_reference_attention(&a, &c, kind), TA_OK) << ta_last_error_message();
      EXPECT_TRUE(p.out.canaries_intact(0xA5));
      if (want.empty()) {
        want = p.out.element_bytes();
      } else {
        EXPECT_EQ(p.out.element_bytes(), want) << "num_threads " << nt;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Hardening, DeterminismHardening,
                         ::testing::Combine(::testing::Values(TA_DTYPE_F64, TA_DTYPE_F32, TA_DTYPE_F16, TA_DTYPE_BF16),
                                            ::testing::Values(0, 1, 2)),
                         [](const auto &info) {
                           return std::string(tatest::dtype_tag(std::get<0>(info.param))) + "_" +
                                  kVariants[std::get<1>(info.param)].name;
                         });

}  // namespace
