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
//
// The resize and normalization can also run elsewhere (the vision worker): with
// PixelForm::kRgb8IfSmaller the result keeps the decoded 8-bit RGB image instead of the floats
// when those bytes are fewer (4x fewer for an image that needs no resize), and
// ResizeAndNormalizeRgb8 computes exactly the floats PreprocessRgbImage would have (it is the
// function PreprocessRgbImage itself calls).
#ifndef PIXTRAL_COMMON_IMAGE_PROCESSING_H_
#define PIXTRAL_COMMON_IMAGE_PROCESSING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
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
  // Only with PixelForm::kRgb8IfSmaller, when chosen: the decoded image before resizing,
  // [source_height][source_width][3] bytes, R, G, B; `pixels` is then empty and
  // ResizeAndNormalizeRgb8(rgb8, source_height, source_width, height, width) gives it.
  std::vector<uint8_t> rgb8;
  int source_height = 0;
  int source_width = 0;

  bool normalized() const { return rgb8.empty(); }
};

// What a preprocessed image carries.
enum class PixelForm {
  // The normalized float32 planes (what the vision encoder eats): 12 bytes per output pixel.
  kF32,
  // The decoded 8-bit RGB before resizing when it is no larger than the floats (3 bytes per
  // source pixel against 12 per output pixel: any image that is not shrunk by more than half
  // its area), else the floats. What the gateway sends to a vision worker.
  kRgb8IfSmaller,
};

// Where the time of one image went (wall clock, this thread).
struct ImagePreprocessTimes {
  absl::Duration decode;      // encoded bytes to 8-bit RGB
  absl::Duration preprocess;  // resize and normalization (zero when kept as 8-bit RGB)
};

// Resizes and normalizes a decoded CV_8UC3 RGB image (as DecodeImageToRgb returns).
// InvalidArgument for another type, an invalid config, or an image whose grid is empty.
absl::StatusOr<PreprocessedImage> PreprocessRgbImage(const cv::Mat& rgb,
                                                     const ImageEncoderConfig& config,
                                                     PixelForm form = PixelForm::kF32);

// DecodeImageToRgb, then PreprocessRgbImage. `times` (may be null) gets the two steps' times.
absl::StatusOr<PreprocessedImage> PreprocessImage(absl::string_view encoded_bytes,
                                                  const ImageEncoderConfig& config,
                                                  const ImageDecodeLimits& limits = {},
                                                  PixelForm form = PixelForm::kF32,
                                                  ImagePreprocessTimes* times = nullptr);

// mistral_common's resize and normalization of 8-bit RGB `rgb` ([height][width][3], R, G, B):
// cv2.resize of the float32 image to out_width x out_height (bicubic; skipped when the size is
// already right, as OpenCV itself does), x / 255 in float32, (x - mean) / std in float64 rounded
// once to float32. Returns [3][out_height][out_width]. InvalidArgument unless every size is
// positive and `rgb` holds exactly height * width * 3 bytes; callers bound the sizes.
absl::StatusOr<std::vector<float>> ResizeAndNormalizeRgb8(absl::Span<const uint8_t> rgb, int height,
                                                          int width, int out_height, int out_width);

// The same into `out`, which must hold 3 * out_height * out_width floats (InvalidArgument
// otherwise); every one of them is written, so `out` may be uninitialized memory. A std::vector's
// zeroing of fresh pages, on one thread, was most of the vision worker's normalize time (4.5 of
// 5.6 ms for a 1024x1024 image on two dev cores, bench/vision_cpu_bench.cc); here the parallel
// rows touch the pages first.
absl::Status ResizeAndNormalizeRgb8Into(absl::Span<const uint8_t> rgb, int height, int width,
                                        int out_height, int out_width, absl::Span<float> out);

// A kRgb8IfSmaller image turned into the kF32 one (its pixels computed, rgb8 dropped); an image
// already normalized is left as it is.
absl::Status NormalizeInPlace(PreprocessedImage& image);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_IMAGE_PROCESSING_H_
