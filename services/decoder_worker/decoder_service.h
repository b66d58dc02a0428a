// The decoder worker's gRPC service: a thin shell that turns Decoder.Generate streams into
// requests on the continuous-batching Scheduler and streams tokens back.
//
// A call reads its header (prompt ids, sampling) and then image-feature chunks until the rows the
// header announced have arrived (with image keys and features_on_request, it first pins the
// prompt's cached prefix and asks only for the features of the images after it); the request then
// joins the running batch, and each sampled token is written back as it comes. A client that
// cancels, disconnects or lets its deadline pass has its request cancelled at the next step, which
// frees its KV cache.
#ifndef PIXTRAL_SERVICES_DECODER_WORKER_DECODER_SERVICE_H_
#define PIXTRAL_SERVICES_DECODER_WORKER_DECODER_SERVICE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "decoder/generate.h"
#include "engine/scheduler.h"
#include "proto/decoder_worker.grpc.pb.h"

namespace pixtral {

struct DecoderServiceOptions {
  int vocab_size = 0;
  // Width of an image feature row: the vision encoder's hidden size (the decoder applies the
  // vision-language adapter itself).
  int feature_width = 0;
  int image_token_id = 10;
  // Prompt plus completion must fit this many tokens.
  int max_context_tokens = 0;
  // max_tokens when a request leaves it 0.
  int default_max_tokens = 256;
};

// Turns a Generate header plus the received feature rows (those of the images from
// `first_feature_image` on) into a GenerationRequest, or INVALID_ARGUMENT naming what is wrong.
// Exposed for tests and the gateway's embedded path.
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateHeader& header,
                                                      std::vector<float> image_features,
                                                      const DecoderServiceOptions& options,
                                                      int first_feature_image = 0);

class DecoderService final : public v1::Decoder::Service {
 public:
  DecoderService(Scheduler& scheduler, const DecoderServiceOptions& options)
      : scheduler_(scheduler), options_(options) {}

  grpc::Status Generate(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::GenerateOutput, v1::GenerateInput>* stream) override;

 private:
  // What a features_on_request call asks the gateway for, and the pin that keeps the rest cached.
  struct FeatureAsk {
    int64_t pin = 0;
    int first_image = 0;
  };
  absl::StatusOr<FeatureAsk> AskForFeatures(const v1::GenerateHeader& header);

  Scheduler& scheduler_;
  const DecoderServiceOptions options_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_DECODER_WORKER_DECODER_SERVICE_H_
