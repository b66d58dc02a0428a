#include "decoder/pixtral_model.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/weights.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<PixtralModel>> PixtralModel::Load(const std::string& dir,
                                                                 kernels::Backend* backend,
                                                                 const CacheOptions& cache,
                                                                 const ModelLoadOptions& load) {
  std::unique_ptr<PixtralModel> m(new PixtralModel());
  m->backend_ = backend;
  PIXTRAL_ASSIGN_OR_RETURN(ModelFolder folder, OpenModelFolder(dir));
  m->folder_ = std::make_shared<ModelFolder>(std::move(folder));
  kernels::WeightLoader loader(*backend, m->folder_->weights, m->folder_);
  const ModelConfig& config = m->folder_->config;
  if (config.vision.has_value()) {
    PIXTRAL_ASSIGN_OR_RETURN(
        m->vision_, VisionEncoder::Create(backend, *config.vision, config.decoder.dim, loader,
                                          load.vision_encoder));
  }
  const int image_token_id = config.vision.has_value() ? config.vision->image_token_id : -1;
  if (load.tensor_parallel.make_communicators) {
    PIXTRAL_ASSIGN_OR_RETURN(
        m->decoder_, TpDecoder::Create(backend, config.decoder, image_token_id, m->folder_->weights,
                                       m->folder_, cache, load.tensor_parallel));
  } else {
    PIXTRAL_ASSIGN_OR_RETURN(
        m->decoder_, Decoder::Create(backend, config.decoder, image_token_id, loader, cache));
  }
  return m;
}

int64_t PixtralModel::SkippedWeightBytes(const ModelConfig& config, const ModelLoadOptions& load,
                                         int bytes_per_value) {
  if (load.vision_encoder) return 0;
  int64_t values = 0;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    if (!absl::StartsWith(spec.name, "vision_encoder.")) continue;
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    values += n;
  }
  return values * bytes_per_value;
}

absl::StatusOr<kernels::Tensor> PixtralModel::EmbedImages(absl::Span<const int32_t> tokens,
                                                          absl::Span<const Image> images) {
  if (images.empty()) return kernels::Tensor();
  if (vision_ == nullptr) return absl::InvalidArgumentError("this model takes no images");
  PIXTRAL_RETURN_IF_ERROR(vision_->Validate(images));
  int64_t patches = 0;
  for (const Image& image : images) patches += vision_->NumPatches(image);
  const int64_t image_tokens =
      std::count(tokens.begin(), tokens.end(), config().vision->image_token_id);
  if (patches != image_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", image_tokens,
                                                   " [IMG] tokens but its ", images.size(),
                                                   " images have ", patches, " patches"));
  }
  PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor features, vision_->Encode(images));
  return vision_->Adapt(features);
}

absl::StatusOr<std::vector<float>> PixtralModel::Prefill(SequenceId sequence,
                                                         absl::Span<const int32_t> tokens,
                                                         absl::Span<const Image> images,
                                                         const PrefillOptions& options) {
  if (tokens.empty()) return absl::InvalidArgumentError("empty prompt");
  PIXTRAL_RETURN_IF_ERROR(decoder_->CheckTokens(tokens));
  PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor features, EmbedImages(tokens, images));
  return PrefillEmbedded(sequence, tokens, features, options);
}

absl::StatusOr<kernels::Tensor> PixtralModel::AdaptEncoded(
    absl::Span<const int32_t> tokens, absl::Span<const float> encoder_features) {
  if (encoder_features.empty()) return kernels::Tensor();
  if (vision_ == nullptr) return absl::InvalidArgumentError("this model takes no images");
  const int64_t width = config().vision->hidden_size;
  const int64_t image_tokens =
      std::count(tokens.begin(), tokens.end(), config().vision->image_token_id);
  if (std::ssize(encoder_features) != image_tokens * width) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", image_tokens, " [IMG] tokens but ", encoder_features.size(),
                     " feature values arrived (rows of ", width, ")"));
  }
  PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor encoded,
                           backend_->Alloc(DType::kF32, {image_tokens, width}));
  backend_->CopyFromHost(encoder_features.data(), encoded);
  return vision_->Adapt(encoded);
}

absl::StatusOr<kernels::Tensor> PixtralModel::AdaptEncoderRows(
    absl::Span<const float> encoder_rows) {
  if (vision_ == nullptr) return absl::InvalidArgumentError("this model takes no images");
  const int64_t width = config().vision->hidden_size;
  if (encoder_rows.empty() || std::ssize(encoder_rows) % width != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(encoder_rows.size(), " feature values are not rows of ", width));
  }
  PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor encoded,
                           backend_->Alloc(DType::kF32, {std::ssize(encoder_rows) / width, width}));
  backend_->CopyFromHost(encoder_rows.data(), encoded);
  return vision_->Adapt(encoded);
}

absl::StatusOr<std::vector<float>> PixtralModel::PrefillEncoded(
    SequenceId sequence, absl::Span<const int32_t> tokens, absl::Span<const float> encoder_features,
    const PrefillOptions& options) {
  if (tokens.empty()) return absl::InvalidArgumentError("empty prompt");
  PIXTRAL_RETURN_IF_ERROR(decoder_->CheckTokens(tokens));
  PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor features, AdaptEncoded(tokens, encoder_features));
  return PrefillEmbedded(sequence, tokens, features, options);
}

absl::StatusOr<std::vector<float>> PixtralModel::PrefillEmbedded(SequenceId sequence,
                                                                 absl::Span<const int32_t> tokens,
                                                                 const kernels::Tensor& features,
                                                                 const PrefillOptions& options) {
  PIXTRAL_RETURN_IF_ERROR(
      decoder_->Reserve(sequence, decoder_->Length(sequence) + std::ssize(tokens)));

  const int image_token_id = vision_ != nullptr ? config().vision->image_token_id : -1;
  const int64_t chunk = options.chunk_tokens > 0 ? options.chunk_tokens : std::ssize(tokens);
  std::vector<float> logits;
  int64_t feature_row = 0;
  for (int64_t begin = 0; begin < std::ssize(tokens); begin += chunk) {
    StepInput step{.sequence = sequence,
                   .tokens = tokens.subspan(begin, chunk),
                   .all_logits = options.all_logits};
    const int64_t n = std::count(step.tokens.begin(), step.tokens.end(), image_token_id);
    if (n > 0) step.image_features = features.Rows(feature_row, n);
    feature_row += n;
    PIXTRAL_ASSIGN_OR_RETURN(std::vector<std::vector<float>> out, decoder_->Forward({step}));
    if (options.all_logits || begin + chunk >= std::ssize(tokens)) {
      logits.insert(logits.end(), out[0].begin(), out[0].end());
    }
  }
  return logits;
}

}  // namespace pixtral
