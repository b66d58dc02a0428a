// PixtralModel as the SequenceModel that Generate() drives: each prompt's images are encoded
// and the prompt prefilled into its own cache sequence, then all sequences decode together, one
// token each per batched step.
//
//   kernels::Backend* cpu = ...;
//   PIXTRAL_ASSIGN_OR_RETURN(auto model, PixtralModel::Load(dir, cpu));
//   PixtralSequenceModel sequences(*model);
//   PIXTRAL_ASSIGN_OR_RETURN(std::vector<Completion> out, Generate(sequences, requests, {}));
#ifndef PIXTRAL_DECODER_PIXTRAL_SEQUENCE_MODEL_H_
#define PIXTRAL_DECODER_PIXTRAL_SEQUENCE_MODEL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "decoder/generate.h"
#include "decoder/pixtral_model.h"

namespace pixtral {

class PixtralSequenceModel : public SequenceModel {
 public:
  // `model` must outlive this object. Prompts are prefilled in chunks of at most
  // `prefill_chunk_tokens` tokens (0: whole prompts).
  explicit PixtralSequenceModel(PixtralModel& model, int64_t prefill_chunk_tokens = 0)
      : model_(model), prefill_chunk_tokens_(prefill_chunk_tokens) {}

  int vocab_size() const override { return model_.config().decoder.vocab_size; }
  absl::StatusOr<PrefillResult> Prefill(absl::Span<const Prompt* const> prompts,
                                        absl::Span<const int> capacities) override;
  absl::StatusOr<std::vector<float>> Decode(absl::Span<const SequenceId> ids,
                                            absl::Span<const int32_t> tokens) override;
  void Release(SequenceId id) override { model_.decoder().Release(id); }

 private:
  PixtralModel& model_;
  int64_t prefill_chunk_tokens_;
};

// Views of a prompt's images for the vision encoder; they borrow the prompt's pixels.
std::vector<Image> ImageViews(const Prompt& prompt);

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_PIXTRAL_SEQUENCE_MODEL_H_
