#include "common/image_processing.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/imgcodecs.hpp"
#include "opencv2/imgproc.hpp"

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

// A deterministic picture of every byte value in each channel.
cv::Mat Gradient(int height, int width) {
  cv::Mat rgb(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      rgb.at<cv::Vec3b>(y, x) =
          cv::Vec3b((x * 7 + y * 13) % 256, (x * 31 + y) % 256, (x ^ y) % 256);
    }
  }
  return rgb;
}

// The float computation written out from mistral_common's steps, independent of the table.
std::vector<float> ByFormula(const cv::Mat& rgb, int out_height, int out_width) {
  const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
  const double std[3] = {0.26862954, 0.26130258, 0.27577711};
  cv::Mat as_float, resized;
  rgb.convertTo(as_float, CV_32F);
  cv::resize(as_float, resized, cv::Size(out_width, out_height), 0, 0, cv::INTER_CUBIC);
  std::vector<float> out(3 * out_height * out_width);
  for (int y = 0; y < out_height; ++y) {
    for (int x = 0; x < out_width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const float scaled = resized.at<cv::Vec3f>(y, x)[c] / 255.0f;
        out[(c * out_height + y) * out_width + x] = static_cast<float>((scaled - mean[c]) / std[c]);
      }
    }
  }
  return out;
}

TEST(ResizeAndNormalizeRgb8Test, SameSizeTableEqualsOpenCvAndTheFormula) {
  const cv::Mat rgb = Gradient(48, 64);
  absl::StatusOr<std::vector<float>> got =
      ResizeAndNormalizeRgb8(absl::Span<const uint8_t>(rgb.data, rgb.total() * 3), 48, 64, 48, 64);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, ByFormula(rgb, 48, 64));  // bit for bit
}

TEST(ResizeAndNormalizeRgb8Test, ResizedEqualsTheFormula) {
  const cv::Mat rgb = Gradient(45, 70);
  absl::StatusOr<std::vector<float>> got =
      ResizeAndNormalizeRgb8(absl::Span<const uint8_t>(rgb.data, rgb.total() * 3), 45, 70, 48, 80);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, ByFormula(rgb, 48, 80));
}

TEST(ResizeAndNormalizeRgb8Test, EveryValueOfEveryChannelEqualsTheFormula) {
  // 256 pixels, no resize: each channel takes all 256 values (in three different orders).
  std::vector<uint8_t> rgb;
  for (int i = 0; i < 256; ++i) {
    rgb.insert(rgb.end(), {static_cast<uint8_t>(i), static_cast<uint8_t>((i + 85) % 256),
                           static_cast<uint8_t>(255 - i)});
  }
  absl::StatusOr<std::vector<float>> got = ResizeAndNormalizeRgb8(rgb, 16, 16, 16, 16);
  ASSERT_TRUE(got.ok()) << got.status();
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ((*got)[0 * 256 + i], Normalized(i, 0)) << "R " << i;
    EXPECT_EQ((*got)[1 * 256 + i], Normalized((i + 85) % 256, 1)) << "G " << i;
    EXPECT_EQ((*got)[2 * 256 + i], Normalized(255 - i, 2)) << "B " << i;
  }
}

TEST(ResizeAndNormalizeRgb8Test, IntoWritesEveryValueOfTheVectorForm) {
  // Into a buffer of NaNs (which compare unequal to everything): each value must be written.
  for (const auto& [out_height, out_width] : std::vector<std::pair<int, int>>{{48, 64}, {48, 80}}) {
    const cv::Mat rgb = Gradient(48, 64);
    const absl::Span<const uint8_t> bytes(rgb.data, rgb.total() * 3);
    std::vector<float> into(size_t{3} * out_height * out_width, std::nanf(""));
    ASSERT_TRUE(
        ResizeAndNormalizeRgb8Into(bytes, 48, 64, out_height, out_width, absl::MakeSpan(into))
            .ok());
    EXPECT_EQ(into, *ResizeAndNormalizeRgb8(bytes, 48, 64, out_height, out_width))
        << out_width << "x" << out_height;
  }
}

