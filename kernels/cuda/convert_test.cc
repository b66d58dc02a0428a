// The conversion kernels against common/dtype.h's host conversions, bit for bit. Runs on a GPU
// machine; where no GPU is visible (CI) the tests are skipped, not passed.
#include "kernels/cuda/convert.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"

namespace pixtral::cuda {
namespace {

class ConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      GTEST_SKIP() << "no CUDA device";
    }
  }
};

// Values that exercise rounding: random normals, ties, subnormals, infinities, NaN.
std::vector<float> TrickyFloats(size_t n) {
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  const float specials[] = {0.0f,
                            -0.0f,
                            1.0f + std::ldexp(1.0f, -8),
                            1.0f + 3 * std::ldexp(1.0f, -8),
                            std::numeric_limits<float>::denorm_min(),
                            1e-40f,
                            3.4e38f,
                            INFINITY,
                            -INFINITY};
  for (size_t i = 0; i < std::size(specials) && i < n; ++i) values[i] = specials[i];
  return values;
}

TEST_F(ConvertTest, F32ToBf16MatchesHostRoundingAndBack) {
  const size_t n = (1 << 20) + 7;  // not a multiple of the block size
  const std::vector<float> host = TrickyFloats(n);
  float* d_f32 = nullptr;
  uint16_t* d_bf16 = nullptr;
  float* d_back = nullptr;
  ASSERT_EQ(cudaMalloc(&d_f32, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_bf16, n * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_back, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_f32, host.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(LaunchF32ToBf16({d_f32, d_bf16, static_cast<int64_t>(n)}, nullptr), cudaSuccess);
  ASSERT_EQ(LaunchBf16ToF32({d_bf16, d_back, static_cast<int64_t>(n)}, nullptr), cudaSuccess);
  std::vector<uint16_t> bf16(n);
  std::vector<float> back(n);
  ASSERT_EQ(cudaMemcpy(bf16.data(), d_bf16, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(back.data(), d_back, n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  int mismatches = 0;
  for (size_t i = 0; i < n; ++i) {
    mismatches += bf16[i] != FloatToBf16(host[i]);
    const float want = Bf16ToFloat(bf16[i]);
    mismatches += std::memcmp(&back[i], &want, 4) != 0;
  }
  EXPECT_EQ(mismatches, 0);
  cudaFree(d_f32);
  cudaFree(d_bf16);
  cudaFree(d_back);
}

TEST_F(ConvertTest, NegativeCountIsAnErrorAndZeroIsANoOp) {
  EXPECT_EQ(LaunchBf16ToF32({nullptr, nullptr, -1}, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchF32ToBf16({nullptr, nullptr, 0}, nullptr), cudaSuccess);
}

}  // namespace
}  // namespace pixtral::cuda
