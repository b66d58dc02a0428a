#include "kernels/weights.h"

#include <memory>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/testing/host_floats.h"

namespace pixtral::kernels {
namespace {

using ::testing::ElementsAre;

class WeightLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::TempDir() + "/weights.safetensors";
    const std::vector<uint16_t> bf16 = {FloatToBf16(1.5f), FloatToBf16(-2.0f)};
    const std::vector<uint16_t> f16 = {0x3c00, 0xc000};  // 1.0, -2.0
    const std::vector<float> f32 = {0.25f, 4.0f};
    const std::vector<int64_t> i64 = {7, 8};
    const std::vector<uint16_t> stacked = {FloatToBf16(3.0f), FloatToBf16(4.0f), FloatToBf16(5.0f),
                                           FloatToBf16(6.0f)};
    const std::vector<uint16_t> three = {FloatToBf16(1.0f), FloatToBf16(1.0f), FloatToBf16(1.0f)};
    const TensorToWrite tensors[] = {
        {{"a.bf16", DType::kBF16, {2}}, AsBytes(bf16)},
        {{"a.f16", DType::kF16, {1, 2}}, AsBytes(f16)},
        {{"a.f32", DType::kF32, {2, 1}}, AsBytes(f32)},
        {{"a.i64", DType::kI64, {2}}, AsBytes(i64)},
        {{"m.one", DType::kBF16, {1, 2}}, AsBytes(bf16)},
        {{"m.two", DType::kBF16, {2, 2}}, AsBytes(stacked)},
        {{"m.three", DType::kBF16, {1, 3}}, AsBytes(three)},
    };
    ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
    auto checkpoint = SafetensorsCheckpoint::Open({path});
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = std::make_shared<SafetensorsCheckpoint>(*std::move(checkpoint));
  }

  std::unique_ptr<Backend> backend_ = NewCpuBackend();
  std::shared_ptr<SafetensorsCheckpoint> checkpoint_;
};

TEST_F(WeightLoaderTest, KeepsBf16AndF32AndTheirShapes) {
  WeightLoader loader(*backend_, *checkpoint_, checkpoint_);
  absl::StatusOr<Tensor> bf16 = loader.Get("a.bf16");
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->DebugString(), "BF16[2]");
  EXPECT_THAT(HostFloats(*bf16), ElementsAre(1.5f, -2.0f));
  absl::StatusOr<Tensor> f32 = loader.Get("a.f32");
  ASSERT_TRUE(f32.ok()) << f32.status();
  EXPECT_EQ(f32->DebugString(), "F32[2, 1]");
  EXPECT_THAT(HostFloats(*f32), ElementsAre(0.25f, 4.0f));
}

TEST_F(WeightLoaderTest, WidensF16ToF32) {
  WeightLoader loader(*backend_, *checkpoint_, checkpoint_);
  absl::StatusOr<Tensor> t = loader.Get("a.f16");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->DebugString(), "F32[1, 2]");
  EXPECT_THAT(HostFloats(*t), ElementsAre(1.0f, -2.0f));
}

TEST_F(WeightLoaderTest, MissingAndIntegerTensorsAreErrors) {
  WeightLoader loader(*backend_, *checkpoint_, checkpoint_);
  EXPECT_EQ(loader.Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(loader.Get("a.i64").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WeightLoaderTest, StacksMatricesByRowsInOrder) {
  WeightLoader loader(*backend_, *checkpoint_, checkpoint_);
  absl::StatusOr<Tensor> t = loader.GetStacked({"m.two", "m.one"});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->DebugString(), "BF16[3, 2]");
  EXPECT_THAT(HostFloats(*t), ElementsAre(3.0f, 4.0f, 5.0f, 6.0f, 1.5f, -2.0f));
  // Column counts and dtypes must agree; every name must exist.
  EXPECT_EQ(loader.GetStacked({"m.one", "m.three"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loader.GetStacked({"m.one", "a.f16"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loader.GetStacked({"m.one", "nope"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(loader.GetStacked({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WeightLoaderTest, LoadedTensorsOutliveTheLoadersReference) {
  Tensor t;
  {
    WeightLoader loader(*backend_, *checkpoint_, checkpoint_);
    t = *loader.Get("a.bf16");
  }
  checkpoint_.reset();  // the tensor's buffer still owns the mapping
  EXPECT_THAT(HostFloats(t), ElementsAre(1.5f, -2.0f));
}

}  // namespace
}  // namespace pixtral::kernels
