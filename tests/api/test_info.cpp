// Facts of the API: versions, stable names, dtype sizes, ta_feature_dim, config defaults,
// tensor initialisation, backend availability.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

TEST(Info, VersionsMatchHeader) {
  EXPECT_EQ(ta_version(), TA_VERSION_NUMBER);
  EXPECT_EQ(ta_abi_version(), TA_ABI_VERSION);
  const std::string expect = std::to_string(TA_VERSION_MAJOR) + "." + std::to_string(TA_VERSION_MINOR) + "." +
                             std::to_string(TA_VERSION_PATCH);
  ASSERT_NE(ta_version_string(), nullptr);
  EXPECT_EQ(std::string(ta_version_string()), expect);
}

TEST(Info, StatusStringsStable) {
  const char *names[] = {"ok", "fallback", "invalid_argument", "workspace_too_small",
                         "out_of_memory", "unsupported", "device", "internal"};
  for (int s = 0; s < 8; ++s) {
    ASSERT_NE(ta_status_string(static_cast<ta_status>(s)), nullptr);
    EXPECT_STREQ(ta_status_string(static_cast<ta_status>(s)), names[s]) << "status " << s;
  }
  EXPECT_STREQ(ta_status_string(static_cast<ta_status>(8)), "unknown");
  EXPECT_STREQ(ta_status_string(static_cast<ta_status>(-1)), "unknown");
  EXPECT_STREQ(ta_status_string(static_cast<ta_status>(1000000)), "unknown");
}

TEST(Info, ReasonNamesStable) {
  const char *names[] = {"none",
                         "disabled",
                         "below_min_tokens",
                         "cross_attention_disabled",
                         "head_dim_too_large",
                         "feature_dim_too_large",
                         "sub_head_block_mismatch",
                         "unsupported_mask",
                         "unsupported_dtype",
                         "unsupported_layout",
                         "unsupported_device",
                         "denominator_too_small",
                         "denominator_invalid",
                         "non_finite_output",
                         "out_of_memory",
                         "window_no_layout",
                         "window_cross_attention"};
  static_assert(sizeof(names) / sizeof(names[0]) == TA_REASON_COUNT_);
  for (int r = 0; r < TA_REASON_COUNT_; ++r) {
    ASSERT_NE(ta_reason_name(static_cast<ta_reason>(r)), nullptr);
    EXPECT_STREQ(ta_reason_name(static_cast<ta_reason>(r)), names[r]) << "reason " << r;
  }
  EXPECT_STREQ(ta_reason_name(TA_REASON_COUNT_), "unknown");
  EXPECT_STREQ(ta_reason_name(static_cast<ta_reason>(-3)), "unknown");
  EXPECT_STREQ(ta_reason_name(static_cast<ta_reason>(999)), "unknown");
}

TEST(Info, DtypeNamesAndSizes) {
  EXPECT_EQ(ta_dtype_size(TA_DTYPE_F16), 2u);
  EXPECT_EQ(ta_dtype_size(TA_DTYPE_BF16), 2u);
  EXPECT_EQ(ta_dtype_size(TA_DTYPE_F32), 4u);
  EXPECT_EQ(ta_dtype_size(TA_DTYPE_F64), 8u);
  EXPECT_EQ(ta_dtype_size(TA_DTYPE_BOOL), 1u);
  EXPECT_EQ(ta_dtype_size(static_cast<ta_dtype>(77)), 0u);
  std::set<std::string> seen;
  for (int d = 0; d <= 4; ++d) {
    const char *n = ta_dtype_name(static_cast<ta_dtype>(d));
    ASSERT_NE(n, nullptr);
    EXPECT_GT(std::strlen(n), 0u);
    seen.insert(n);
  }
  EXPECT_EQ(seen.size(), 5u) << "dtype names must be distinct";
  EXPECT_NE(ta_dtype_name(static_cast<ta_dtype>(77)), nullptr);
}

