#include "services/embedded/embedded_stack.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "services/embedded/embedded_backend.h"
#include "services/gateway/proto_convert.h"

namespace pixtral {

// Pixtral-12B-2409 was trained with a 128k-token context.
constexpr int kModelContextTokens = 131072;

absl::StatusOr<std::unique_ptr<EmbeddedStack>> EmbeddedStack::Create(
    const EmbeddedStackOptions& options) {
  if (options.cache_tokens <= 0 || options.cache_block_size <= 0) {
    return absl::InvalidArgumentError("cache_tokens and cache_block_size must be positive");
  }
  std::unique_ptr<EmbeddedStack> stack(new EmbeddedStack());
  stack->options_ = options;
  PIXTRAL_ASSIGN_OR_RETURN(TensorParallelOptions tp,
                           EmbeddedTensorParallel(options.backend, options.tp));
  PIXTRAL_ASSIGN_OR_RETURN(stack->backend_, CreateEmbeddedBackend(options.backend));
  const CacheOptions cache{.block_size = options.cache_block_size,
                           .num_blocks = (options.cache_tokens + options.cache_block_size - 1) /
                                         options.cache_block_size};
  PIXTRAL_ASSIGN_OR_RETURN(stack->model_,
                           PixtralModel::Load(options.model_dir, stack->backend_.get(), cache,
                                              {.tensor_parallel = std::move(tp)}));
  stack->max_context_tokens_ = std::min(kModelContextTokens, options.cache_tokens);
  PIXTRAL_ASSIGN_OR_RETURN(stack->front_end_, LoadFrontEnd(options.model_dir, options.front_end,
                                                           stack->max_context_tokens_));

  stack->runner_ = std::make_unique<PixtralRunner>(*stack->model_);
  stack->scheduler_ = std::make_unique<Scheduler>(
      *stack->runner_,
      Scheduler::Options{.eos_id = stack->front_end_.tokenizer->tekken().eos_id(),
                         .max_batch_size = options.max_batch_size,
                         .step_token_budget = std::max(options.step_token_budget, 1),
                         .mixed_step_token_budget = options.mixed_step_token_budget,
                         .prefix_cache = options.prefix_cache});
  stack->scheduler_->Start();
  int vision_width = 0, patch_size = 1;
  if (VisionEncoder* encoder = stack->model_->vision_encoder(); encoder != nullptr) {
    stack->batcher_ =
        std::make_unique<EncodeBatcher>(*encoder, *stack->backend_, EncodeBatcher::Options{});
    vision_width = stack->model_->config().vision->hidden_size;
    patch_size = stack->model_->config().vision->patch_size;
  }
  if (options.image_cache_bytes > 0) {
    stack->image_cache_ = std::make_unique<ImageFeatureCache>(options.image_cache_bytes);
  }
  stack->vision_ = std::make_unique<CachedVisionStage>(
      stack->batcher_.get(), stack->image_cache_.get(), vision_width, patch_size);
  const auto& vision_config = stack->model_->config().vision;
  stack->decoder_ = std::make_unique<EmbeddedDecoderStage>(
      *stack->scheduler_, vision_config.has_value() ? vision_config->image_token_id : -1);
  stack->pipeline_ = std::make_unique<ChatPipeline>(
      *stack->front_end_.tokenizer, *stack->vision_, *stack->decoder_,
      ChatLimits{.max_context_tokens = stack->max_context_tokens_,
                 .default_max_tokens = options.front_end.default_max_tokens});
  return stack;
}

EmbeddedStack::~EmbeddedStack() {
  if (scheduler_ != nullptr) scheduler_->Stop();
}

v1::ModelInfo EmbeddedStack::model_info() const {
  return ToModelInfo(options_.model_dir, config(), max_context_tokens_,
                     options_.front_end.max_images_per_request);
}

}  // namespace pixtral
