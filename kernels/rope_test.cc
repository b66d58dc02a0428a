#include "kernels/rope.h"

#include <cmath>

#include "gtest/gtest.h"

namespace pixtral::kernels {
namespace {

// (cos, sin) of table entry [token, pair].
std::pair<float, float> At(const std::vector<float>& table, int head_dim, int token, int pair) {
  const int i = (token * head_dim / 2 + pair) * 2;
  return {table[i], table[i + 1]};
}

TEST(RopeTable1DTest, AnglesArePositionTimesFrequency) {
  const int d = 8;
  std::vector<float> table = RopeTable1D({0, 3}, d, 10000.0);
  ASSERT_EQ(table.size(), 2u * d);
  for (int i = 0; i < d / 2; ++i) {
    EXPECT_FLOAT_EQ(At(table, d, 0, i).first, 1.0f);
    EXPECT_FLOAT_EQ(At(table, d, 0, i).second, 0.0f);
    const double angle = 3.0 * std::pow(10000.0, -2.0 * i / d);
    EXPECT_NEAR(At(table, d, 1, i).first, std::cos(angle), 1e-6);
    EXPECT_NEAR(At(table, d, 1, i).second, std::sin(angle), 1e-6);
  }
}

TEST(RopeTable2DTest, RowsUseEvenFrequenciesColumnsOdd) {
  const int d = 16;  // 8 pairs: 4 for the row, 4 for the column
  const double theta = 100.0;
  std::vector<float> table = RopeTable2D({2}, {5}, d, theta);
  auto f = [&](int i) { return std::pow(theta, -2.0 * i / d); };
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(At(table, d, 0, i).second, std::sin(2 * f(2 * i)), 1e-6) << i;
    EXPECT_NEAR(At(table, d, 0, 4 + i).second, std::sin(5 * f(2 * i + 1)), 1e-6) << i;
  }
}

}  // namespace
}  // namespace pixtral::kernels
