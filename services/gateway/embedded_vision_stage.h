// The embedded mode's vision stage: images go straight to an in-process EncodeBatcher.
#ifndef PIXTRAL_SERVICES_GATEWAY_EMBEDDED_VISION_STAGE_H_
#define PIXTRAL_SERVICES_GATEWAY_EMBEDDED_VISION_STAGE_H_

#include <utility>
#include <vector>

#include "services/gateway/stages.h"
#include "vision_encoder/encode_batcher.h"

namespace pixtral {

class EmbeddedVisionStage final : public VisionStage {
 public:
  // `batcher` may be null for a text-only model, whose requests may then hold no images.
  EmbeddedVisionStage(EncodeBatcher* batcher, int width) : batcher_(batcher), width_(width) {}

  absl::StatusOr<FeatureRows> Encode(absl::Span<const PreprocessedImage> images,
                                     const CallContext&) override {
    if (batcher_ == nullptr) return absl::InvalidArgumentError("this model takes no images");
    std::vector<Image> views;
    for (const PreprocessedImage& image : images) {
      views.push_back({image.height, image.width, image.pixels});
    }
    absl::StatusOr<std::vector<float>> features = batcher_->Encode(views);
    if (!features.ok()) return features.status();
    return FeatureRows(*std::move(features));
  }

  int width() const override { return width_; }

 private:
  EncodeBatcher* batcher_;
  const int width_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_EMBEDDED_VISION_STAGE_H_
