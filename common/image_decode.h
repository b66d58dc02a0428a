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
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
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

// Bytes shared by every image being decoded and preprocessed at once in this process (the
// gateway's concurrent requests). A decode reserves its worst case, from the header, before any
// pixel is decoded, and gives it back when the Reservation goes; when the budget is spent the
// image is refused with RESOURCE_EXHAUSTED instead of growing memory without bound. Thread-safe.
//
//   auto budget = std::make_shared<ImageMemoryBudget>(int64_t{2} << 30);
//   limits.memory_budget = budget;                 // every DecodeImageToRgb and PreprocessImage
class ImageMemoryBudget {
 public:
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation();

   private:
    friend class ImageMemoryBudget;
    ImageMemoryBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  explicit ImageMemoryBudget(int64_t bytes) : capacity_(bytes) {}

  // RESOURCE_EXHAUSTED when `bytes` do not fit beside what others hold now.
  absl::StatusOr<Reservation> Reserve(int64_t bytes);
  int64_t in_use() const;

 private:
  void Release(int64_t bytes);

  const int64_t capacity_;
  mutable absl::Mutex mutex_;
  int64_t in_use_ ABSL_GUARDED_BY(mutex_) = 0;
};

// What decoding and preprocessing an image of these dimensions may hold at their peak: the
// decoder's BGRA output, the RGB copy and the float32 copy that mistral_common's resize works
// on (19 bytes a pixel), plus the preprocessed result.
int64_t PeakImageBytes(int width, int height);

struct ImageDecodeLimits {
  // Encoded size. Fetched images have their own, usually smaller, cap (ImageFetcher::Options).
  int64_t max_encoded_bytes = int64_t{64} << 20;
  // Decoded size. Preprocessing holds a float32 copy of the whole image (12 bytes a pixel), so
  // the default (an 8K frame, 7680 x 4320, fits) bounds that copy to about 400 MB.
  int64_t max_pixels = int64_t{1} << 25;
  int max_side = 1 << 15;
  // A progressive JPEG is decoded once per scan: libjpeg's work grows with scans x pixels, and a
  // few hundred scans over a large frame cost many seconds of CPU. This caps scans x pixels (an
  // 8K photo's usual 10 scans are 330 million); beyond it RESOURCE_EXHAUSTED, before decoding.
  int64_t max_jpeg_scan_pixels = int64_t{1} << 30;
  // Shared across calls (see ImageMemoryBudget); null: no shared cap.
  std::shared_ptr<ImageMemoryBudget> memory_budget;
};

// Every check DecodeImageToRgb makes before it decodes a pixel (format, header, size limits, a
// JPEG's end marker and scans x pixels), without the memory budget; the header when they pass.
absl::StatusOr<ImageHeader> CheckImageBeforeDecoding(absl::string_view encoded_bytes,
                                                     const ImageDecodeLimits& limits);

// Decodes to CV_8UC3 in R, G, B order. Alpha is composited on white exactly as PIL's
// Image.paste does (integer blend with rounding), gray is replicated, 16-bit samples keep their
// high byte. InvalidArgument for empty, truncated, corrupt or unsupported data;
// ResourceExhausted when the header's dimensions exceed `limits`, a JPEG's scans x pixels exceed
// the decode budget, or the memory budget cannot hold the image now.
absl::StatusOr<cv::Mat> DecodeImageToRgb(absl::string_view encoded_bytes,
                                         const ImageDecodeLimits& limits = {});

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_IMAGE_DECODE_H_
