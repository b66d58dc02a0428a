#include "common/image_processing.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/imgcodecs.hpp"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

void ExpectGrid(int height, int width, const ImageEncoderConfig& config, int rows, int cols) {
  const ImageTokenGrid grid = ComputeImageTokenGrid(height, width, config);
  EXPECT_EQ(grid.rows, rows) << height << "x" << width;
  EXPECT_EQ(grid.cols, cols) << height << "x" << width;
}

TEST(ComputeImageTokenGridTest, MatchesMistralCommonOnTheGoldenPhotos) {
  // width_tokens / height_tokens from pixtral-tiny's golden.json.
  ExpectGrid(300, 451, {.max_image_size = 1024}, 19, 29);  // chelsea
  ExpectGrid(300, 451, {.max_image_size = 256}, 11, 16);
  ExpectGrid(400, 600, {.max_image_size = 1024}, 25, 38);    // coffee
  ExpectGrid(512, 512, {.max_image_size = 256}, 16, 16);     // astronaut
  ExpectGrid(1366, 2048, {.max_image_size = 1024}, 43, 64);  // coffee_big.jpg
}

TEST(ComputeImageTokenGridTest, SmallImagesRoundUpToWholePatches) {
  ExpectGrid(1, 1, {}, 1, 1);
  ExpectGrid(16, 16, {}, 1, 1);
  ExpectGrid(17, 32, {}, 2, 2);
  ExpectGrid(1024, 1024, {}, 64, 64);
}

TEST(ComputeImageTokenGridTest, ScalingRoundsHalfToEvenAsPython) {
  // 2048x1025 halves to 1024x512.5; Python's round gives 512 (32 rows), not 513 (33 rows).
  ExpectGrid(1025, 2048, {}, 32, 64);
  // 2048x1027 halves to 513.5, which rounds to 514 (33 rows).
  ExpectGrid(1027, 2048, {}, 33, 64);
}

TEST(ComputeImageTokenGridTest, SpatialMergeWidensTheTokens) {
  ExpectGrid(100, 65, {.patch_size = 16, .spatial_merge_size = 2}, 4, 3);
}

TEST(ComputeImageTokenGridTest, DegenerateInputGivesAnEmptyGrid) {
  ExpectGrid(100000, 1, {}, 1024 / 16, 0);  // the width scales to 0.01 and rounds to zero
  ExpectGrid(0, 10, {}, 0, 0);
  ExpectGrid(10, 10, {.patch_size = 0}, 0, 0);
}

TEST(ValidateImageEncoderConfigTest, RejectsNonPositiveAndHugeValues) {
  EXPECT_TRUE(ValidateImageEncoderConfig({}).ok());
  EXPECT_FALSE(ValidateImageEncoderConfig({.patch_size = 0}).ok());
  EXPECT_FALSE(ValidateImageEncoderConfig({.max_image_size = -1}).ok());
  EXPECT_FALSE(ValidateImageEncoderConfig({.spatial_merge_size = 0}).ok());
  EXPECT_FALSE(ValidateImageEncoderConfig({.max_image_size = 1 << 20}).ok());
  EXPECT_FALSE(
      ValidateImageEncoderConfig({.patch_size = 1 << 10, .spatial_merge_size = 1 << 10}).ok());
}

// mistral_common's normalize(): x / 255 in float32, then (x - mean) / std in float64.
float Normalized(int value, int channel) {
  constexpr double kMean[3] = {0.48145466, 0.4578275, 0.40821073};
  constexpr double kStd[3] = {0.26862954, 0.26130258, 0.27577711};
  return static_cast<float>((static_cast<float>(value) / 255.0f - kMean[channel]) / kStd[channel]);
}

TEST(PreprocessRgbImageTest, ExactSizeIsNormalizedChannelMajor) {
  // 32x16 already fits the grid, so there is no resampling: every value is checkable.
  cv::Mat rgb(16, 32, CV_8UC3);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 32; ++x) rgb.at<cv::Vec3b>(y, x) = cv::Vec3b(x * 8, y * 16, 255 - x);
  }
  absl::StatusOr<PreprocessedImage> image = PreprocessRgbImage(rgb, {});
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->height, 16);
  EXPECT_EQ(image->width, 32);
  EXPECT_EQ(image->grid.rows, 1);
  EXPECT_EQ(image->grid.cols, 2);
  ASSERT_EQ(image->pixels.size(), 3u * 16 * 32);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 32; ++x) {
      EXPECT_EQ(image->pixels[0 * 512 + y * 32 + x], Normalized(x * 8, 0));
      EXPECT_EQ(image->pixels[1 * 512 + y * 32 + x], Normalized(y * 16, 1));
      EXPECT_EQ(image->pixels[2 * 512 + y * 32 + x], Normalized(255 - x, 2));
    }
  }
}

TEST(PreprocessRgbImageTest, SolidColorStaysSolidThroughTheResize) {
  const cv::Mat rgb(30, 50, CV_8UC3, cv::Scalar(10, 128, 250));
  absl::StatusOr<PreprocessedImage> image = PreprocessRgbImage(rgb, {});
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->height, 32);
  EXPECT_EQ(image->width, 64);
  const size_t plane = 32 * 64;
  for (size_t i = 0; i < plane; ++i) {
    ASSERT_NEAR(image->pixels[i], Normalized(10, 0), 1e-5);
    ASSERT_NEAR(image->pixels[plane + i], Normalized(128, 1), 1e-5);
    ASSERT_NEAR(image->pixels[2 * plane + i], Normalized(250, 2), 1e-5);
  }
}

TEST(PreprocessRgbImageTest, LargeImagesAreScaledDown) {
  const cv::Mat rgb(600, 2000, CV_8UC3, cv::Scalar(1, 2, 3));
  absl::StatusOr<PreprocessedImage> image = PreprocessRgbImage(rgb, {.max_image_size = 512});
  ASSERT_TRUE(image.ok()) << image.status();
  // 2000x600 scales to 512x153.6 -> 154 rows of pixels -> 10 token rows.
  EXPECT_EQ(image->grid.rows, 10);
  EXPECT_EQ(image->grid.cols, 32);
  EXPECT_EQ(image->height, 160);
  EXPECT_EQ(image->width, 512);
  EXPECT_EQ(image->pixels.size(), 3u * 160 * 512);
}

TEST(PreprocessRgbImageTest, RejectsWrongInput) {
  EXPECT_EQ(PreprocessRgbImage(cv::Mat(), {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PreprocessRgbImage(cv::Mat(4, 4, CV_8UC4), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PreprocessRgbImage(cv::Mat(4, 4, CV_8UC3), {.patch_size = -3}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status thin =
      PreprocessRgbImage(cv::Mat(1, 5000, CV_8UC3), {.max_image_size = 64}).status();
  EXPECT_EQ(thin.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(thin.message(), HasSubstr("too thin"));
}

TEST(PreprocessImageTest, DecodesThenPreprocesses) {
  cv::Mat bgr(16, 16, CV_8UC3, cv::Scalar(30, 20, 10));  // R=10, G=20, B=30
  std::vector<uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", bgr, png));
  absl::StatusOr<PreprocessedImage> image =
      PreprocessImage(std::string(png.begin(), png.end()), {});
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->pixels[0], Normalized(10, 0));
  EXPECT_EQ(image->pixels[256], Normalized(20, 1));
  EXPECT_EQ(image->pixels[512], Normalized(30, 2));

  EXPECT_EQ(PreprocessImage("not an image", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pixtral
