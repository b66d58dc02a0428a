#include "engine/pixtral_runner.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/block_hash.h"
#include "engine/image_keys.h"

namespace pixtral {

std::vector<Image> ImageViews(const Prompt& prompt) {
  std::vector<Image> images;
  for (const PromptImage& image : prompt.images) {
    images.push_back({image.height, image.width, image.pixels});
  }
  return images;
}

int PixtralRunner::image_token_id() const {
  return model_.config().vision.has_value() ? model_.config().vision->image_token_id : -1;
}

absl::StatusOr<std::vector<uint64_t>> PixtralRunner::PromptKeys(const Prompt& prompt) const {
  if (prompt.tokens.empty()) return absl::InvalidArgumentError("empty prompt");
  PIXTRAL_RETURN_IF_ERROR(model_.decoder().CheckTokens(prompt.tokens));
  const int image_token = image_token_id();
  const int64_t image_tokens = std::count(prompt.tokens.begin(), prompt.tokens.end(), image_token);
  if (!prompt.images.empty() && (!prompt.image_features.empty() || !prompt.image_keys.empty())) {
    return absl::InvalidArgumentError("a prompt carries images and image features at once");
  }
  if (prompt.image_keys.empty() && prompt.first_feature_image != 0) {
    return absl::InvalidArgumentError("first_feature_image needs image keys");
  }
  // One key per [IMG] row, from the content that fills it.
  std::vector<uint64_t> row_keys;
  row_keys.reserve(image_tokens);
  if (!prompt.images.empty()) {
    const VisionEncoder* vision = model_.vision_encoder();
    if (vision == nullptr) return absl::InvalidArgumentError("this model takes no images");
    const std::vector<Image> views = ImageViews(prompt);
    PIXTRAL_RETURN_IF_ERROR(vision->Validate(views));
    int64_t patches = 0;
    for (const Image& image : views) patches += vision->NumPatches(image);
    if (patches != image_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("the prompt has ", image_tokens,
                                                     " [IMG] tokens but its ", views.size(),
                                                     " images have ", patches, " patches"));
    }
    for (const Image& image : views) {
      BlockKey content = HashBytes(image.pixels.data(), image.pixels.size() * sizeof(float));
      content.hi ^= (static_cast<uint64_t>(image.height) << 32) ^ image.width;
      for (int64_t r = 0; r < vision->NumPatches(image); ++r) {
        row_keys.push_back(ImageRowKey(content, r));
      }
    }
  } else if (!prompt.image_keys.empty()) {
    if (!model_.config().vision.has_value()) {
      return absl::InvalidArgumentError("this model takes no images");
    }
    // The sender's keys name the content: no need to hash the feature rows.
    PIXTRAL_ASSIGN_OR_RETURN(
        row_keys, KeyedImageRowKeys(prompt, image_token, model_.config().vision->image_end_token_id,
                                    model_.config().vision->hidden_size));
  } else if (image_tokens > 0 || !prompt.image_features.empty()) {
    if (!model_.config().vision.has_value()) {
      return absl::InvalidArgumentError("this model takes no images");
    }
    const int64_t width = model_.config().vision->hidden_size;
    if (std::ssize(prompt.image_features) != image_tokens * width) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the prompt has ", image_tokens, " [IMG] tokens but ", prompt.image_features.size(),
          " feature values came with it (rows of ", width, ")"));
    }
    // The received rows are the content: a row's key is its own hash.
    for (int64_t r = 0; r < image_tokens; ++r) {
      row_keys.push_back(ImageRowKey(
          HashBytes(prompt.image_features.data() + r * width, width * sizeof(float)), 0));
    }
  }
  std::vector<uint64_t> keys;
  keys.reserve(prompt.tokens.size());
  size_t row = 0;
  for (int32_t token : prompt.tokens) {
    keys.push_back(token == image_token ? row_keys[row++] : TokenKey(token));
  }
  return keys;
}

