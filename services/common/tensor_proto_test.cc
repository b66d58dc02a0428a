// MatrixToTensor's bf16 rounding (a vectorized loop) against FloatToBf16, value by value.
#include "services/common/tensor_proto.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

std::vector<uint16_t> Bits(const v1::Tensor& tensor) {
  std::vector<uint16_t> bits(tensor.data().size() / 2);
  std::memcpy(bits.data(), tensor.data().data(), tensor.data().size());
  return bits;
}

float FromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

TEST(MatrixToTensorTest, Bf16IsFloatToBf16OfEveryValue) {
  // Ties both ways, NaNs with payloads and signs, infinities, subnormals, the largest finite
  // values (which round to infinity), then random bit patterns; a count that is no multiple of
  // the conversion's block, so its tail is covered too.
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               -1.0f,
                               FromBits(0x3f808000u),
                               FromBits(0x3f818000u),
                               FromBits(0x3f808001u),
                               FromBits(0x3f807fffu),
                               FromBits(0x7fc00000u),
                               FromBits(0xffc00001u),
                               FromBits(0x7f800001u),
                               FromBits(0xff80ffffu),
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::lowest(),
                               std::numeric_limits<float>::denorm_min(),
                               FromBits(0x807fffffu)};
  std::mt19937 random(11);
  while (values.size() < 3 * 4096 + 17) values.push_back(FromBits(random()));
  const int64_t cols = 1;
  const v1::Tensor tensor =
      MatrixToTensor(values, std::ssize(values), cols, v1::Tensor::DTYPE_BF16);
  ASSERT_EQ(tensor.data().size(), 2 * values.size());
  const std::vector<uint16_t> bits = Bits(tensor);
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(bits[i], FloatToBf16(values[i])) << "value " << i;
  }
}

TEST(MatrixToTensorTest, F32IsTheValuesBytes) {
  const std::vector<float> values = {1.5f, -2.25f, FromBits(0x7fc00001u), 3.0f};
  const v1::Tensor tensor = MatrixToTensor(values, 2, 2);
  EXPECT_EQ(tensor.dtype(), v1::Tensor::DTYPE_F32);
  EXPECT_EQ(tensor.data(), std::string(reinterpret_cast<const char*>(values.data()),
                                       values.size() * sizeof(float)));
}

TEST(CheckMatrixTest, RefusesWhatAppendMatrixRefuses) {
  v1::Tensor tensor = MatrixToTensor(std::vector<float>(6, 1.0f), 2, 3);
  EXPECT_EQ(*CheckMatrix(tensor, 3, 2), 2);
  EXPECT_FALSE(CheckMatrix(tensor, 3, 1).ok());  // too many rows
  EXPECT_FALSE(CheckMatrix(tensor, 2, 4).ok());  // wrong width
  tensor.mutable_data()->pop_back();
  EXPECT_FALSE(CheckMatrix(tensor, 3, 2).ok());  // short bytes
}

}  // namespace
}  // namespace pixtral
