// The embedded mode's vision stage with the image-feature cache in front of the encoder: an image
// whose preprocessed pixels were encoded before (another chat, an earlier turn) skips it.
#ifndef PIXTRAL_SERVICES_EMBEDDED_CACHED_VISION_STAGE_H_
#define PIXTRAL_SERVICES_EMBEDDED_CACHED_VISION_STAGE_H_

#include <utility>
#include <vector>

#include "engine/image_feature_cache.h"
#include "services/gateway/stages.h"
#include "vision_encoder/encode_batcher.h"

namespace pixtral {

class CachedVisionStage final : public VisionStage {
 public:
  // `batcher` may be null for a text-only model; `cache` may be null (no cache). Both must
  // outlive the stage.
  CachedVisionStage(EncodeBatcher* batcher, ImageFeatureCache* cache, int width, int patch_size)
      : batcher_(batcher), cache_(cache), width_(width), patch_size_(patch_size) {}

  absl::StatusOr<FeatureRows> Encode(absl::Span<const PreprocessedImage> images,
                                     const CallContext&) override {
    if (batcher_ == nullptr) return absl::InvalidArgumentError("this model takes no images");
    std::vector<Image> views;
    for (const PreprocessedImage& image : images) {
      views.push_back({image.height, image.width, image.pixels});
    }
    absl::StatusOr<std::vector<float>> features = EncodeWithCache(
        cache_, views, patch_size_,
        [this](absl::Span<const Image> misses) { return batcher_->Encode(misses); });
    if (!features.ok()) return features.status();
    return FeatureRows(*std::move(features));
  }

  int width() const override { return width_; }

 private:
  EncodeBatcher* batcher_;
  ImageFeatureCache* cache_;
  const int width_;
  const int patch_size_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_EMBEDDED_CACHED_VISION_STAGE_H_
