#include "kernels/weight_shards.h"

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
using ::testing::HasSubstr;

class LoadSlicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::TempDir() + "/shards.safetensors";
    std::vector<float> m(12);  // [3, 4]: element (r, c) = 10 r + c
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 4; ++c) m[r * 4 + c] = 10 * r + c;
    }
    std::vector<uint16_t> n(8);  // bf16 [2, 4]: 100 + 10 r + c
    for (int i = 0; i < 8; ++i) n[i] = FloatToBf16(100 + 10 * (i / 4) + i % 4);
    const std::vector<uint16_t> h = {0x3c00, 0x4000, 0x4200, 0x4400};  // f16 [2, 2]: 1 2 3 4
    const std::vector<float> v = {1, 2, 3};
    const TensorToWrite tensors[] = {
        {{"m", DType::kF32, {3, 4}}, AsBytes(m)},
        {{"n", DType::kBF16, {2, 4}}, AsBytes(n)},
        {{"h", DType::kF16, {2, 2}}, AsBytes(h)},
        {{"v", DType::kF32, {3}}, AsBytes(v)},
    };
    ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
    auto checkpoint = SafetensorsCheckpoint::Open({path});
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = std::make_shared<SafetensorsCheckpoint>(*std::move(checkpoint));
  }

  absl::StatusOr<Tensor> Load(std::vector<MatrixSlice> slices) {
    return LoadSlices(*backend_, *checkpoint_, checkpoint_, slices);
  }

  std::unique_ptr<Backend> backend_ = NewCpuBackend();
  std::shared_ptr<SafetensorsCheckpoint> checkpoint_;
};

TEST_F(LoadSlicesTest, ARowRangeIsTheMappedBytesInPlace) {
  absl::StatusOr<Tensor> t = Load({{.name = "m", .row_begin = 1, .rows = 2}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->DebugString(), "F32[2, 4]");
  EXPECT_THAT(HostFloats(*t), ElementsAre(10, 11, 12, 13, 20, 21, 22, 23));
  const uint8_t* mapped = checkpoint_->Find("m")->bytes.data();
  EXPECT_EQ(t->data<uint8_t>(), mapped + 4 * sizeof(float));  // no copy on the CPU backend
}

TEST_F(LoadSlicesTest, AColumnRangeOfEveryRow) {
  absl::StatusOr<Tensor> t = Load({{.name = "m", .col_begin = 1, .cols = 2}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->DebugString(), "F32[3, 2]");
  EXPECT_THAT(HostFloats(*t), ElementsAre(1, 2, 11, 12, 21, 22));
}

TEST_F(LoadSlicesTest, SlicesOfSeveralTensorsStackByRows) {
  absl::StatusOr<Tensor> t = Load({{.name = "n", .row_begin = 1, .rows = 1, .col_begin = 2},
                                   {.name = "n", .rows = 1, .col_begin = 2, .cols = 2}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->DebugString(), "BF16[2, 2]");
  EXPECT_THAT(HostFloats(*t), ElementsAre(112, 113, 102, 103));
}

TEST_F(LoadSlicesTest, F16IsWidenedAndOneDimensionalTensorsSliceByRows) {
  absl::StatusOr<Tensor> h = Load({{.name = "h", .col_begin = 1}});
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->DebugString(), "F32[2, 1]");
  EXPECT_THAT(HostFloats(*h), ElementsAre(2, 4));
  absl::StatusOr<Tensor> v = Load({{.name = "v", .row_begin = 1}});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->DebugString(), "F32[2]");
  EXPECT_THAT(HostFloats(*v), ElementsAre(2, 3));
}

TEST_F(LoadSlicesTest, BadSlicesAreErrors) {
  EXPECT_EQ(Load({{.name = "nope"}}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Load({{.name = "m", .row_begin = 2, .rows = 2}}).status().message(),
              HasSubstr("outside its shape"));
  EXPECT_THAT(Load({{.name = "m", .col_begin = 3, .cols = 2}}).status().message(),
              HasSubstr("outside its shape"));
  EXPECT_THAT(Load({{.name = "v", .col_begin = 1}}).status().message(), HasSubstr("1-D"));
  EXPECT_THAT(Load({{.name = "m"}, {.name = "n"}}).status().message(), HasSubstr("cannot stack"));
  EXPECT_FALSE(Load({}).ok());
}

}  // namespace
}  // namespace pixtral::kernels
