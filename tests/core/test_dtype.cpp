#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"

namespace ta {
namespace {

TEST(Half, EveryBitPatternRoundTrips) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const float f = half_to_float(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f))));
      continue;
    }
    EXPECT_EQ(float_to_half(f), h) << "bits=" << bits;
  }
}

TEST(Half, KnownValuesAndRounding) {
  EXPECT_EQ(half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);               // rounds down to max
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);               // rounds to +inf
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (0)
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half(-std::numeric_limits<float>::infinity()), 0xfc00);
}

TEST(BFloat16, RoundsToNearestEven) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie to even
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie to even (up)
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  for (uint32_t bits = 0; bits < 65536; bits += 7) {
    const float f = bf16_to_float(static_cast<uint16_t>(bits));
    if (!std::isnan(f)) EXPECT_EQ(float_to_bf16(f), bits);
  }
}

TEST(Dtype, SizesAndNames) {
  EXPECT_EQ(dtype_size(TA_DTYPE_F16), 2u);
  EXPECT_EQ(dtype_size(TA_DTYPE_BF16), 2u);
  EXPECT_EQ(dtype_size(TA_DTYPE_F32), 4u);
  EXPECT_EQ(dtype_size(TA_DTYPE_F64), 8u);
  EXPECT_EQ(dtype_size(TA_DTYPE_BOOL), 1u);
  EXPECT_EQ(dtype_size(static_cast<ta_dtype>(99)), 0u);
  EXPECT_STREQ(dtype_name(TA_DTYPE_BF16), "bf16");
}

}  // namespace
}  // namespace ta
