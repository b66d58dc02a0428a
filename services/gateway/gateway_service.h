// The public gRPC API (pixtral.v1.Gateway): a thin shell over ChatPipeline. It converts
// messages, bounds how many completions run at once (RESOURCE_EXHAUSTED beyond, rather than an
// unbounded queue), passes the client's deadline and cancellation down, and streams deltas.
#ifndef PIXTRAL_SERVICES_GATEWAY_GATEWAY_SERVICE_H_
#define PIXTRAL_SERVICES_GATEWAY_GATEWAY_SERVICE_H_

#include <string>

#include "proto/gateway.grpc.pb.h"
#include "services/gateway/chat_pipeline.h"
#include "services/gateway/completion_slots.h"
#include "services/gateway/proto_convert.h"

namespace pixtral {

struct GatewayOptions {
  int max_concurrent_requests = 64;
  RequestLimits request_limits;
  v1::ModelInfo model_info;
};

class GatewayService final : public v1::Gateway::Service {
 public:
  // `pipeline` and `tokenizer` must outlive the service.
  GatewayService(ChatPipeline& pipeline, const TekkenTokenizer& tokenizer,
                 const GatewayOptions& options)
      : pipeline_(pipeline),
        tokenizer_(tokenizer),
        options_(options),
        slots_(options.max_concurrent_requests) {}

  // The completions running through this service; the HTTP front shares the same limit.
  CompletionSlots& slots() { return slots_; }

  grpc::Status CreateChatCompletion(grpc::ServerContext* context,
                                    const v1::ChatCompletionRequest* request,
                                    v1::ChatCompletionResponse* response) override;
  grpc::Status StreamChatCompletion(grpc::ServerContext* context,
                                    const v1::ChatCompletionRequest* request,
                                    grpc::ServerWriter<v1::ChatCompletionChunk>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

 private:
  // Runs a completion if a slot is free; `on_delta` may be empty.
  grpc::Status Complete(grpc::ServerContext* context, const v1::ChatCompletionRequest& request,
                        const std::function<bool(const ChatDelta&)>& on_delta, ChatResult* result);

  ChatPipeline& pipeline_;
  const TekkenTokenizer& tokenizer_;
  const GatewayOptions options_;
  CompletionSlots slots_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_GATEWAY_SERVICE_H_
