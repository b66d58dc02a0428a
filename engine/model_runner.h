// The model as the engine's scheduler drives it: sequences in a paged KV cache with a prefix
// cache, prompts prepared (images encoded) once when admitted, and one batched step that runs a
// row per sequence (a decode token or a chunk of a prompt) and samples the next token of every
// row that ends its known tokens.
//
// PixtralRunner (engine/pixtral_runner.h) implements it over PixtralModel's Decoder; the sampling
// lives in Step so that a backend can sample on the device without the scheduler knowing.
//
//   ModelRunner::Row row{.sequence = id, .tokens = chunk, .prompt_tokens = chunk.size(),
//                        .sampler = last_chunk ? &sampler : nullptr};
//   PIXTRAL_ASSIGN_OR_RETURN(std::vector<ModelRunner::RowOutput> out, runner.Step({row}));
#ifndef PIXTRAL_ENGINE_MODEL_RUNNER_H_
#define PIXTRAL_ENGINE_MODEL_RUNNER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "decoder/kv_cache.h"
#include "decoder/sampler.h"
#include "engine/request.h"

namespace pixtral {

class ModelRunner {
 public:
  using SequenceId = int64_t;

  // One sequence's share of a step: `tokens` appended after the positions its cache holds.
  struct Row {
    SequenceId sequence = 0;
    absl::Span<const int32_t> tokens;
    // How many leading `tokens` are prompt tokens ([IMG] there takes the prompt's next image
    // feature row); the rest were generated and are ordinary tokens.
    int64_t prompt_tokens = 0;
    // Non-null: sample the token that follows the row's last token with it.
    Sampler* sampler = nullptr;
  };
  struct RowOutput {
    // The sampling's outcome (an error fails only this row's request); unset without a sampler.
    absl::Status status;
    bool sampled = false;
    SampledToken token;
  };

  virtual ~ModelRunner() = default;

  virtual int vocab_size() const = 0;
  // Positions per KV cache block, and the cache's blocks: all of them, those a step can take
  // (free or evictable), those held by sequences.
  virtual int block_size() const = 0;
  virtual int num_blocks() const = 0;
  virtual int num_free_blocks() const = 0;
  virtual int num_used_blocks() const = 0;
  // The longest row the model takes in one step (0: no limit of its own).
  virtual int64_t max_row_tokens() const { return 0; }

  // The prefix-cache key of each prompt position (engine/block_hash.h), after checking the prompt
  // (ids in the vocabulary, images or features that match its [IMG] tokens): InvalidArgument
  // naming the problem. Thread-safe: called by submitters, off the stepping thread.
  virtual absl::StatusOr<std::vector<uint64_t>> PromptKeys(const Prompt& prompt) const = 0;

  // A new empty sequence, then the longest prefix of `blocks` found in the prefix cache attached
  // to it; returns how many blocks were attached.
  virtual SequenceId AddSequence() = 0;
  virtual int AttachCachedPrefix(SequenceId sequence, absl::Span<const BlockKey> blocks) = 0;
  // Makes the sequence's full blocks findable by later prompts (blocks[i]: block i's key).
  virtual void PublishBlocks(SequenceId sequence, absl::Span<const BlockKey> blocks) = 0;
  // Prepares what the prompt's rows from position `first` on need: encodes the images (only
  // those with feature rows at or after `first`) or adapts the received features.
  virtual absl::Status PreparePrompt(SequenceId sequence, const Prompt& prompt, int64_t first) = 0;
  // Frees the sequence's cache blocks (shared ones stay with their other holders) and prepared
  // features. Unknown ids are ignored.
  virtual void Release(SequenceId sequence) = 0;

  // One batched forward over every row, then the samples. On error nothing changed (every
  // sequence is as it was), so the caller can retry rows alone to find the one at fault.
  virtual absl::StatusOr<std::vector<RowOutput>> Step(absl::Span<const Row> rows) = 0;
};

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_MODEL_RUNNER_H_
