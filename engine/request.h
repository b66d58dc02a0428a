// What the serving engine is asked and what it answers: a prompt (token ids with [IMG]
// placeholders and what fills them), how to sample, when to stop; the completion.
#ifndef PIXTRAL_ENGINE_REQUEST_H_
#define PIXTRAL_ENGINE_REQUEST_H_

#include <cstdint>
#include <vector>

#include "decoder/kv_cache.h"
#include "decoder/sampler.h"

namespace pixtral {

// One preprocessed image: float32 [3, height, width], CHW, normalized as mistral_common does.
struct PromptImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<float> pixels;
};

// The key of an image's content (engine/block_hash.h) and how many feature rows it fills.
struct ImageKey {
  BlockKey key;
  int64_t rows = 0;
};

// Token ids with [IMG] placeholders, and what fills those placeholders: either the images, in
// order, or their features already computed by a vision worker (the vision encoder's output
// before the vision-language adapter, f32 [count of [IMG] tokens, encoder width], row-major).
struct Prompt {
  std::vector<int32_t> tokens;
  std::vector<PromptImage> images;
  std::vector<float> image_features;
  // Optional, with features: a content key per image, in [IMG] order, from the sender (who knows
  // the pixels). The prefix cache then keys image row r by ImageRowKey(key, r) instead of
  // hashing the feature rows, so a later prompt can match the image without sending it.
  std::vector<ImageKey> image_keys;
  // With image_keys: image_features hold the images from this one on; the earlier ones lie in
  // the prefix cache, held there by GenerationRequest::prefix_pin.
  int first_feature_image = 0;
};

struct GenerationRequest {
  Prompt prompt;
  // Tokens to generate at most; 0 generates none.
  int max_tokens = 0;
  SamplingParams sampling;
  // Ids that end the completion like EOS does (not appended to it).
  std::vector<int32_t> stop_token_ids;
  // Keep going past EOS (benchmarks, goldens); stop token ids still stop.
  bool ignore_eos = false;
  bool logprobs = false;
  // A Scheduler::PinPrefix hold on the cached prefix this prompt relies on (0: none). The
  // scheduler releases it when the request ends, or at once if Submit refuses the request.
  int64_t prefix_pin = 0;
};

enum class FinishReason {
  kLength,     // max_tokens reached
  kEos,        // the model produced EOS
  kStopToken,  // the model produced one of stop_token_ids
  kCancelled,  // the on_token callback returned false
};

struct Completion {
  // Generated ids, without the EOS or stop token that ended them.
  std::vector<int32_t> tokens;
  // logprobs[i] is the raw log-probability of tokens[i]; empty unless the request asked.
  std::vector<float> logprobs;
  FinishReason finish_reason = FinishReason::kLength;
};

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_REQUEST_H_