absl::Status PixtralRunner::PreparePrompt(SequenceId sequence, const Prompt& prompt,
                                          int64_t first) {
  features_.erase(sequence);
  const int image_token = image_token_id();
  const auto& tokens = prompt.tokens;
  first = std::clamp<int64_t>(first, 0, std::ssize(tokens));
  const int64_t cached_rows = std::count(tokens.begin(), tokens.begin() + first, image_token);
  const int64_t total_rows = std::count(tokens.begin(), tokens.end(), image_token);
  if (cached_rows == total_rows) {
    images_skipped_ += std::ssize(prompt.images);
    return absl::OkStatus();
  }
  Features features;
  if (!prompt.images.empty()) {
    // Only the images from the first one with an uncached row on go through the encoder.
    VisionEncoder* vision = model_.vision_encoder();
    const std::vector<Image> views = ImageViews(prompt);
    size_t first_image = 0;
    int64_t start = 0;  // the first encoded image's first row
    while (first_image < views.size() &&
           start + vision->NumPatches(views[first_image]) <= cached_rows) {
      start += vision->NumPatches(views[first_image]);
      ++first_image;
    }
    const absl::Span<const Image> encode = absl::MakeConstSpan(views).subspan(first_image);
    PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor encoded, vision->Encode(encode));
    PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor adapted, vision->Adapt(encoded));
    features.rows = adapted.Rows(cached_rows - start, total_rows - cached_rows);
    images_encoded_ += std::ssize(encode);
    images_skipped_ += static_cast<int64_t>(first_image);
  } else {
    // Rows of the images that were not sent must lie in the cached prefix (the request's pin
    // holds them there); computing them from nothing would give wrong tokens.
    const int64_t unsent_rows = RowsBeforeImage(prompt, prompt.first_feature_image);
    if (cached_rows < unsent_rows) {
      return absl::FailedPreconditionError(
          absl::StrCat("the prefix cache no longer holds the ", unsent_rows - cached_rows,
                       " image rows whose features were not sent"));
    }
    const int64_t width = model_.config().vision->hidden_size;
    PIXTRAL_ASSIGN_OR_RETURN(
        features.rows, model_.AdaptEncoderRows(absl::MakeConstSpan(prompt.image_features)
                                                   .subspan((cached_rows - unsent_rows) * width)));
  }
  features_[sequence] = std::move(features);
  return absl::OkStatus();
}

void PixtralRunner::Release(SequenceId sequence) {
  features_.erase(sequence);
  model_.decoder().Release(sequence);
}

absl::StatusOr<std::vector<ModelRunner::RowOutput>> PixtralRunner::Step(
    absl::Span<const Row> rows) {
  const int image_token = image_token_id();
  std::vector<StepInput> batch;
  std::vector<int64_t> image_rows;
  for (const Row& row : rows) {
    StepInput in{
        .sequence = row.sequence, .tokens = row.tokens, .prompt_tokens = row.prompt_tokens};
    const absl::Span<const int32_t> prompt =
        row.tokens.first(std::clamp<int64_t>(row.prompt_tokens, 0, std::ssize(row.tokens)));
    const int64_t n = std::count(prompt.begin(), prompt.end(), image_token);
    if (n > 0) {
      auto it = features_.find(row.sequence);
      if (it == features_.end() || it->second.next + n > it->second.rows.dim(0)) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", row.sequence, ": a chunk with ",
                                                       n, " [IMG] tokens but no features"));
      }
      in.image_features = it->second.rows.Rows(it->second.next, n);
    }
    image_rows.push_back(n);
    batch.push_back(in);
  }
  // Sampling runs on the backend (on the GPU: only ids and logprobs come back). A row that ends
  // no prompt samples a throwaway greedy token: cheaper than a second kind of step.
  std::vector<kernels::RowSampling> draws;
  for (const Row& row : rows) {
    draws.push_back(row.sampler != nullptr ? row.sampler->NextDraw() : kernels::RowSampling{});
  }
  PIXTRAL_ASSIGN_OR_RETURN(std::vector<absl::StatusOr<SampledToken>> sampled,
                           model_.decoder().ForwardSampled(batch, draws));

  std::vector<RowOutput> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (image_rows[i] > 0) {
      auto it = features_.find(rows[i].sequence);
      it->second.next += image_rows[i];
      if (it->second.next == it->second.rows.dim(0)) features_.erase(it);  // all consumed
    }
    if (rows[i].sampler == nullptr) continue;
    out[i].sampled = sampled[i].ok();
    if (sampled[i].ok()) {
      out[i].token = *sampled[i];
    } else {
      out[i].status = sampled[i].status();
    }
  }
  return out;
}

}  // namespace pixtral
