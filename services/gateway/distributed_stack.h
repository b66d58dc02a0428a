// The gateway's distributed mode: the tokenizer in process, the vision encoder and the decoder on
// workers behind replica pools. The counterpart of EmbeddedStack (services/embedded), with the
// same ChatPipeline on top; the gateway needs only params.json and tekken.json, no weights.
//
//   absl::StatusOr<std::unique_ptr<DistributedStack>> stack = DistributedStack::Create({
//       .model_dir = "/models/Pixtral-12B-2409",
//       .vision_workers = {"vision-0:9001", "vision-1:9001"},
//       .decoder_workers = {"decoder-0:9002"}});
//   absl::StatusOr<ChatResult> result = (*stack)->pipeline().Run(request, params, {}, on_delta);
#ifndef PIXTRAL_SERVICES_GATEWAY_DISTRIBUTED_STACK_H_
#define PIXTRAL_SERVICES_GATEWAY_DISTRIBUTED_STACK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat_encoder.h"
#include "common/model_config.h"
#include "proto/gateway.pb.h"
#include "services/common/replica_pool.h"
#include "services/gateway/chat_pipeline.h"
#include "services/gateway/front_end.h"
#include "services/gateway/remote_stages.h"

namespace pixtral {

struct DistributedStackOptions {
  // Holds params.json and tekken.json.
  std::string model_dir;
  // host:port of each replica.
  std::vector<std::string> vision_workers;
  std::vector<std::string> decoder_workers;
  ChannelOptions channel;
  // Request limits and image loading.
  FrontEndOptions front_end;
  // How images travel to the vision workers (replaces front_end.pixel_form): by default as the
  // decoded 8-bit RGB, which the worker resizes and normalizes (4x fewer bytes than the floats
  // for an image that needs no resize; bench/NOTES.md has the measurement); kF32 for workers
  // that predate it.
  PixelForm vision_pixels = PixelForm::kRgb8IfSmaller;
  // Images go to the decoder workers as content keys, and only the features a worker asks for
  // follow (RemoteDecoderStage's features_on_request); false for workers that predate it.
  bool image_keys = true;
};

class DistributedStack {
 public:
  // Reads the config and the tokenizer and makes the channels; workers need not be up yet
  // (calls to them are UNAVAILABLE until they are). InvalidArgument for an empty worker list.
  static absl::StatusOr<std::unique_ptr<DistributedStack>> Create(
      const DistributedStackOptions& options);

  ChatPipeline& pipeline() { return *pipeline_; }
  const MistralTokenizer& tokenizer() const { return *front_end_.tokenizer; }
  // What the gateway's GetModelInfo reports.
  v1::ModelInfo model_info() const;
  // Whether at least one vision worker and one decoder worker are connected (readiness).
  bool WorkersReachable() { return vision_pool_->AnyReachable() && decoder_pool_->AnyReachable(); }

 private:
  DistributedStack() = default;

  DistributedStackOptions options_;
  ModelConfig config_;
  FrontEnd front_end_;
  std::unique_ptr<ReplicaPool> vision_pool_;
  std::unique_ptr<ReplicaPool> decoder_pool_;
  std::unique_ptr<RemoteVisionStage> vision_;
  std::unique_ptr<RemoteDecoderStage> decoder_;
  std::unique_ptr<ChatPipeline> pipeline_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_DISTRIBUTED_STACK_H_
