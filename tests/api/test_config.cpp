// ta_config_validate: every field's range, the message naming the field, and that the
// three questions refuse an out-of-range config as an argument error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

using tatest::make_problem;
using tatest::Shape;

struct BadField {
  const char *name;  // the field the message must name
  const char *what;  // the bad value, for the case name
  std::function<void(ta_config &)> set;
};

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

std::vector<BadField> bad_fields() {
  return {
      {"P", "P0", [](ta_config &c) { c.P = 0; }},
      {"P", "Pneg", [](ta_config &c) { c.P = -3; }},
      {"P", "P17", [](ta_config &c) { c.P = 17; }},
      {"sub_head_blocks", "G0", [](ta_config &c) { c.sub_head_blocks = 0; }},
      {"sub_head_blocks", "Gneg", [](ta_config &c) { c.sub_head_blocks = -1; }},
      {"eps", "eps0", [](ta_config &c) { c.eps = 0.0; }},
      {"eps", "epsneg", [](ta_config &c) { c.eps = -1e-6; }},
      {"eps", "epsnan", [](ta_config &c) { c.eps = kNaN; }},
      {"block_size_q", "bq0", [](ta_config &c) { c.block_size_q = 0; }},
      {"block_size_k", "bk0", [](ta_config &c) { c.block_size_k = 0; }},
      {"block_size_k", "bkneg", [](ta_config &c) { c.block_size_k = -16; }},
      {"probe_samples", "probeneg", [](ta_config &c) { c.probe_samples = -1; }},
      {"quality_check_samples", "qcsneg", [](ta_config &c) { c.quality_check_samples = -1; }},
      {"scale", "scaleneg", [](ta_config &c) { c.scale = -0.125; }},
      {"scale", "scalenan", [](ta_config &c) { c.scale = kNaN; }},
      {"scale_mul", "smulnan", [](ta_config &c) { c.scale_mul = kNaN; }},
      {"scale_mul", "smulinf", [](ta_config &c) { c.scale_mul = kInf; }},
      {"scale_mul", "smulneginf", [](ta_config &c) { c.scale_mul = -kInf; }},
      {"min_tokens", "mintokneg", [](ta_config &c) { c.min_tokens = -1; }},
      {"max_feature_dim_R", "maxR0", [](ta_config &c) { c.max_feature_dim_R = 0; }},
      {"max_head_dim", "maxhd0", [](ta_config &c) { c.max_head_dim = 0; }},
      {"num_threads", "threadsneg", [](ta_config &c) { c.num_threads = -2; }},
      {"struct_size", "size0", [](ta_config &c) { c.struct_size = 0; }},
      {"struct_size", "sizeplus8", [](ta_config &c) { c.struct_size = sizeof(ta_config) + 8; }},
      {"struct_size", "sizeminus8", [](ta_config &c) { c.struct_size = sizeof(ta_config) - 8; }},
  };
}

TEST(ConfigValidate, EveryBadFieldIsNamed) {
  for (const BadField &bf : bad_fields()) {
    SCOPED_TRACE(bf.what);
    ta_config c;
    ta_config_defaults(&c);
    bf.set(c);
    EXPECT_EQ(ta_config_validate(&c), TA_ERR_INVALID_ARGUMENT);
    const std::string msg = ta_last_error_message();
    EXPECT_NE(msg.find(bf.name), std::string::npos) << "message '" << msg << "' does not name " << bf.name;
  }
}

// The three questions treat a bad config as an argument error, before any guard
// (also before `enabled == 0`).
TEST(ConfigValidate, BadConfigIsAnArgumentErrorForEveryCall_B1_H1_Nq4_Nk4_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F64, 1);
  const ta_attention_args a = p.args();
  for (const BadField &bf : bad_fields()) {
    for (int enabled : {1, 0}) {
      SCOPED_TRACE(std::string(bf.what) + (enabled ? "" : "_disabled"));
      ta_config c = tatest::test_config();
      c.enabled = enabled;
      bf.set(c);
      ta_reason reason = TA_REASON_COUNT_;
      EXPECT_EQ(ta_attention_check(&a, &c, &reason), TA_ERR_INVALID_ARGUMENT);
      size_t bytes = 0;
      EXPECT_EQ(ta_attention_workspace_size(&a, &c, &bytes), TA_ERR_INVALID_ARGUMENT);
      ta_memory_estimate est;
      EXPECT_EQ(ta_attention_memory_estimate(&a, &c, &est), TA_ERR_INVALID_ARGUMENT);
      ta_stats st;
      ta_stats_init(&st);
      p.out.fill_bytes(0xA5);
      EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_ERR_INVALID_ARGUMENT);
      EXPECT_TRUE(p.out.canaries_intact(0xA5));
      EXPECT_GT(std::strlen(ta_last_error_message()), 0u);
      EXPECT_EQ(ta_reference_attention(&a, &c, TA_REFERENCE_TAYLOR_QUADRATIC), TA_ERR_INVALID_ARGUMENT);
    }
  }
}

TEST(ConfigValidate, BoundaryValuesAccepted) {
  struct Good { const char *what; std::function<void(ta_config &)> set; };
  const Good goods[] = {
      {"P1", [](ta_config &c) { c.P = 1; }},
      {"P16", [](ta_config &c) { c.P = 16; }},
      {"G1", [](ta_config &c) { c.sub_head_blocks = 1; }},
      {"eps_tiny", [](ta_config &c) { c.eps = 1e-300; }},
      {"eps_big", [](ta_config &c) { c.eps = 10.0; }},
      {"blocks1", [](ta_config &c) { c.block_size_q = 1; c.block_size_k = 1; }},
      {"probe0", [](ta_config &c) { c.probe_samples = 0; }},
      {"qcs0", [](ta_config &c) { c.quality_check_samples = 0; }},
      {"scale0", [](ta_config &c) { c.scale = 0.0; }},
      {"scale_pos", [](ta_config &c) { c.scale = 3.5; }},
      {"smul0", [](ta_config &c) { c.scale_mul = 0.0; }},
      {"smulneg", [](ta_config &c) { c.scale_mul = -2.0; }},
      {"mintok0", [](ta_config &c) { c.min_tokens = 0; }},
      {"maxR1", [](ta_config &c) { c.max_feature_dim_R = 1; }},
      {"maxhd1", [](ta_config &c) { c.max_head_dim = 1; }},
      {"threads0", [](ta_config &c) { c.num_threads = 0; }},
      {"threads64", [](ta_config &c) { c.num_threads = 64; }},
      {"seed_max", [](ta_config &c) { c.seed = ~0ull; }},
      {"flags_off", [](ta_config &c) {
         c.enabled = 0; c.qk_normalize = 1; c.fallback_on_negative = 0; c.allow_cross_attention = 0;
         c.force_fp32 = 1; c.early_probe = 0; c.denom_fp32 = 0; c.quality_check = 0; }},
  };
  for (const Good &g : goods) {
    ta_config c;
    ta_config_defaults(&c);
    g.set(c);
    EXPECT_EQ(ta_config_validate(&c), TA_OK) << g.what << ": " << ta_last_error_message();
    EXPECT_STREQ(ta_last_error_message(), "") << g.what;
  }
}

TEST(ConfigValidate, NullConfig) {
  EXPECT_EQ(ta_config_validate(nullptr), TA_ERR_INVALID_ARGUMENT);
  EXPECT_GT(std::strlen(ta_last_error_message()), 0u);
}

}  // namespace
