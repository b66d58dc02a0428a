// Pixtral's vision encoder and vision-language adapter, written against kernels/backend.h.
//
// An image (already resized to whole 16x16 patches and normalized, as mistral_common does) becomes
// one token per patch: a stride-16 patch convolution without bias, the ln_pre RMSNorm, then N
// pre-norm transformer blocks whose attention rotates queries and keys by each patch's (row,
// column) with 2D RoPE and stays inside the patch's own image. Several images of different sizes
// go through in one batch. The adapter (Linear, GELU, Linear) maps the encoder's width to the
// decoder's.
//
//   PIXTRAL_ASSIGN_OR_RETURN(auto encoder, VisionEncoder::Create(backend, *config.vision,
//                                                               config.decoder.dim, loader));
//   PIXTRAL_ASSIGN_OR_RETURN(Tensor features, encoder->Encode(images));  // [patches, hidden]
//   PIXTRAL_ASSIGN_OR_RETURN(Tensor adapted, encoder->Adapt(features));  // [patches, dim]
#ifndef PIXTRAL_VISION_ENCODER_VISION_ENCODER_H_
#define PIXTRAL_VISION_ENCODER_VISION_ENCODER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model_config.h"
#include "kernels/backend.h"
#include "kernels/weights.h"

namespace pixtral {

// A preprocessed image: float32 [channels, height, width], height and width multiples of the
// patch size. The pixels are borrowed for the call.
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  absl::Span<const float> pixels;
};

class VisionEncoder {
 public:
  // Loads "vision_encoder.*" and "vision_language_adapter.*", whose shapes must have been checked
  // against `config` (OpenModelFolder does); `decoder_dim` is the adapter's output width. Without
  // `load_encoder` only the adapter is loaded (a decoder worker adapts received features and
  // never encodes): Encode is then FailedPrecondition.
  static absl::StatusOr<std::unique_ptr<VisionEncoder>> Create(kernels::Backend* backend,
                                                               const VisionEncoderConfig& config,
                                                               int decoder_dim,
                                                               kernels::WeightLoader& loader,
                                                               bool load_encoder = true);

  // Image tokens this image becomes: (height / patch) * (width / patch).
  int64_t NumPatches(const Image& image) const;

  // InvalidArgument unless every image has the configured channel count, a height and width that
  // are positive multiples of the patch size and at most image_size, and matching pixel data.
  absl::Status Validate(absl::Span<const Image> images) const;

  // The encoder output, f32 [sum of NumPatches, hidden_size]: image by image, patches row-major.
  absl::StatusOr<kernels::Tensor> Encode(absl::Span<const Image> images);

  // The vision-language adapter: f32 [N, hidden_size] -> [N, decoder_dim].
  absl::StatusOr<kernels::Tensor> Adapt(const kernels::Tensor& features);

 private:
  VisionEncoder(kernels::Backend* backend, const VisionEncoderConfig& config)
      : backend_(backend), config_(config) {}

  kernels::Backend* backend_;
  VisionEncoderConfig config_;
  kernels::Tensor patch_conv_;  // [hidden, channels * patch * patch]
  kernels::Tensor ln_pre_;
  std::vector<kernels::BlockWeights> blocks_;
  kernels::Tensor w_in_, b_in_, w_out_, b_out_;  // biases undefined when !adapter_bias
};

}  // namespace pixtral

#endif  // PIXTRAL_VISION_ENCODER_VISION_ENCODER_H_
