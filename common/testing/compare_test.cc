#include "common/testing/compare.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

TEST(RelativeErrorTest, IsTheL2NormOfTheDifferenceOverTheReference) {
  // ||(0, 3) - (0, 4)|| / ||(0, 4)|| = 1 / 4; ||(3, 4) - (0, 0)|| / ||(3, 4)|| = 1.
  EXPECT_DOUBLE_EQ(RelativeError(std::vector<float>{0, 3}, std::vector<float>{0, 4}), 0.25);
  EXPECT_DOUBLE_EQ(RelativeError(std::vector<float>{0, 0}, std::vector<float>{3, 4}), 1.0);
  EXPECT_EQ(RelativeError(std::vector<float>{1, 2}, std::vector<float>{1, 2}), 0.0);
}

TEST(RelativeErrorTest, DifferentSizesAreInfinitelyFar) {
  EXPECT_TRUE(std::isinf(RelativeError(std::vector<float>{1}, std::vector<float>{1, 2})));
  EXPECT_TRUE(std::isinf(RelativeError(std::vector<float>{}, std::vector<float>{1})));
}

TEST(MaxAbsDiffTest, IsTheLargestElementwiseDifference) {
  EXPECT_DOUBLE_EQ(MaxAbsDiff(std::vector<float>{1, -2, 3}, std::vector<float>{1.5, 1, 3}), 3.0);
  EXPECT_EQ(MaxAbsDiff(std::vector<float>{}, std::vector<float>{}), 0.0);
  EXPECT_TRUE(std::isinf(MaxAbsDiff(std::vector<float>{1}, std::vector<float>{})));
}

}  // namespace
}  // namespace pixtral
