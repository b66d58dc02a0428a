// FeatureRows: bf16 rows stay the bytes that came, f32 rows stay f32, and rows of both dtypes
// end up as f32 with every value kept.
#include "services/gateway/feature_rows.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "services/common/tensor_proto.h"

namespace pixtral {
namespace {

constexpr int kWidth = 2;

v1::Tensor Bf16Tensor(const std::vector<uint16_t>& bits) {
  v1::Tensor tensor;
  tensor.set_dtype(v1::Tensor::DTYPE_BF16);
  tensor.add_shape(std::ssize(bits) / kWidth);
  tensor.add_shape(kWidth);
  tensor.set_data(reinterpret_cast<const char*>(bits.data()), 2 * bits.size());
  return tensor;
}

TEST(FeatureRowsTest, Bf16RowsGoOnAsTheBytesThatCame) {
  const v1::Tensor first = Bf16Tensor({0x3f80, 0x7fc1, 0x8001, 0xff80});
  const v1::Tensor second = Bf16Tensor({0x4000, 0x0000});
  FeatureRows rows;
  rows.Reserve(6);
  ASSERT_EQ(*rows.Append(first, kWidth, 3), 2);
  ASSERT_EQ(*rows.Append(second, kWidth, 1), 1);
  EXPECT_TRUE(rows.bf16());
  EXPECT_EQ(rows.size(), 6);
  const v1::Tensor all = rows.ToTensor(0, 3, kWidth);
  EXPECT_EQ(all.dtype(), v1::Tensor::DTYPE_BF16);
  EXPECT_EQ(all.data(), first.data() + second.data());
  EXPECT_EQ(rows.ToTensor(2, 1, kWidth).data(), second.data());
}

TEST(FeatureRowsTest, F32RowsGoOnAsMatrixToTensorExactSendsThem) {
  const std::vector<float> exact = {1.0f, 2.0f, -0.5f, 4.0f};
  const std::vector<float> inexact = {1.0f, 1.1f};
  FeatureRows rows(exact);
  EXPECT_FALSE(rows.bf16());
  EXPECT_EQ(rows.ToTensor(0, 2, kWidth).dtype(), v1::Tensor::DTYPE_BF16);
  ASSERT_EQ(*rows.Append(MatrixToTensor(inexact, 1, kWidth), kWidth, 1), 1);
  EXPECT_EQ(rows.ToTensor(0, 3, kWidth).dtype(), v1::Tensor::DTYPE_F32);
  EXPECT_EQ(rows.ToTensor(2, 1, kWidth).data(), MatrixToTensor(inexact, 1, kWidth).data());
}

TEST(FeatureRowsTest, MixedDtypesBecomeF32WithEveryValueKept) {
  FeatureRows rows;
  ASSERT_TRUE(rows.Append(Bf16Tensor({0x3f80, 0x4040}), kWidth, 1).ok());
  ASSERT_TRUE(
      rows.Append(MatrixToTensor(std::vector<float>{1.1f, 2.2f}, 1, kWidth), kWidth, 1).ok());
  FeatureRows more;
  ASSERT_TRUE(more.Append(Bf16Tensor({0xc000, 0x3f00}), kWidth, 1).ok());
  rows.Append(std::move(more));
  EXPECT_FALSE(rows.bf16());
  EXPECT_EQ(std::move(rows).ToF32(), (std::vector<float>{1.0f, 3.0f, 1.1f, 2.2f, -2.0f, 0.5f}));
}

TEST(FeatureRowsTest, RefusesWhatAppendMatrixRefuses) {
  FeatureRows rows;
  EXPECT_FALSE(rows.Append(Bf16Tensor({1, 2, 3, 4}), kWidth, 1).ok());  // two rows, one allowed
  v1::Tensor short_bytes = Bf16Tensor({1, 2});
  short_bytes.mutable_data()->pop_back();
  EXPECT_FALSE(rows.Append(short_bytes, kWidth, 1).ok());
  EXPECT_TRUE(rows.empty());
}

}  // namespace
}  // namespace pixtral
