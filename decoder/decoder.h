// The Mistral decoder over a paged KV cache, written against kernels/backend.h.
//
// Token embeddings (with image features written over the [IMG] positions), N pre-norm blocks of
// grouped-query attention with RoPE and a SwiGLU MLP, a final RMSNorm and the untied output
// projection. One Forward call runs a batch of any mix of sequences: prompts of different
// lengths, chunks of a long prompt, single decode tokens. Each sequence's keys and values stay in
// the paged cache between calls until Release.
//
//   PIXTRAL_ASSIGN_OR_RETURN(auto decoder, Decoder::Create(backend, config.decoder,
//                                                          image_token_id, loader, {}));
//   SequenceId seq = decoder->AddSequence();
//   StepInput prompt{.sequence = seq, .tokens = ids, .image_features = features};
//   PIXTRAL_ASSIGN_OR_RETURN(auto logits, decoder->Forward({prompt}));  // logits[0]: [vocab]
//   int32_t next = ArgMax(logits[0]);
//   PIXTRAL_ASSIGN_OR_RETURN(logits, decoder->Forward({{.sequence = seq, .tokens = {&next, 1}}}));
//   decoder->Release(seq);
//
// Not thread-safe: one caller (the scheduler) drives it.
#ifndef PIXTRAL_DECODER_DECODER_H_
#define PIXTRAL_DECODER_DECODER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model_config.h"
#include "decoder/kv_cache.h"
#include "kernels/backend.h"
#include "kernels/weights.h"

namespace pixtral {

using SequenceId = int64_t;

struct CacheOptions {
  int block_size = 16;   // positions per KV cache block
  int num_blocks = 256;  // blocks shared by all sequences
};

// One sequence's share of a Forward step: tokens appended after what its cache holds.
struct StepInput {
  SequenceId sequence = 0;
  absl::Span<const int32_t> tokens;
  // f32 [count of image tokens in `tokens`, dim], row i for the i-th [IMG] token; undefined when
  // `tokens` holds no [IMG]. A chunk of a prompt carries only its own [IMG] tokens' rows.
  kernels::Tensor image_features;
  // Logits for every token of `tokens` (prompt logprobs, goldens) instead of the last only.
  bool all_logits = false;
};

class Decoder {
 public:
  // `image_token_id` is the [IMG] token, or -1 for a text-only model. The weights' shapes must
  // have been checked against `config` (OpenModelFolder does).
  static absl::StatusOr<std::unique_ptr<Decoder>> Create(kernels::Backend* backend,
                                                         const DecoderConfig& config,
                                                         int image_token_id,
                                                         kernels::WeightLoader& loader,
                                                         const CacheOptions& cache);

  const DecoderConfig& config() const { return config_; }
  const PagedKvCache& cache() const { return *cache_; }

  // A new, empty sequence. It holds no cache blocks until tokens arrive.
  SequenceId AddSequence();
  // Reserves cache blocks for `num_positions` positions now, so that the chunks of a long prompt
  // cannot run out of cache halfway. ResourceExhausted if they are not free.
  absl::Status Reserve(SequenceId sequence, int64_t num_positions);
  // The sequence finished or was cancelled: every one of its cache blocks returns to the pool.
  // Unknown ids are ignored.
  void Release(SequenceId sequence);
  // Positions the sequence's cache holds; 0 for an unknown id.
  int64_t Length(SequenceId sequence) const;
  // InvalidArgument naming the first id outside the vocabulary.
  absl::Status CheckTokens(absl::Span<const int32_t> tokens) const;

  // Runs one step over the batch and returns, per input, f32 logits [rows, vocab_size] row-major
  // (rows = 1, or tokens.size() with all_logits). Bad input (unknown or repeated sequence, empty
  // tokens, ids outside the vocabulary, image rows that do not match the [IMG] count) is
  // InvalidArgument; a step the free cache cannot hold is ResourceExhausted. On error nothing
  // changed: every sequence is as it was and the decoder takes the next call.
  absl::StatusOr<std::vector<std::vector<float>>> Forward(absl::Span<const StepInput> batch);

 private:
  struct Sequence {
    std::vector<int32_t> blocks;
    int64_t length = 0;
  };

  Decoder(kernels::Backend* backend, const DecoderConfig& config, int image_token_id)
      : backend_(backend), config_(config), image_token_id_(image_token_id) {}

  absl::Status Validate(absl::Span<const StepInput> batch) const;
  // x = embeddings of `ids`, with [IMG] rows replaced by the inputs' image features.
  absl::Status Embed(absl::Span<const StepInput> batch, const kernels::Tensor& ids,
                     const kernels::Tensor& x);

  kernels::Backend* backend_;
  DecoderConfig config_;
  int image_token_id_;
  kernels::Tensor tok_embeddings_, norm_, output_;
  std::vector<kernels::BlockWeights> layers_;
  std::unique_ptr<PagedKvCache> cache_;
  absl::flat_hash_map<SequenceId, Sequence> sequences_;
  SequenceId next_id_ = 1;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_DECODER_H_
