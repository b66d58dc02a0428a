// The embedded mode: tokenizer, vision encoder and decoder in one process, with no network hop
// between them. `mistral-chat MODEL_DIR` runs on this, and so do the tests that drive the whole
// system; the distributed mode runs the same components behind gRPC.
//
//   absl::StatusOr<std::unique_ptr<EmbeddedStack>> stack =
//       EmbeddedStack::Create({.model_dir = "/models/Pixtral-12B-2409"});
//   absl::StatusOr<ChatResult> result = (*stack)->pipeline().Run(request, params, {}, on_delta);
#ifndef PIXTRAL_SERVICES_EMBEDDED_EMBEDDED_STACK_H_
#define PIXTRAL_SERVICES_EMBEDDED_EMBEDDED_STACK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/chat_encoder.h"
#include "decoder/pixtral_model.h"
#include "engine/pixtral_runner.h"
#include "engine/scheduler.h"
#include "kernels/backend.h"
#include "proto/gateway.pb.h"
#include "services/embedded/cached_vision_stage.h"
#include "services/gateway/chat_pipeline.h"
#include "services/gateway/embedded_decoder_stage.h"
#include "services/gateway/front_end.h"
#include "vision_encoder/encode_batcher.h"

namespace pixtral {

struct EmbeddedStackOptions {
  std::string model_dir;
  std::string backend = "cpu";
  // Tensor-parallel ranks of the decoder (decoder/tp_decoder.h): GPUs 0..tp-1 on "cuda". The
  // vision encoder runs on rank 0.
  int tp = 1;
  // KV cache capacity in tokens, shared by every running sequence.
  int cache_tokens = 32768;
  int cache_block_size = 16;
  int max_batch_size = 32;
  // Tokens in one model step (decode rows plus prompt chunks), in one that has decode rows if
  // smaller (0: the same; Scheduler::Options), and prefix caching.
  int step_token_budget = 2048;
  int mixed_step_token_budget = 0;
  bool prefix_cache = true;
  // Host memory for encoder outputs kept by image content; 0: no image-feature cache.
  int64_t image_cache_bytes = int64_t{1} << 30;
  // Request limits and image loading; the context is the cache (at most 128k tokens).
  FrontEndOptions front_end;
};

class EmbeddedStack {
 public:
  // Loads the model folder (params.json, weights, tekken.json) onto the backend and starts the
  // decoder's scheduler.
  static absl::StatusOr<std::unique_ptr<EmbeddedStack>> Create(const EmbeddedStackOptions& options);

  ~EmbeddedStack();  // stops the scheduler: requests still running end as cancelled

  ChatPipeline& pipeline() { return *pipeline_; }
  const MistralTokenizer& tokenizer() const { return *front_end_.tokenizer; }
  const ModelConfig& config() const { return model_->config(); }
  // The engine's counters and cache state, for metrics and tests.
  EngineStats engine_stats() const { return scheduler_->stats(); }
  const PixtralRunner& runner() const { return *runner_; }
  // Zero counts without an image-feature cache.
  ImageFeatureCache::Stats image_cache_stats() const {
    return image_cache_ != nullptr ? image_cache_->stats() : ImageFeatureCache::Stats{};
  }
  // What the gateway's GetModelInfo reports for this model.
  v1::ModelInfo model_info() const;

 private:
  EmbeddedStack() = default;

  EmbeddedStackOptions options_;
  int max_context_tokens_ = 0;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<PixtralModel> model_;
  std::unique_ptr<PixtralRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<EncodeBatcher> batcher_;
  FrontEnd front_end_;
  std::unique_ptr<ImageFeatureCache> image_cache_;
  std::unique_ptr<CachedVisionStage> vision_;
  std::unique_ptr<EmbeddedDecoderStage> decoder_;
  std::unique_ptr<ChatPipeline> pipeline_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_EMBEDDED_EMBEDDED_STACK_H_
