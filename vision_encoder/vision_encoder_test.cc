#include "vision_encoder/vision_encoder.h"

#include <cmath>
#include <memory>
#include <vector>

#include "common/model_folder.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/weights.h"

namespace pixtral {
namespace {

constexpr char kModelDir[] = "tests/data/pixtral-tiny";

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  return std::sqrt(diff / norm);
}

class VisionEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ModelFolder> folder = OpenModelFolder(kModelDir);
    ASSERT_TRUE(folder.ok()) << folder.status();
    folder_ = std::make_shared<ModelFolder>(*std::move(folder));
    kernels::WeightLoader loader(*backend_, folder_->weights, folder_);
    absl::StatusOr<std::unique_ptr<VisionEncoder>> encoder = VisionEncoder::Create(
        backend_.get(), *folder_->config.vision, folder_->config.decoder.dim, loader);
    ASSERT_TRUE(encoder.ok()) << encoder.status();
    encoder_ = *std::move(encoder);
    auto golden = SafetensorsFile::Open(std::string(kModelDir) + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = *std::move(golden);
    for (const char* name : {"pixel_values_0", "pixel_values_1"}) {
      const TensorView* view = golden_->Find(name);
      ASSERT_NE(view, nullptr);
      pixels_.push_back(*ToFloat32(*view));
      images_.push_back({view->shape[1], view->shape[2], pixels_.back()});
    }
  }

  std::vector<float> EncodeAndAdapt(absl::Span<const Image> images) {
    absl::StatusOr<kernels::Tensor> features = encoder_->Encode(images);
    EXPECT_TRUE(features.ok()) << features.status();
    if (!features.ok()) return {};
    absl::StatusOr<kernels::Tensor> adapted = encoder_->Adapt(*features);
    EXPECT_TRUE(adapted.ok()) << adapted.status();
    return kernels::ToHost(*backend_, *adapted);
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::shared_ptr<ModelFolder> folder_;
  std::unique_ptr<VisionEncoder> encoder_;
  std::unique_ptr<SafetensorsFile> golden_;
  std::vector<std::vector<float>> pixels_;
  std::vector<Image> images_;
};

TEST_F(VisionEncoderTest, TwoImagesMatchTheGoldenFeatures) {
  std::vector<float> want = *ToFloat32(*golden_->Find("image_features"));
  std::vector<float> got = EncodeAndAdapt(images_);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(RelativeError(got, want), 1e-4);
}

TEST_F(VisionEncoderTest, ImagesInOneBatchDoNotSeeEachOther) {
  std::vector<float> both = EncodeAndAdapt(images_);
  std::vector<float> second = EncodeAndAdapt({images_[1]});
  const std::vector<float> tail(both.end() - second.size(), both.end());
  EXPECT_LE(RelativeError(tail, second), 1e-6);
}

TEST_F(VisionEncoderTest, CountsPatchesPerImage) {
  EXPECT_EQ(encoder_->NumPatches(images_[0]), 2 * 3);
  EXPECT_EQ(encoder_->NumPatches(images_[1]), 3 * 3);
}

TEST_F(VisionEncoderTest, RejectsSidesThatAreNotWholePatches) {
  Image bad = images_[0];
  bad.width -= 1;
  EXPECT_EQ(encoder_->Encode({bad}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(VisionEncoderTest, RejectsImagesLargerThanTheMaximum) {
  std::vector<float> big(3 * 1040 * 16, 0.0f);
  EXPECT_EQ(encoder_->Encode({Image{1040, 16, big}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(VisionEncoderTest, RejectsPixelCountsThatDisagreeWithTheSize) {
  Image bad = images_[0];
  bad.pixels = bad.pixels.subspan(1);
  EXPECT_EQ(encoder_->Encode({bad}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(EncodeAndAdapt(images_).empty());  // still usable
}

}  // namespace
}  // namespace pixtral
