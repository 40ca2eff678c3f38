// Regression cases for what the fuzz targets in fuzz/ found (issue 5): the minimal
// reproducer of each finding, named after it. The raw inputs are kept in
// fuzz/regressions/<target>/ and replayed by scripts/fuzz.sh.
//
// The findings are in src/ and are fixed there separately (see docs/reliability.md): the
// cases below are  until those fixes land, then enabled by dropping the prefix.
// Several are undefined behaviour that only a sanitizer build observes (the asan preset
// for the enum loads and signed overflows; a -D_GLIBCXX_ASSERTIONS or clang build for
// the empty-vector subscript); each case says what it checks and where it fails today.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "common/ta_api_helpers.h"
#include "hardening/hardening_helpers.h"
#include "taylor_attention/taylor_attention.h"

extern "C" {
const char *tatest_c_status_string(int raw);
const char *tatest_c_reason_name(int raw);
const char *tatest_c_dtype_name(int raw);
size_t tatest_c_dtype_size(int raw);
const char *tatest_c_backend_name(int raw);
int tatest_c_backend_available(int raw);
ta_status tatest_c_tensor_init_contiguous(ta_tensor *t, void *data, int dtype, int device, int32_t ndim,
                                          const int64_t *shape);
ta_status tatest_c_reference_attention(const ta_attention_args *args, const ta_config *config, int kind);
}

namespace {

using tatest::make_problem;
using tatest::Shape;
using tatest::test_config;

int32_t raw_of(const ta_tensor &t, bool device) {
  int32_t raw;
  std::memcpy(&raw, device ? static_cast<const void *>(&t.device) : static_cast<const void *>(&t.dtype), sizeof raw);
  return raw;
}

// Finding 1 (fuzz_api_args: status-string-, backend-name-, backend-available-,
// init-contiguous-dtype/device-enum-out-of-range; fuzz_config: reference-kind-out-of-range).
// Enum parameters arrive from C and ctypes as plain ints; the library read them as C++
// enums (undefined for values outside the enum's range: UBSan "load of value ..., which is
// not a valid value for type ..."). Every such entry point must answer any int.
TEST(FuzzRegression, EnumParametersTakeAnyIntFromC) {
  for (int raw : {-1, 8, 15, 16, 99, std::numeric_limits<int>::max(), std::numeric_limits<int>::min()}) {
    SCOPED_TRACE("raw value " + std::to_string(raw));
    if (raw < 0 || raw > 7) {
      EXPECT_STREQ(tatest_c_status_string(raw), "unknown");
    }
    if (raw < 0 || raw >= TA_REASON_COUNT_) {
      EXPECT_STREQ(tatest_c_reason_name(raw), "unknown");
    }
    EXPECT_STREQ(tatest_c_dtype_name(raw), "unknown");
    EXPECT_EQ(tatest_c_dtype_size(raw), 0u);
    EXPECT_STREQ(tatest_c_backend_name(raw), "unknown");
    EXPECT_EQ(tatest_c_backend_available(raw), 0);
    // init_contiguous stores the values as given; check() then names them.
    ta_tensor t;
    const int64_t shape[4] = {1, 1, 2, 2};
    ASSERT_EQ(tatest_c_tensor_init_contiguous(&t, nullptr, raw, raw, 4, shape), TA_OK);
    EXPECT_EQ(raw_of(t, false), raw);
    EXPECT_EQ(raw_of(t, true), raw);
  }
  auto p = make_problem(Shape{1, 1, 3, 3, 2, 2}, TA_DTYPE_F32, 1);
  const ta_attention_args a = p.args();
  const ta_config c = test_config();
  for (int kind : {4, -1, 1 << 30}) {
    EXPECT_EQ(tatest_c_reference_attention(&a, &c, kind), TA_ERR_INVALID_ARGUMENT) << kind;
    EXPECT_NE(std::string(ta_last_error_message()).find("reference kind"), std::string::npos);
  }
}

// Finding 2 (fuzz_api_args: init-contiguous-stride-overflow). ta_tensor_init_contiguous
// multiplied extents into the next stride without an overflow check: shapes whose strides
// do not fit in int64 were signed overflow (wrapped strides without a sanitizer). They are
// an argument error now, like a negative extent.
TEST(FuzzRegression, InitContiguousStrideOverflowIsAnArgumentError) {
  ta_tensor t;
  const int64_t huge[4] = {2, int64_t{1} << 31, int64_t{1} << 31, 4};  // strides[0] = 2^64
  EXPECT_EQ(ta_tensor_init_contiguous(&t, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, huge), TA_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ta_last_error_message()).find("64 bits"), std::string::npos) << ta_last_error_message();
  // The outermost extent does not enter any stride: this one is fine.
  const int64_t big_outer[4] = {std::numeric_limits<int64_t>::max(), 2, 3, 4};
  ASSERT_EQ(ta_tensor_init_contiguous(&t, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, big_outer), TA_OK);
  EXPECT_EQ(t.strides[0], 24);
}