TEST(Info, BackendNames) {
  std::set<std::string> seen;
  for (int b = 0; b <= 2; ++b) {
    const char *n = ta_backend_name(static_cast<ta_backend>(b));
    ASSERT_NE(n, nullptr);
    seen.insert(n);
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_NE(ta_backend_name(static_cast<ta_backend>(42)), nullptr);
}

TEST(Info, BackendAvailability) {
  EXPECT_EQ(ta_backend_available(TA_DEVICE_CPU), 1);
  const int cuda = ta_backend_available(TA_DEVICE_CUDA);
  EXPECT_TRUE(cuda == 0 || cuda == 1);
  EXPECT_EQ(ta_backend_available(static_cast<ta_device_type>(9)), 0);
}

// Exact C(d+P-1, P-1) in 128-bit arithmetic; false when it exceeds INT64_MAX.
bool exact_R(int64_t d, int P, int64_t *out) {
  using u128 = unsigned __int128;
  const u128 n = static_cast<u128>(d) + static_cast<u128>(P - 1);
  u128 c = 1;
  for (int i = 1; i <= P - 1; ++i) {
    c = c * (n - static_cast<u128>(i) + 1) / static_cast<u128>(i);  // c*(n-i+1) < 2^63 * 2^64
    if (c > static_cast<u128>(std::numeric_limits<int64_t>::max())) return false;
  }
  *out = static_cast<int64_t>(c);
  return true;
}

TEST(FeatureDim, KnownValues) {
  struct Case { int64_t d; int P; int64_t R; };
  const Case cases[] = {{128, 4, 366145}, {128, 3, 8385}, {32, 4, 6545}, {64, 4, 47905}, {16, 4, 969},
                        {16, 2, 17},      {32, 3, 561},   {64, 3, 2145}, {128, 5, 12082785},
                        {1, 16, 16},      {7, 1, 1},      {3, 3, 10},    {59, 3, 1830}, {2, 16, 136}};
  for (const Case &c : cases) {
    int64_t R = -1;
    EXPECT_EQ(ta_feature_dim(c.d, c.P, &R), TA_OK) << "d=" << c.d << " P=" << c.P;
    EXPECT_EQ(R, c.R) << "d=" << c.d << " P=" << c.P;
  }
}

TEST(FeatureDim, SweepAgainstExact128Bit) {
  const int64_t big = std::numeric_limits<int64_t>::max();
  const int64_t ds[] = {1,       2,        3,          5,          17,         59,      100,     128,
                        1000,    4096,     65536,      1000000,    1LL << 31,  1LL << 40, big / 2, big - 15,
                        big - 1, big};
  int overflow_seen = 0, ok_seen = 0;
  for (int64_t d : ds) {
    for (int P = 1; P <= 16; ++P) {
      int64_t want = 0, got = -7;
      const bool fits = exact_R(d, P, &want);
      const ta_status st = ta_feature_dim(d, P, &got);
      if (fits) {
        ++ok_seen;
        EXPECT_EQ(st, TA_OK) << "d=" << d << " P=" << P;
        EXPECT_EQ(got, want) << "d=" << d << " P=" << P;
      } else {
        ++overflow_seen;
        EXPECT_EQ(st, TA_ERR_INVALID_ARGUMENT) << "d=" << d << " P=" << P << " overflows int64; got R=" << got;
      }
    }
  }
  EXPECT_GT(overflow_seen, 10);
  EXPECT_GT(ok_seen, 100);
}

TEST(FeatureDim, OverflowNeverWraps) {
  int64_t R = 0;
  EXPECT_EQ(ta_feature_dim(1000000, 16, &R), TA_ERR_INVALID_ARGUMENT);
  EXPECT_GT(std::strlen(ta_last_error_message()), 0u);
  // P=2: R = d + 1. INT64_MAX - 1 fits exactly, INT64_MAX does not.
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(ta_feature_dim(big - 1, 2, &R), TA_OK);
  EXPECT_EQ(R, big);
  EXPECT_EQ(ta_feature_dim(big, 2, &R), TA_ERR_INVALID_ARGUMENT);
  // P=3: C(d+2, 2) = (d+2)(d+1)/2; d = 4294967294 gives 2^63 - 2^31 + ... check boundary via 128-bit.
  for (int64_t d : {3037000497LL, 3037000498LL, 3037000499LL, 3037000500LL}) {
    int64_t want = 0;
    const bool fits = exact_R(d, 3, &want);
    const ta_status st = ta_feature_dim(d, 3, &R);
    EXPECT_EQ(st, fits ? TA_OK : TA_ERR_INVALID_ARGUMENT) << "d=" << d;
    if (fits) {
      EXPECT_EQ(R, want);
    }
  }
}

TEST(FeatureDim, NullOutput) { EXPECT_EQ(ta_feature_dim(16, 4, nullptr), TA_ERR_INVALID_ARGUMENT); }

TEST(ConfigDefaults, DocumentedValues) {
  ta_config c;
  std::memset(&c, 0x5A, sizeof c);
  ASSERT_EQ(ta_config_defaults(&c), TA_OK);
  EXPECT_EQ(c.struct_size, sizeof(ta_config));
  EXPECT_EQ(c.enabled, 1);
  EXPECT_EQ(c.P, 4);
  EXPECT_EQ(c.min_tokens, 100);
  EXPECT_EQ(c.max_feature_dim_R, 370000);
  EXPECT_EQ(c.sub_head_blocks, 4);
  EXPECT_EQ(c.qk_normalize, 0);
  EXPECT_EQ(c.scale_mul, 1.0);
  EXPECT_EQ(c.scale, 0.0);
  EXPECT_EQ(c.block_size_q, 32);
  EXPECT_EQ(c.block_size_k, 16);
  EXPECT_EQ(c.eps, 1e-6);
  EXPECT_EQ(c.fallback_on_negative, 1);
  EXPECT_EQ(c.allow_cross_attention, 1);
  EXPECT_EQ(c.max_head_dim, 128);
  EXPECT_EQ(c.force_fp32, 0);
  EXPECT_EQ(c.early_probe, 1);
  EXPECT_EQ(c.probe_samples, 16);
  EXPECT_EQ(c.denom_fp32, 1);
  EXPECT_EQ(c.quality_check, 1);
  EXPECT_EQ(c.quality_check_samples, 16);
  EXPECT_EQ(c.seed, 0u);
  EXPECT_EQ(c.num_threads, 0);
  EXPECT_EQ(ta_config_validate(&c), TA_OK);
  EXPECT_EQ(ta_config_defaults(nullptr), TA_ERR_INVALID_ARGUMENT);
}

TEST(ConfigDefaults, DefaultFeatureDimAdmitsD128P4Exactly) {
  int64_t R = 0;
  ASSERT_EQ(ta_feature_dim(128, 4, &R), TA_OK);
  ta_config c;
  ta_config_defaults(&c);
  EXPECT_LE(R, c.max_feature_dim_R);
  ASSERT_EQ(ta_feature_dim(128, 5, &R), TA_OK);
  EXPECT_GT(R, c.max_feature_dim_R);
}

TEST(StatsInit, SetsSizeAndNeutralValues) {
  ta_stats s;
  std::memset(&s, 0x5A, sizeof s);
  ASSERT_EQ(ta_stats_init(&s), TA_OK);
  EXPECT_EQ(s.struct_size, sizeof(ta_stats));
  EXPECT_EQ(s.backend, TA_BACKEND_NONE);
  EXPECT_EQ(s.fallback_reason, TA_REASON_NONE);
  EXPECT_EQ(s.quality_vs_original.samples, 0);
  EXPECT_EQ(s.probe_ran, 0);
  EXPECT_EQ(ta_stats_init(nullptr), TA_ERR_INVALID_ARGUMENT);
}

TEST(TensorInit, ContiguousStrides) {
  ta_tensor t;
  const int64_t shape[4] = {2, 3, 5, 7};
  float buf[1];
  ASSERT_EQ(ta_tensor_init_contiguous(&t, buf, TA_DTYPE_F32, TA_DEVICE_CPU, 4, shape), TA_OK);
  EXPECT_EQ(t.data, buf);
  EXPECT_EQ(t.dtype, TA_DTYPE_F32);
  EXPECT_EQ(t.device, TA_DEVICE_CPU);
  EXPECT_EQ(t.device_id, 0);
  EXPECT_EQ(t.ndim, 4);
  const int64_t want[4] = {105, 35, 7, 1};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(t.shape[i], shape[i]);
    EXPECT_EQ(t.strides[i], want[i]) << "dim " << i;
  }
  ASSERT_EQ(ta_tensor_init_contiguous(&t, buf, TA_DTYPE_BOOL, TA_DEVICE_CPU, 1, shape + 3), TA_OK);
  EXPECT_EQ(t.ndim, 1);
  EXPECT_EQ(t.shape[0], 7);
  EXPECT_EQ(t.strides[0], 1);
  const int64_t two[2] = {4, 9};
  ASSERT_EQ(ta_tensor_init_contiguous(&t, buf, TA_DTYPE_F16, TA_DEVICE_CPU, 2, two), TA_OK);
  EXPECT_EQ(t.strides[0], 9);
  EXPECT_EQ(t.strides[1], 1);
}

TEST(TensorInit, Errors) {
  ta_tensor t;
  const int64_t shape[5] = {2, 3, 5, 7, 11};
  EXPECT_EQ(ta_tensor_init_contiguous(nullptr, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, shape),
            TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_tensor_init_contiguous(&t, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 0, shape),
            TA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ta_tensor_init_contiguous(&t, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 5, shape),
            TA_ERR_INVALID_ARGUMENT);
  const int64_t neg[4] = {2, -1, 5, 7};
  EXPECT_EQ(ta_tensor_init_contiguous(&t, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, neg),
            TA_ERR_INVALID_ARGUMENT);
  EXPECT_GT(std::strlen(ta_last_error_message()), 0u);
}

}  // namespace
