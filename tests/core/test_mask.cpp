#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "core/mask.h"

namespace ta {
namespace {

ta_tensor make(void* data, ta_dtype dt, std::vector<int64_t> shape) {
  ta_tensor t{};
  ta_tensor_init_contiguous(&t, data, dt, TA_DEVICE_CPU, static_cast<int32_t>(shape.size()), shape.data());
  return t;
}

TEST(Mask, BoolKeyMaskPerBatch_B2_Nk3) {
  std::vector<uint8_t> m = {1, 0, 1, 0, 1, 1};
  const ta_tensor t = make(m.data(), TA_DTYPE_BOOL, {2, 3});
  KeyMask km;
  ASSERT_EQ(analyze_mask(t, 2, 4, 5, 3, &km, nullptr), TA_REASON_NONE);
  EXPECT_TRUE(km.attends(0, 0));
  EXPECT_FALSE(km.attends(0, 1));
  EXPECT_FALSE(km.attends(1, 0));
  EXPECT_TRUE(km.attends(1, 2));
}

TEST(Mask, AdditiveFloatBroadcastOverHeadsAndQueries_B1_H1_Nq1_Nk4) {
  std::vector<float> m = {0.0f, -std::numeric_limits<float>::infinity(), -1e4f, 0.0f};
  const ta_tensor t = make(m.data(), TA_DTYPE_F32, {1, 1, 1, 4});
  KeyMask km;
  ASSERT_EQ(analyze_mask(t, 3, 2, 7, 4, &km, nullptr), TA_REASON_NONE);
  EXPECT_EQ(km.batch_stride, 0);
  for (int b = 0; b < 3; ++b) {
    EXPECT_TRUE(km.attends(b, 0));
    EXPECT_FALSE(km.attends(b, 1));
    EXPECT_FALSE(km.attends(b, 2));
    EXPECT_TRUE(km.attends(b, 3));
  }
}

// bf16 stores -1e4 as -9984: a mask built with -1e4 must still block.
TEST(Mask, Bf16MinusTenThousandBlocks_Nk3) {
  std::vector<uint16_t> m = {float_to_bf16(0.0f), float_to_bf16(-1e4f), float_to_bf16(-9000.0f)};
  const ta_tensor t = make(m.data(), TA_DTYPE_BF16, {3});
  KeyMask km;
  const char* why = nullptr;
  EXPECT_EQ(analyze_mask(t, 1, 1, 1, 3, &km, &why), TA_REASON_UNSUPPORTED_MASK);  // -9000 is graded
  m[2] = float_to_bf16(0.0f);
  ASSERT_EQ(analyze_mask(t, 1, 1, 1, 3, &km, nullptr), TA_REASON_NONE);
  EXPECT_TRUE(km.attends(0, 0));
  EXPECT_FALSE(km.attends(0, 1));
}

TEST(Mask, AllKeptIsTheEmptyMask) {
  std::vector<uint8_t> m(6, 1);
  const ta_tensor t = make(m.data(), TA_DTYPE_BOOL, {6});
  KeyMask km;
  ASSERT_EQ(analyze_mask(t, 1, 1, 1, 6, &km, nullptr), TA_REASON_NONE);
  EXPECT_TRUE(km.empty());
}

TEST(Mask, RefusesGradedBiasPerQueryVariationAndBadShapes) {
  const char* why = nullptr;
  std::vector<float> graded = {0.0f, -0.5f};
  EXPECT_EQ(analyze_mask(make(graded.data(), TA_DTYPE_F32, {2}), 1, 1, 1, 2, nullptr, &why),
            TA_REASON_UNSUPPORTED_MASK);
  EXPECT_NE(why, nullptr);
  std::vector<float> nan = {0.0f, std::nanf("")};
  EXPECT_EQ(analyze_mask(make(nan.data(), TA_DTYPE_F32, {2}), 1, 1, 1, 2, nullptr, &why), TA_REASON_UNSUPPORTED_MASK);
  // [1,1,Nq=2,Nk=2] differing between the two queries: not a key mask.
  std::vector<uint8_t> per_query = {1, 0, 0, 1};
  EXPECT_EQ(analyze_mask(make(per_query.data(), TA_DTYPE_BOOL, {1, 1, 2, 2}), 1, 1, 2, 2, nullptr, &why),
            TA_REASON_UNSUPPORTED_MASK);
  std::vector<uint8_t> wrong_nk = {1, 1, 1};
  EXPECT_EQ(analyze_mask(make(wrong_nk.data(), TA_DTYPE_BOOL, {3}), 1, 1, 1, 4, nullptr, &why),
            TA_REASON_UNSUPPORTED_MASK);
  std::vector<uint8_t> wrong_b(3 * 4, 1);
  EXPECT_EQ(analyze_mask(make(wrong_b.data(), TA_DTYPE_BOOL, {3, 4}), 2, 1, 1, 4, nullptr, &why),
            TA_REASON_UNSUPPORTED_MASK);
}

}  // namespace
}  // namespace ta