TEST(ResizeAndNormalizeRgb8Test, IntoRefusesAnOutputOfTheWrongSize) {
  const std::vector<uint8_t> bytes(12, 0);
  std::vector<float> small(3 * 16 * 16 - 1);
  EXPECT_EQ(ResizeAndNormalizeRgb8Into(bytes, 2, 2, 16, 16, absl::MakeSpan(small)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ResizeAndNormalizeRgb8Test, RejectsSizesThatDoNotMatchTheBytes) {
  const std::vector<uint8_t> bytes(12, 0);
  EXPECT_EQ(ResizeAndNormalizeRgb8(bytes, 2, 2, 16, 16).status().code(), absl::StatusCode::kOk);
  EXPECT_EQ(ResizeAndNormalizeRgb8(bytes, 2, 3, 16, 16).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResizeAndNormalizeRgb8(bytes, 0, 2, 16, 16).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResizeAndNormalizeRgb8(bytes, 2, 2, 16, -16).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PixelFormTest, Rgb8IsKeptOnlyWhenNoLargerThanTheFloats) {
  const ImageEncoderConfig config{.patch_size = 16, .max_image_size = 64};
  // 64x64: no resize, 3 bytes a pixel against 12.
  absl::StatusOr<PreprocessedImage> same =
      PreprocessRgbImage(Gradient(64, 64), config, PixelForm::kRgb8IfSmaller);
  ASSERT_TRUE(same.ok());
  EXPECT_FALSE(same->normalized());
  EXPECT_TRUE(same->pixels.empty());
  EXPECT_EQ(same->rgb8.size(), size_t{64 * 64 * 3});
  EXPECT_EQ(same->source_height, 64);
  // 128x128 to 64x64: four times the pixels, as many bytes as the floats: still RGB.
  absl::StatusOr<PreprocessedImage> four =
      PreprocessRgbImage(Gradient(128, 128), config, PixelForm::kRgb8IfSmaller);
  ASSERT_TRUE(four.ok());
  EXPECT_FALSE(four->normalized());
  // 130x128: more bytes than the floats, so the floats.
  absl::StatusOr<PreprocessedImage> more =
      PreprocessRgbImage(Gradient(130, 128), config, PixelForm::kRgb8IfSmaller);
  ASSERT_TRUE(more.ok());
  EXPECT_TRUE(more->normalized());
  EXPECT_EQ(more->pixels.size(), size_t{3 * 64 * 64});
  // kF32 always normalizes.
  absl::StatusOr<PreprocessedImage> f32 = PreprocessRgbImage(Gradient(64, 64), config);
  ASSERT_TRUE(f32.ok());
  EXPECT_TRUE(f32->normalized());
}

TEST(PixelFormTest, NormalizeInPlaceGivesTheFloatsOfKF32) {
  const ImageEncoderConfig config{.patch_size = 16, .max_image_size = 64};
  for (const cv::Mat& rgb : {Gradient(64, 64), Gradient(100, 90), Gradient(20, 30)}) {
    absl::StatusOr<PreprocessedImage> f32 = PreprocessRgbImage(rgb, config);
    absl::StatusOr<PreprocessedImage> bytes =
        PreprocessRgbImage(rgb, config, PixelForm::kRgb8IfSmaller);
    ASSERT_TRUE(f32.ok() && bytes.ok());
    ASSERT_FALSE(bytes->normalized());
    ASSERT_TRUE(NormalizeInPlace(*bytes).ok());
    EXPECT_TRUE(bytes->normalized());
    EXPECT_TRUE(bytes->rgb8.empty());
    EXPECT_EQ(bytes->pixels, f32->pixels) << rgb.rows << "x" << rgb.cols;
  }
}

TEST(PixelFormTest, NonContiguousInputIsCopiedRowByRow) {
  const cv::Mat big = Gradient(64, 96);
  const cv::Mat view = big(cv::Rect(16, 0, 64, 64));  // rows 96 pixels apart
  ASSERT_FALSE(view.isContinuous());
  const ImageEncoderConfig config{.patch_size = 16, .max_image_size = 64};
  absl::StatusOr<PreprocessedImage> bytes =
      PreprocessRgbImage(view, config, PixelForm::kRgb8IfSmaller);
  absl::StatusOr<PreprocessedImage> f32 = PreprocessRgbImage(view.clone(), config);
  ASSERT_TRUE(bytes.ok() && f32.ok());
  ASSERT_TRUE(NormalizeInPlace(*bytes).ok());
  EXPECT_EQ(bytes->pixels, f32->pixels);
}

TEST(PreprocessImageTest, ReportsDecodeAndPreprocessTimes) {
  std::vector<uchar> png;
  ASSERT_TRUE(cv::imencode(".png", Gradient(200, 300), png));
  ImagePreprocessTimes times;
  absl::StatusOr<PreprocessedImage> image =
      PreprocessImage(std::string(png.begin(), png.end()), {}, {}, PixelForm::kF32, &times);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_GT(times.decode, absl::ZeroDuration());
  EXPECT_GT(times.preprocess, absl::ZeroDuration());
}

}  // namespace
}  // namespace pixtral
