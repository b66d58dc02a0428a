// Generation: prompts (tokens and images) in, completions (tokens, optional logprobs) out, the
// C++ counterpart of mistral-inference's `generate(encoded_prompts, model, images=...,
// max_tokens=..., temperature=..., eos_id=...)`.
//
//   PixtralRunner runner(*model);                    // engine/pixtral_runner.h
//   std::vector<GenerationRequest> requests(2);
//   requests[0].prompt.tokens = {1, 3, 1000, 4};
//   requests[0].max_tokens = 64;
//   requests[0].sampling = {.temperature = 0.7f, .top_p = 0.8f, .seed = 1};
//   requests[1].prompt = image_prompt;               // [IMG] tokens + preprocessed pixels
//   requests[1].max_tokens = 64;
//   absl::StatusOr<std::vector<Completion>> out = Generate(runner, requests, {
//       .eos_id = 2,
//       .on_token = [](int request, const SampledToken& t) {
//         Print(request, t.id);
//         return true;  // false cancels the request
//       }});
//
// It runs the serving engine (engine/scheduler.h) on the calling thread with every request in
// one batch: the prompts prefill in chunks under the step token budget, then all sequences decode
// together, one token each per step. A sequence stops at EOS (unless ignore_eos), at one of its
// stop token ids or after max_tokens tokens, and its KV cache is released at once. Each request
// samples from its own seeded stream, so its completion does not depend on what it was batched
// with.
#ifndef PIXTRAL_DECODER_GENERATE_H_
#define PIXTRAL_DECODER_GENERATE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "decoder/sampler.h"
#include "engine/model_runner.h"
#include "engine/request.h"

namespace pixtral {

struct GenerateOptions {
  // The tokenizer's EOS id; negative if the model has none.
  int32_t eos_id = -1;
  // Called for each token appended to a completion, in order, as soon as it is sampled.
  // Returning false cancels that request: it finishes with kCancelled and frees its cache.
  std::function<bool(int request_index, const SampledToken& token)> on_token;
  // Tokens per model step (decode rows plus prompt chunks).
  int step_token_budget = 2048;
};

// Runs every request to completion. Bad requests (invalid sampling params, negative
// max_tokens, an empty prompt, ids or images the model rejects) are INVALID_ARGUMENT before the
// model runs; model errors are passed on. Every sequence is released at the end, so the model
// stays usable.
absl::StatusOr<std::vector<Completion>> Generate(ModelRunner& model,
                                                 absl::Span<const GenerationRequest> requests,
                                                 const GenerateOptions& options);

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_GENERATE_H_
