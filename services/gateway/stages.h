// The two halves of the model as the gateway sees them. Each has an in-process implementation
// (embedded mode: one process, no network hop) and a gRPC one (distributed mode: vision and
// decoder workers behind replica pools); the chat pipeline is written once against these.
#ifndef PIXTRAL_SERVICES_GATEWAY_STAGES_H_
#define PIXTRAL_SERVICES_GATEWAY_STAGES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/image_processing.h"
#include "decoder/generate.h"
#include "services/common/request_timings.h"
#include "services/gateway/feature_rows.h"

namespace pixtral {

// What a call may spend and whether its client is still there.
struct CallContext {
  absl::Time deadline = absl::InfiniteFuture();
  // Polled while waiting; empty means never cancelled.
  std::function<bool()> cancelled;
  // Passed to the workers (x-request-id) so their logs name the same request; may be empty.
  std::string request_id;
  // Where the stages record their times and the workers' (services/common/request_timings.h);
  // null records nothing.
  RequestTimings* timings = nullptr;
};

class VisionStage {
 public:
  virtual ~VisionStage() = default;

  // The vision encoder's output for `images`, in order: [sum of patches, width()], patches
  // row-major within each image, f32 or as a vision worker sent it (feature_rows.h). Images may
  // come normalized or as 8-bit RGB (PixelForm).
  virtual absl::StatusOr<FeatureRows> Encode(absl::Span<const PreprocessedImage> images,
                                             const CallContext& context) = 0;

  // Width of a feature row (the encoder's hidden size).
  virtual int width() const = 0;
};

// A prompt's images as a decoder that matches images by content key can use them: the key of
// each image ([IMG] order, with its rows) and a way to compute the features of the images from
// `first_image` on ([their rows, width], as VisionStage::Encode) once it knows which it lacks.
struct PromptImages {
  std::vector<ImageKey> keys;
  std::function<absl::StatusOr<FeatureRows>(int first_image)> features;
};

class DecoderStage {
 public:
  virtual ~DecoderStage() = default;

  // Generate for a prompt whose [IMG] tokens `images` fill. A stage that can, asks for the
  // features of only the images its prefix cache lacks; this default computes them all.
  virtual absl::StatusOr<Completion> GenerateWithImages(
      GenerationRequest request, const PromptImages& images,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context) {
    absl::StatusOr<FeatureRows> features = images.features(0);
    if (!features.ok()) return features.status();
    request.prompt.image_features = std::move(*features).ToF32();
    request.prompt.image_keys = images.keys;
    return Generate(std::move(request), on_tokens, context);
  }

  // Generates for `request` (prompt ids and, for its [IMG] tokens, features from a VisionStage),
  // handing tokens to `on_tokens` as they come; returning false there cancels the request, which
  // then ends with FinishReason::kCancelled.
  virtual absl::StatusOr<Completion> Generate(
      GenerationRequest request,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context) = 0;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_STAGES_H_
