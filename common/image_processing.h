// Turning an image into what Pixtral's vision encoder eats, exactly as mistral_common's
// ImageEncoder does: a grid of patch tokens sized so the longer side fits max_image_size, and the
// RGB pixels resized to that grid (OpenCV bicubic on float32), scaled to [0, 1], normalized with
// the CLIP mean and standard deviation, laid out channel-major.
//
//   ImageEncoderConfig config;  // patch 16, max 1024: Pixtral-12B's tekken.json "image" section
//   absl::StatusOr<PreprocessedImage> image = PreprocessImage(png_bytes, config);
//   if (!image.ok()) return image.status();
//   // image->pixels: 3 * height * width floats; image->grid: rows x cols of [IMG] tokens.
//
// The steps are available on their own: DecodeImageToRgb (image_decode.h), then
// PreprocessRgbImage on the decoded cv::Mat.
#ifndef PIXTRAL_COMMON_IMAGE_PROCESSING_H_
#define PIXTRAL_COMMON_IMAGE_PROCESSING_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/image_decode.h"
#include "opencv2/core.hpp"

namespace pixtral {

// The "image" section of tekken.json.
struct ImageEncoderConfig {
  int patch_size = 16;
  int max_image_size = 1024;
  int spatial_merge_size = 1;
};

// Every field positive and small enough that no size computed from it overflows.
absl::Status ValidateImageEncoderConfig(const ImageEncoderConfig& config);

// The image's tokens: `rows` lines of `cols` [IMG] tokens (each line but the last followed by
// [IMG_BREAK], the last by [IMG_END]). Each token covers a square of
// patch_size * spatial_merge_size pixels.
struct ImageTokenGrid {
  int rows;
  int cols;
};

// mistral_common's ImageEncoder._image_to_num_tokens: if the longer side exceeds
// max_image_size, scale both sides by the same ratio (rounding half to even, as Python's round
// does), then round each side up to whole tokens. An image so thin that a side rounds to zero
// pixels gets zero rows or columns (mistral_common fails an assertion there); so does
// non-positive input or a config that ValidateImageEncoderConfig rejects.
ImageTokenGrid ComputeImageTokenGrid(int height, int width, const ImageEncoderConfig& config);

// The model's input for one image.
struct PreprocessedImage {
  int height;  // grid.rows * patch_size * spatial_merge_size
  int width;   // grid.cols * patch_size * spatial_merge_size
  ImageTokenGrid grid;
  std::vector<float> pixels;  // [3][height][width], R, G, B planes
};

// Resizes and normalizes a decoded CV_8UC3 RGB image (as DecodeImageToRgb returns).
// InvalidArgument for another type, an invalid config, or an image whose grid is empty.
absl::StatusOr<PreprocessedImage> PreprocessRgbImage(const cv::Mat& rgb,
                                                     const ImageEncoderConfig& config);

// DecodeImageToRgb, then PreprocessRgbImage.
absl::StatusOr<PreprocessedImage> PreprocessImage(absl::string_view encoded_bytes,
                                                  const ImageEncoderConfig& config,
                                                  const ImageDecodeLimits& limits = {});

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_IMAGE_PROCESSING_H_
