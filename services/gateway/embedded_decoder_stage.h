// The embedded mode's decoder: requests go straight to an in-process continuous-batching
// Scheduler, no network hop. Images come as keys: the stage pins the prompt's cached prefix and
// computes the features of only the images after it (as the decoder worker asks for them).
#ifndef PIXTRAL_SERVICES_GATEWAY_EMBEDDED_DECODER_STAGE_H_
#define PIXTRAL_SERVICES_GATEWAY_EMBEDDED_DECODER_STAGE_H_

#include <utility>
#include <vector>

#include "engine/run_on_scheduler.h"
#include "engine/scheduler.h"
#include "services/gateway/stages.h"

namespace pixtral {

class EmbeddedDecoderStage final : public DecoderStage {
 public:
  // `scheduler` must be running (Start()) and outlive this stage. `image_token_id`: the model's
  // [IMG]; negative for a text-only model (images then get all their features computed).
  explicit EmbeddedDecoderStage(Scheduler& scheduler, int image_token_id = -1)
      : scheduler_(scheduler), image_token_id_(image_token_id) {}

  absl::StatusOr<Completion> Generate(
      GenerationRequest request,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context) override {
    return RunOnScheduler(scheduler_, std::move(request), on_tokens, [&context] {
      return absl::Now() > context.deadline || (context.cancelled && context.cancelled());
    });
  }

  absl::StatusOr<Completion> GenerateWithImages(
      GenerationRequest request, const PromptImages& images,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context) override {
    if (image_token_id_ < 0) {
      return DecoderStage::GenerateWithImages(std::move(request), images, on_tokens, context);
    }
    Prompt& prompt = request.prompt;
    prompt.image_keys = images.keys;
    prompt.first_feature_image = static_cast<int>(images.keys.size());  // none yet
    absl::StatusOr<PinnedPrefix> pinned = PinPrefixAndWait(scheduler_, prompt, image_token_id_);
    if (!pinned.ok()) return pinned.status();
    absl::StatusOr<FeatureRows> features = images.features(pinned->first_needed_image);
    if (!features.ok()) {
      scheduler_.Unpin(pinned->pin.id);
      return features.status();
    }
    if (context.timings != nullptr) {
      context.timings->Add("images_skipped", pinned->first_needed_image);
    }
    prompt.image_features = std::move(*features).ToF32();
    prompt.first_feature_image = pinned->first_needed_image;
    request.prefix_pin = pinned->pin.id;  // the scheduler releases it with the request
    return Generate(std::move(request), on_tokens, context);
  }

 private:
  Scheduler& scheduler_;
  const int image_token_id_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_EMBEDDED_DECODER_STAGE_H_
