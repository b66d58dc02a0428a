// Decoding untrusted encoded images (PNG, JPEG, WebP, GIF, BMP) into 8-bit RGB, the way
// mistral_common sees them through PIL: alpha composited on white, no EXIF rotation, GIFs by their
// first frame.
//
// The image's dimensions are read from its header and checked against the limits before any
// pixel is decoded, so a small file that claims to be 100000 x 100000 pixels (a decompression
// bomb) costs nothing. Formats outside the five above are refused rather than handed to one of
// OpenCV's less-travelled decoders.
//
//   absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(bytes);  // CV_8UC3, R,G,B order
//   if (!rgb.ok()) return rgb.status();                     // InvalidArgument / ResourceExhausted
//
// Where this differs from PIL: animated WebP is refused (OpenCV 4.6 cannot decode it); the tRNS
// color key of a gray PNG under 8 bits deep is ignored; 16-bit gray keeps its high byte (PIL clips
// it to 255); CMYK JPEGs go through libjpeg's conversion, not PIL's. Truncated files are errors, as
// they are for PIL by default.
#ifndef PIXTRAL_COMMON_IMAGE_DECODE_H_
#define PIXTRAL_COMMON_IMAGE_DECODE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "opencv2/core.hpp"

namespace pixtral {

enum class ImageFormat { kPng, kJpeg, kWebp, kGif, kBmp };

// "PNG", "JPEG", "WebP", "GIF", "BMP".
absl::string_view ImageFormatName(ImageFormat format);

// What the header of an encoded image says, before any pixel is decoded.
struct ImageHeader {
  ImageFormat format;
  int width;
  int height;
};

// Identifies the format by its magic bytes and reads the dimensions from the header.
// InvalidArgument for anything that is not a well-formed header of a supported format.
absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view encoded_bytes);

struct ImageDecodeLimits {
  // Encoded size. Fetched images have their own, usually smaller, cap (ImageFetcher::Options).
  int64_t max_encoded_bytes = int64_t{64} << 20;
  // Decoded size. Preprocessing holds a float32 copy of the whole image (12 bytes a pixel), so
  // the default (an 8K frame, 7680 x 4320, fits) bounds that copy to about 400 MB.
  int64_t max_pixels = int64_t{1} << 25;
  int max_side = 1 << 15;
};

// Decodes to CV_8UC3 in R, G, B order. Alpha is composited on white exactly as PIL's
// Image.paste does (integer blend with rounding), gray is replicated, 16-bit samples keep their
// high byte. InvalidArgument for empty, truncated, corrupt or unsupported data;
// ResourceExhausted when the header's dimensions exceed `limits`.
absl::StatusOr<cv::Mat> DecodeImageToRgb(absl::string_view encoded_bytes,
                                         const ImageDecodeLimits& limits = {});

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_IMAGE_DECODE_H_
