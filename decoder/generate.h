// Generation: prompts (tokens and images) in, completions (tokens, optional logprobs) out, the
// C++ counterpart of mistral-inference's `generate(encoded_prompts, model, images=...,
// max_tokens=..., temperature=..., eos_id=...)`.
//
//   std::vector<GenerationRequest> requests(2);
//   requests[0].prompt.tokens = {1, 3, 1000, 4};
//   requests[0].max_tokens = 64;
//   requests[0].sampling = {.temperature = 0.7f, .top_p = 0.8f, .seed = 1};
//   requests[1].prompt = image_prompt;               // [IMG] tokens + preprocessed pixels
//   requests[1].max_tokens = 64;
//   absl::StatusOr<std::vector<Completion>> out = Generate(model, requests, {
//       .eos_id = 2,
//       .on_token = [](int request, const SampledToken& t) {
//         Print(request, t.id);
//         return true;  // false cancels the request
//       }});
//
// All prompts are prefilled together, then decoded in batched steps, one token per unfinished
// sequence per step. A sequence stops at EOS (unless ignore_eos), at one of its stop token ids or
// after max_tokens tokens, and its KV cache is released at once. Each request samples from its
// own seeded stream, so its completion does not depend on what it was batched with.
//
// The loop drives the model through SequenceModel, the narrow interface below;
// PixtralSequenceModel (decoder/pixtral_sequence_model.h) implements it over PixtralModel and
// its paged KV cache, and tests implement it with scripted logits.

#ifndef PIXTRAL_DECODER_GENERATE_H_
#define PIXTRAL_DECODER_GENERATE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "decoder/sampler.h"

namespace pixtral {

// One preprocessed image: float32 [3, height, width], CHW, normalized as mistral_common does.
struct PromptImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<float> pixels;
};

// Token ids with [IMG] placeholders, and what fills those placeholders: either the images, in
// order, or their features already computed by a vision worker (the vision encoder's output
// before the vision-language adapter, f32 [count of [IMG] tokens, encoder width], row-major).
struct Prompt {
  std::vector<int32_t> tokens;
  std::vector<PromptImage> images;
  std::vector<float> image_features;
};

// A model that holds sequences (each with its KV cache) and advances them in batches.
class SequenceModel {
 public:
  using SequenceId = int64_t;

  virtual ~SequenceModel() = default;

  virtual int vocab_size() const = 0;

  // Starts one sequence per prompt, each with cache room for `capacities[i]` tokens (prompt
  // plus completion), runs the prompts and returns the new ids and the logits after each
  // prompt's last token, `ids.size()` rows of vocab_size(). Bad prompts (ids out of range,
  // [IMG] counts that do not match the images...) are INVALID_ARGUMENT, no room in the cache is
  // RESOURCE_EXHAUSTED; on any error no sequence is left allocated.
  struct PrefillResult {
    std::vector<SequenceId> ids;
    std::vector<float> logits;
  };
  virtual absl::StatusOr<PrefillResult> Prefill(absl::Span<const Prompt* const> prompts,
                                                absl::Span<const int> capacities) = 0;

  // Appends tokens[i] to sequence ids[i], for all i at once, and returns the logits after each
  // (ids.size() rows of vocab_size()).
  virtual absl::StatusOr<std::vector<float>> Decode(absl::Span<const SequenceId> ids,
                                                    absl::Span<const int32_t> tokens) = 0;

  // Frees the sequence's cache. Unknown ids are ignored.
  virtual void Release(SequenceId id) = 0;
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

struct GenerateOptions {
  // The tokenizer's EOS id; negative if the model has none.
  int32_t eos_id = -1;
  // Called for each token appended to a completion, in order, as soon as it is sampled.
  // Returning false cancels that request: it finishes with kCancelled and frees its cache.
  std::function<bool(int request_index, const SampledToken& token)> on_token;
};

// Runs every request to completion. Bad requests (invalid sampling params, negative
// max_tokens, an empty prompt) are INVALID_ARGUMENT before the model runs; model errors are
// passed on. On error every sequence is released, so the model stays usable.
absl::StatusOr<std::vector<Completion>> Generate(SequenceModel& model,
                                                 absl::Span<const GenerationRequest> requests,
                                                 const GenerateOptions& options);

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_GENERATE_H_
