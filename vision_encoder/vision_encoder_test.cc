#include "vision_encoder/vision_encoder.h"

#include <memory>
#include <optional>
#include <vector>

#include "common/model_folder.h"
#include "common/testing/compare.h"
#include "common/testing/pixtral_tiny.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/weights.h"
#include "vision_encoder/testing/golden_images.h"

namespace pixtral {
namespace {

class VisionEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ModelFolder> folder = OpenModelFolder(kPixtralTinyDir);
    ASSERT_TRUE(folder.ok()) << folder.status();
    folder_ = std::make_shared<ModelFolder>(*std::move(folder));
    kernels::WeightLoader loader(*backend_, folder_->weights, folder_);
    absl::StatusOr<std::unique_ptr<VisionEncoder>> encoder = VisionEncoder::Create(
        backend_.get(), *folder_->config.vision, folder_->config.decoder.dim, loader);
    ASSERT_TRUE(encoder.ok()) << encoder.status();
    encoder_ = *std::move(encoder);
    absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_.emplace(*std::move(golden));
    golden_images_ = golden_->Images();
    ASSERT_EQ(golden_images_.size(), 2u);
    images_ = ImageViews(golden_images_);
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
  std::optional<PixtralTinyGolden> golden_;
  std::vector<GoldenImage> golden_images_;
  std::vector<Image> images_;  // views of golden_images_
};

TEST_F(VisionEncoderTest, TwoImagesMatchTheGoldenFeatures) {
  std::vector<float> want = golden_->Floats("image_features");
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
