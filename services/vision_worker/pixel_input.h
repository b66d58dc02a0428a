// The images of an EncodeRequest as the encoder eats them: every size and byte count of the
// untrusted request checked before a byte is read, 8-bit RGB images resized and normalized here
// (exactly as mistral_common does: common/image_processing.h), float images borrowed in place.
//
//   absl::StatusOr<ReceivedImages> images = ReadImages(*request, limits);
//   if (!images.ok()) return ToGrpcStatus(images.status());  // INVALID_ARGUMENT, naming the image
//   batcher.Encode(images->views);
#ifndef PIXTRAL_SERVICES_VISION_WORKER_PIXEL_INPUT_H_
#define PIXTRAL_SERVICES_VISION_WORKER_PIXEL_INPUT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/vision_worker.pb.h"
#include "vision_encoder/vision_encoder.h"

namespace pixtral {

struct PixelLimits {
  int num_channels = 3;
  int patch_size = 16;
  // Largest side of an image the encoder takes (params.json's vision_encoder.image_size).
  int max_image_size = 1024;
  int max_images_per_request = 16;
};

// An 8-bit RGB image may have at most this many times the pixels of its target: the gateway
// sends one only when its bytes are no more than the floats' (common/image_processing.h's
// kRgb8IfSmaller), so this bounds the work and memory a request can ask for.
inline constexpr int64_t kMaxSourcePixelsPerTargetPixel = 4;

struct ReceivedImages {
  std::vector<Image> views;  // one per image, in order; into the request or `normalized`
  // The pixels of images that came as 8-bit RGB: never zeroed, every value written once
  // (ResizeAndNormalizeRgb8Into).
  std::vector<std::unique_ptr<float[]>> normalized;
  int64_t total_patches = 0;
  int rgb8_images = 0;
  absl::Duration normalize_time;  // resizing and normalizing those
};

// INVALID_ARGUMENT (naming the image) for a request that fills both `images` and `inputs`, or
// neither, has too many images, or an image whose dtype, shape, sizes or byte count are wrong.
// The views borrow `request`, which must outlive them.
absl::StatusOr<ReceivedImages> ReadImages(const v1::EncodeRequest& request,
                                          const PixelLimits& limits);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_VISION_WORKER_PIXEL_INPUT_H_
