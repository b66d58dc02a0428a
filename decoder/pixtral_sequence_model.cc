#include "decoder/pixtral_sequence_model.h"

#include <utility>

#include "absl/cleanup/cleanup.h"
#include "common/status_macros.h"

namespace pixtral {

std::vector<Image> ImageViews(const Prompt& prompt) {
  std::vector<Image> images;
  for (const PromptImage& image : prompt.images) {
    images.push_back({image.height, image.width, image.pixels});
  }
  return images;
}

absl::StatusOr<SequenceModel::PrefillResult> PixtralSequenceModel::Prefill(
    absl::Span<const Prompt* const> prompts, absl::Span<const int> capacities) {
  Decoder& decoder = model_.decoder();
  PrefillResult result;
  // Until every prompt has run, the sequences made here are released on the way out.
  absl::Cleanup release_all = [&decoder, &result] {
    for (SequenceId id : result.ids) decoder.Release(id);
  };
  for (size_t i = 0; i < prompts.size(); ++i) {
    const SequenceId id = decoder.AddSequence();
    result.ids.push_back(id);
    // Room for the whole completion up front, so no sequence runs out of cache halfway.
    PIXTRAL_RETURN_IF_ERROR(decoder.Reserve(id, capacities[i]));
    const Prompt& prompt = *prompts[i];
    if (!prompt.images.empty() && !prompt.image_features.empty()) {
      return absl::InvalidArgumentError("a prompt carries images and image features at once");
    }
    const PrefillOptions options{.chunk_tokens = prefill_chunk_tokens_};
    PIXTRAL_ASSIGN_OR_RETURN(
        std::vector<float> logits,
        prompt.image_features.empty()
            ? model_.Prefill(id, prompt.tokens, ImageViews(prompt), options)
            : model_.PrefillEncoded(id, prompt.tokens, prompt.image_features, options));
    result.logits.insert(result.logits.end(), logits.begin(), logits.end());
  }
  std::move(release_all).Cancel();
  return result;
}

absl::StatusOr<std::vector<float>> PixtralSequenceModel::Decode(absl::Span<const SequenceId> ids,
                                                                absl::Span<const int32_t> tokens) {
  std::vector<StepInput> batch;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.push_back({.sequence = ids[i], .tokens = tokens.subspan(i, 1), .prompt_tokens = 0});
  }
  PIXTRAL_ASSIGN_OR_RETURN(std::vector<std::vector<float>> logits, model_.decoder().Forward(batch));
  std::vector<float> flat;
  flat.reserve(ids.size() * static_cast<size_t>(vocab_size()));
  for (const std::vector<float>& row : logits) flat.insert(flat.end(), row.begin(), row.end());
  return flat;
}

}  // namespace pixtral
