// Image decoding of untrusted bytes (PNG, JPEG, WebP, GIF, BMP), with small limits so a fuzzer
// explores headers and bodies rather than allocating large frames.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/image_decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  const pixtral::ImageDecodeLimits limits{
      .max_pixels = 1 << 20, .max_side = 4096, .max_jpeg_scan_pixels = int64_t{1} << 24};
  (void)pixtral::ReadImageHeader(bytes);
  absl::StatusOr<cv::Mat> rgb = pixtral::DecodeImageToRgb(bytes, limits);
  if (rgb.ok() && (rgb->type() != CV_8UC3 || int64_t{rgb->rows} * rgb->cols > limits.max_pixels)) {
    __builtin_trap();  // a decoded image breaks the decoder's own contract
  }
  return 0;
}
