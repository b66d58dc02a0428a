// Pixtral-12B as one object: a model folder loaded onto a backend, the vision encoder and the
// decoder, and the multimodal prefill that joins them.
//
// This is what the embedded mode and the generation API drive; the distributed mode uses the
// VisionEncoder and the Decoder in separate workers.
//
//   PIXTRAL_ASSIGN_OR_RETURN(auto model, PixtralModel::Load(dir, backend.get()));
//   SequenceId seq = model->decoder().AddSequence();
//   PIXTRAL_ASSIGN_OR_RETURN(std::vector<float> logits, model->Prefill(seq, prompt, images));
//   ... decode with model->decoder().Forward(...), then
//   model->decoder().Release(seq);
#ifndef PIXTRAL_DECODER_PIXTRAL_MODEL_H_
#define PIXTRAL_DECODER_PIXTRAL_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model_config.h"
#include "common/model_folder.h"
#include "decoder/decoder.h"
#include "decoder/tp_decoder.h"
#include "kernels/backend.h"
#include "vision_encoder/vision_encoder.h"

namespace pixtral {

// Which weights a role loads. A decoder worker receives encoder output and needs only the
// decoder and the vision-language adapter, not the vision transformer.
struct ModelLoadOptions {
  bool vision_encoder = true;  // false: the adapter only (VisionEncoder::Encode refuses)
  // With a communicator factory, the decoder is a TpDecoder (decoder/tp_decoder.h) over
  // tensor_parallel.size ranks, rank 0 on the model's backend, where the vision encoder and the
  // adapter run too; without one, a plain Decoder.
  TensorParallelOptions tensor_parallel;
};

struct PrefillOptions {
  int64_t chunk_tokens = 0;  // feed the prompt in chunks of at most this many tokens; 0: one
  bool all_logits = false;   // logits for every prompt position, not only the last
};

class PixtralModel {
 public:
  // Opens the folder (params.json + safetensors, checked against each other) and loads its weights
  // onto `backend`, which must outlive the model.
  static absl::StatusOr<std::unique_ptr<PixtralModel>> Load(const std::string& dir,
                                                            kernels::Backend* backend,
                                                            const CacheOptions& cache = {},
                                                            const ModelLoadOptions& load = {});

  // Bytes of the checkpoint's tensors that `load` leaves out for a model of `config`, at
  // `bytes_per_value` (2 for bf16 checkpoints): what a role saves by not loading them.
  static int64_t SkippedWeightBytes(const ModelConfig& config, const ModelLoadOptions& load,
                                    int bytes_per_value);

  const ModelConfig& config() const { return folder_->config; }
  Decoder& decoder() { return *decoder_; }
  const Decoder& decoder() const { return *decoder_; }
  // nullptr for a text-only model.
  VisionEncoder* vision_encoder() { return vision_.get(); }
  const VisionEncoder* vision_encoder() const { return vision_.get(); }

  // The adapted image features for a prompt, f32 [count of [IMG] in tokens, dim]; undefined when
  // there are no images. InvalidArgument if the images are invalid or their patch counts do not
  // add up to the prompt's [IMG] tokens.
  absl::StatusOr<kernels::Tensor> EmbedImages(absl::Span<const int32_t> tokens,
                                              absl::Span<const Image> images);

  // Appends a prompt (tokens with [IMG] blocks, and their images in order) to `sequence`: encodes
  // the images, reserves cache for the whole prompt, then runs it in chunks. Returns the logits,
  // f32 [rows, vocab]. Every check runs before any compute: on error the sequence is unchanged.
  absl::StatusOr<std::vector<float>> Prefill(SequenceId sequence, absl::Span<const int32_t> tokens,
                                             absl::Span<const Image> images,
                                             const PrefillOptions& options = {});

  // As Prefill, with the images already encoded by a vision worker: `encoder_features` is the
  // vision encoder's output before the adapter, f32 [count of [IMG] in tokens, hidden_size]
  // (VisionEncoder::Encode's rows); the adapter runs here.
  absl::StatusOr<std::vector<float>> PrefillEncoded(SequenceId sequence,
                                                    absl::Span<const int32_t> tokens,
                                                    absl::Span<const float> encoder_features,
                                                    const PrefillOptions& options = {});

  // The adapter alone on rows of vision-encoder output held on the host: f32 [n, hidden_size]
  // row-major in, adapted f32 [n, dim] out. The adapter works row by row, so any subset of an
  // image's rows adapts to the same values it would in the whole image.
  absl::StatusOr<kernels::Tensor> AdaptEncoderRows(absl::Span<const float> encoder_rows);

 private:
  PixtralModel() = default;

  // The adapted features of encoder output held on the host, checked against the prompt.
  absl::StatusOr<kernels::Tensor> AdaptEncoded(absl::Span<const int32_t> tokens,
                                               absl::Span<const float> encoder_features);
  // Runs `tokens` with `features` (adapted, one row per [IMG]) after every check has passed.
  absl::StatusOr<std::vector<float>> PrefillEmbedded(SequenceId sequence,
                                                     absl::Span<const int32_t> tokens,
                                                     const kernels::Tensor& features,
                                                     const PrefillOptions& options);

  kernels::Backend* backend_ = nullptr;
  std::shared_ptr<ModelFolder> folder_;  // the mapped weights the backend may compute on
  std::unique_ptr<VisionEncoder> vision_;
  std::unique_ptr<Decoder> decoder_;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_PIXTRAL_MODEL_H_
