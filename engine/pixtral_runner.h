// The model adapter: PixtralModel as the engine's ModelRunner.
//
// A step is one Decoder::ForwardSampled over every row: the rows that end their known tokens
// are sampled on the backend with their Sampler's next draw (on the GPU only ids and logprobs
// come back). A prompt's images are encoded when it is admitted (PreparePrompt)
// and only those whose feature rows are not already in the prefix cache; received encoder
// features (the distributed mode) are adapted here. Each chunk of a prompt takes the next feature
// rows in order, one per [IMG] token of its prompt part.
//
//   PIXTRAL_ASSIGN_OR_RETURN(auto model, PixtralModel::Load(dir, backend.get()));
//   PixtralRunner runner(*model);
//   Scheduler scheduler(runner, {.eos_id = 2});
#ifndef PIXTRAL_ENGINE_PIXTRAL_RUNNER_H_
#define PIXTRAL_ENGINE_PIXTRAL_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "decoder/pixtral_model.h"
#include "engine/model_runner.h"
#include "engine/request.h"

namespace pixtral {

class PixtralRunner final : public ModelRunner {
 public:
  // `model` must outlive the runner. No row is longer than `max_row_tokens` (0: no limit).
  explicit PixtralRunner(PixtralModel& model, int64_t max_row_tokens = 0)
      : model_(model), max_row_tokens_(max_row_tokens) {}

  int vocab_size() const override { return model_.config().decoder.vocab_size; }
  int block_size() const override { return cache().layout().block_size; }
  int num_blocks() const override { return cache().layout().num_blocks; }
  int num_free_blocks() const override { return cache().num_free_blocks(); }
  int num_used_blocks() const override { return cache().num_used_blocks(); }
  int64_t max_row_tokens() const override { return max_row_tokens_; }

  absl::StatusOr<std::vector<uint64_t>> PromptKeys(const Prompt& prompt) const override;
  SequenceId AddSequence() override { return model_.decoder().AddSequence(); }
  int AttachCachedPrefix(SequenceId sequence, absl::Span<const BlockKey> blocks) override {
    return model_.decoder().AttachCachedPrefix(sequence, blocks);
  }
  void PublishBlocks(SequenceId sequence, absl::Span<const BlockKey> blocks) override {
    model_.decoder().PublishBlocks(sequence, blocks);
  }
  absl::Status PreparePrompt(SequenceId sequence, const Prompt& prompt, int64_t first) override;
  void Release(SequenceId sequence) override;
  absl::StatusOr<std::vector<RowOutput>> Step(absl::Span<const Row> rows) override;

  // Images run through the vision encoder, and images whose rows were all in the prefix cache.
  int64_t images_encoded() const { return images_encoded_; }
  int64_t images_skipped() const { return images_skipped_; }

 private:
  // Adapted feature rows a prompt still has to consume, in [IMG] order.
  struct Features {
    kernels::Tensor rows;
    int64_t next = 0;
  };

  const PagedKvCache& cache() const { return model_.decoder().cache(); }
  int image_token_id() const;

  PixtralModel& model_;
  const int64_t max_row_tokens_;
  absl::flat_hash_map<SequenceId, Features> features_;
  std::atomic<int64_t> images_encoded_ = 0, images_skipped_ = 0;
};

// Views of a prompt's images for the vision encoder; they borrow the prompt's pixels.
std::vector<Image> ImageViews(const Prompt& prompt);

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_PIXTRAL_RUNNER_H_