// Finding 3 (fuzz_api_args: mask-device-out-of-range). The mask's device field was never
// validated and then read as an enum (stage_mask, analyze_mask). An unknown device type
// on the mask is an argument error like one on q.
TEST(FuzzRegression, MaskWithUnknownDeviceTypeIsAnArgumentError_B1_H1_Nq4_Nk4_d4_dv4) {
  auto p = make_problem(Shape{1, 1, 4, 4, 4, 4}, TA_DTYPE_F32, 2);
  p.keep.assign(4, 1);
  p.mask = tatest::make_mask(tatest::MaskForm::Nk, TA_DTYPE_BOOL, p.s, p.keep);
  for (int32_t raw : {2, -1, 1 << 20}) {
    std::memcpy(&p.mask->desc().device, &raw, sizeof raw);
    const ta_attention_args a = p.args();
    const ta_config c = test_config();
    ta_reason r = TA_REASON_COUNT_;
    EXPECT_EQ(ta_attention_check(&a, &c, &r), TA_ERR_INVALID_ARGUMENT) << raw;
    EXPECT_NE(std::string(ta_last_error_message()).find("mask has an unknown device type"), std::string::npos)
        << ta_last_error_message();
    EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, nullptr), TA_ERR_INVALID_ARGUMENT);
  }
}

// Finding 4 (fuzz_api_args: out-span-overflow-bool). The overlap test of out's strides
// formed stride * extent in int64; for a 1-byte dtype, (extent - 1) * stride may fit while
// extent * stride does not: signed overflow in argument checking (data pointers not even
// needed: memory_estimate hits it from shapes alone). Today this is caught by UBSan only.
TEST(FuzzRegression, OutStrideTimesExtentOverflowInOverlapCheck) {
  const int64_t big = int64_t{3} << 61;  // (2 - 1) * big fits int64, 2 * big does not
  ta_tensor q{}, k{}, v{}, out{};
  const int64_t shape[4] = {1, 1, 2, 1};
  for (ta_tensor *t : {&q, &k, &v, &out})
    ASSERT_EQ(ta_tensor_init_contiguous(t, nullptr, TA_DTYPE_BOOL, TA_DEVICE_CPU, 4, shape), TA_OK);
  out.strides[2] = big;
  const ta_attention_args a{&q, &k, &v, nullptr, &out};
  const ta_config c = test_config();
  ta_memory_estimate est;
  const ta_status s = ta_attention_memory_estimate(&a, &c, &est);
  EXPECT_TRUE(s == TA_OK || s == TA_ERR_INVALID_ARGUMENT) << ta_status_string(s);
}

// Finding 5 (fuzz_api_args: quality-check-all-keys-masked; fuzz_config:
// reference-all-keys-masked). With every key of a batch entry masked, the references took
// &kt[0] of an empty vector (src/core/reference.cpp): a subscript past the end, reached
// from ta_reference_attention and from ta_attention_run's quality check (clamping, so the
// call succeeds). Caught by -D_GLIBCXX_ASSERTIONS or clang's UBSan; harmless in practice.
TEST(FuzzRegression, EveryKeyMaskedInReferencesAndQualityCheck_B2_H1_Nq3_Nk4_d4_dv2) {
  auto p = make_problem(Shape{2, 1, 3, 4, 4, 2}, TA_DTYPE_F32, 3);
  tahard::add_bool_key_mask(&p, 1);  // (j + b) % 1 == 0: every key of both batch entries masked
  ta_config c = test_config();
  c.fallback_on_negative = 0;  // clamp the zero denominators: the call succeeds ...
  c.quality_check = 1;         // ... and the quality check runs the reference
  ta_stats st;
  ta_stats_init(&st);
  const ta_attention_args a = p.args();
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  for (ta_reference_kind kind :
       {TA_REFERENCE_EXACT_ORIGINAL, TA_REFERENCE_EXACT_MODIFIED, TA_REFERENCE_TAYLOR_QUADRATIC}) {
    EXPECT_EQ(ta_reference_attention(&a, &c, kind), TA_OK) << ta_last_error_message();
  }
}

}  // namespace
