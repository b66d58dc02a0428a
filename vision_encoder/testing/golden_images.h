// The pixtral-tiny golden images as the vision encoder takes them, for tests.
#ifndef PIXTRAL_VISION_ENCODER_TESTING_GOLDEN_IMAGES_H_
#define PIXTRAL_VISION_ENCODER_TESTING_GOLDEN_IMAGES_H_

#include <vector>

#include "common/testing/pixtral_tiny.h"
#include "vision_encoder/vision_encoder.h"

namespace pixtral {

// Views of `images`, which must outlive them.
inline std::vector<Image> ImageViews(const std::vector<GoldenImage>& images) {
  std::vector<Image> views;
  for (const GoldenImage& image : images)
    views.push_back({image.height, image.width, image.pixels});
  return views;
}

}  // namespace pixtral

#endif  // PIXTRAL_VISION_ENCODER_TESTING_GOLDEN_IMAGES_H_
