// The distributed mode's stages: vision and decoder workers over gRPC, each behind a
// ReplicaPool (round-robin, failover to another replica while nothing was received yet).
//
//   auto vision_pool = ReplicaPool::Create({"vision-0:9001", "vision-1:9001"}, {});
//   RemoteVisionStage vision(**vision_pool, /*width=*/1024);
//   auto decoder_pool = ReplicaPool::Create({"decoder-0:9002"}, {});
//   RemoteDecoderStage decoder(**decoder_pool);
#ifndef PIXTRAL_SERVICES_GATEWAY_REMOTE_STAGES_H_
#define PIXTRAL_SERVICES_GATEWAY_REMOTE_STAGES_H_

#include <string>
#include <utility>

#include "proto/vision_worker.pb.h"
#include "services/common/replica_pool.h"
#include "services/gateway/stages.h"

namespace pixtral {

// Pixels of images sent in one Encode call at most: two 1024x1024 images (12 MiB of float32
// each, or eight as 8-bit RGB), far under the 64 MiB message limit, so every request the
// gateway accepts fits the wire.
inline constexpr int64_t kMaxPixelBytesPerEncodeCall = int64_t{26} << 20;

class RemoteVisionStage final : public VisionStage {
 public:
  // `width` is the vision encoder's hidden size (the model's params.json says it).
  // `model_fingerprint` (ModelFingerprint of the gateway's folder): a worker that answers with
  // another model's is refused (FAILED_PRECONDITION); empty checks nothing. Images are sent in
  // calls of at most `max_bytes_per_call` of pixels (one image per call if larger),
  // concurrently; the worker batches concurrent calls together.
  RemoteVisionStage(ReplicaPool& pool, int width, std::string model_fingerprint = "",
                    int64_t max_bytes_per_call = kMaxPixelBytesPerEncodeCall)
      : pool_(pool),
        width_(width),
        model_fingerprint_(std::move(model_fingerprint)),
        max_bytes_per_call_(max_bytes_per_call) {}

  absl::StatusOr<FeatureRows> Encode(absl::Span<const PreprocessedImage> images,
                                     const CallContext& context) override;
  int width() const override { return width_; }

 private:
  // One Encode call for `images`.
  absl::StatusOr<FeatureRows> EncodeInOneCall(absl::Span<const PreprocessedImage> images,
                                              const CallContext& context);

  ReplicaPool& pool_;
  const int width_;
  const std::string model_fingerprint_;
  const int64_t max_bytes_per_call_;
};

class RemoteDecoderStage final : public DecoderStage {
 public:
  // `feature_width` is the width of the image feature rows sent along with a prompt. With
  // `features_on_request`, prompts with images go as keys and only the features the worker asks
  // for follow; off, every feature is sent (for decoder workers from before image keys, which
  // would wait for features that never come).
  RemoteDecoderStage(ReplicaPool& pool, int feature_width, std::string model_fingerprint = "",
                     bool features_on_request = true)
      : pool_(pool),
        feature_width_(feature_width),
        model_fingerprint_(std::move(model_fingerprint)),
        features_on_request_(features_on_request) {}

  absl::StatusOr<Completion> Generate(
      GenerationRequest request,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context) override;
  absl::StatusOr<Completion> GenerateWithImages(
      GenerationRequest request, const PromptImages& images,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context) override;

 private:
  // One Generate call; with `images`, their keys first and only the features asked for.
  absl::StatusOr<Completion> Call(
      GenerationRequest request, const PromptImages* images,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context);

  ReplicaPool& pool_;
  const int feature_width_;
  const std::string model_fingerprint_;
  const bool features_on_request_;
};

// The Encode request for `images`: normalized ones as F32 tensors, 8-bit RGB ones
// (PixelForm::kRgb8IfSmaller) as RgbImage; a request of floats only uses the `images` field that
// older workers read.
v1::EncodeRequest ToEncodeRequest(absl::Span<const PreprocessedImage> images);

// Feature rows per message: 512 rows of 1024 f32 are 2 MB, well under gRPC's default limit.
inline constexpr int kFeatureRowsPerMessage = 512;

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_REMOTE_STAGES_H_
