#include "kernels/tensor.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral::kernels {
namespace {

using ::testing::ElementsAre;

TEST(TensorTest, RowsViewSharesMemory) {
  std::unique_ptr<Backend> cpu = NewCpuBackend();
  Tensor t = *ToBackend(*cpu, std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor mid = t.Rows(1, 2);
  EXPECT_EQ(mid.DebugString(), "F32[2, 2]");
  EXPECT_THAT(ToHost(*cpu, mid), ElementsAre(3, 4, 5, 6));
  mid.data<float>()[0] = 30;
  EXPECT_EQ(t.data<float>()[2], 30);
}

TEST(TensorTest, ReshapeKeepsElements) {
  std::unique_ptr<Backend> cpu = NewCpuBackend();
  Tensor t = *ToBackend(*cpu, std::vector<float>{1, 2, 3, 4, 5, 6}, {6});
  EXPECT_EQ(t.Reshape({3, 1, 2}).DebugString(), "F32[3, 1, 2]");
  EXPECT_THAT(ToHost(*cpu, t.Reshape({2, 3}).Rows(1, 1)), ElementsAre(4, 5, 6));
}

TEST(TensorTest, ToBackendRejectsAWrongElementCount) {
  std::unique_ptr<Backend> cpu = NewCpuBackend();
  EXPECT_FALSE(ToBackend(*cpu, std::vector<float>{1, 2, 3}, {2, 2}).ok());
}

}  // namespace
}  // namespace pixtral::kernels
