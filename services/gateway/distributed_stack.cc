#include "services/gateway/distributed_stack.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "common/status_macros.h"
#include "services/common/model_fingerprint.h"
#include "services/gateway/proto_convert.h"

namespace pixtral {

// Pixtral-12B-2409 was trained with a 128k-token context; each decoder worker also bounds a
// request by its KV cache.
constexpr int kModelContextTokens = 131072;

absl::StatusOr<std::unique_ptr<DistributedStack>> DistributedStack::Create(
    const DistributedStackOptions& options) {
  std::unique_ptr<DistributedStack> stack(new DistributedStack());
  stack->options_ = options;
  const std::filesystem::path dir(options.model_dir);
  PIXTRAL_ASSIGN_OR_RETURN(stack->config_, LoadModelConfig((dir / "params.json").string()));
  if (!stack->config_.vision.has_value()) {
    return absl::FailedPreconditionError("the model has no vision encoder");
  }
  PIXTRAL_ASSIGN_OR_RETURN(stack->vision_pool_,
                           ReplicaPool::Create(options.vision_workers, options.channel));
  PIXTRAL_ASSIGN_OR_RETURN(stack->decoder_pool_,
                           ReplicaPool::Create(options.decoder_workers, options.channel));

  FrontEndOptions front_end = options.front_end;
  front_end.pixel_form = options.vision_pixels;
  PIXTRAL_ASSIGN_OR_RETURN(stack->front_end_,
                           LoadFrontEnd(options.model_dir, front_end, kModelContextTokens));

  const int width = stack->config_.vision->hidden_size;
  PIXTRAL_ASSIGN_OR_RETURN(const std::string fingerprint, ModelFingerprint(options.model_dir));
  stack->vision_ = std::make_unique<RemoteVisionStage>(*stack->vision_pool_, width, fingerprint);
  stack->decoder_ = std::make_unique<RemoteDecoderStage>(*stack->decoder_pool_, width, fingerprint,
                                                         options.image_keys);
  stack->pipeline_ = std::make_unique<ChatPipeline>(
      *stack->front_end_.tokenizer, *stack->vision_, *stack->decoder_,
      ChatLimits{.max_context_tokens = kModelContextTokens,
                 .default_max_tokens = options.front_end.default_max_tokens});
  return stack;
}

v1::ModelInfo DistributedStack::model_info() const {
  return ToModelInfo(options_.model_dir, config_, kModelContextTokens,
                     options_.front_end.max_images_per_request);
}

}  // namespace pixtral
