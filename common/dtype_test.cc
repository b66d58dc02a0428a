#include "common/dtype.h"

#include <cmath>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

TEST(DTypeTest, NamesRoundTrip) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32, DType::kI64, DType::kI32,
                      DType::kU8}) {
    absl::StatusOr<DType> parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, dtype);
  }
}

TEST(DTypeTest, SizesMatchTheFormat) {
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kF16), 2);
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kI32), 4);
  EXPECT_EQ(DTypeSize(DType::kI64), 8);
  EXPECT_EQ(DTypeSize(DType::kU8), 1);
}

TEST(DTypeTest, UnknownNameIsAnError) {
  EXPECT_FALSE(ParseDType("F64").ok());
  EXPECT_FALSE(ParseDType("bf16").ok());  // the format is case-sensitive
  EXPECT_FALSE(ParseDType("").ok());
}

TEST(DTypeTest, Bf16WideningIsExact) {
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(Bf16ToFloat(0x3fab), 1.3359375f);
  EXPECT_TRUE(std::isinf(Bf16ToFloat(0x7f80)));
}

TEST(DTypeTest, Bf16NarrowingRoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // Just above halfway rounds up.
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  // Halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even.
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(NAN))));
}

TEST(DTypeTest, F16DecodesNormalsSubnormalsAndSpecials) {
  EXPECT_EQ(F16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(F16ToFloat(0x7c00)));
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
}

}  // namespace
}  // namespace pixtral
