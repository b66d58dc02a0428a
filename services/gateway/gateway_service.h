// The public gRPC API (pixtral.v1.Gateway): a thin shell over ChatPipeline. It checks the bearer
// token when one is required, converts messages, bounds how many completions and tokenizations
// run at once (RESOURCE_EXHAUSTED beyond, rather than an unbounded queue), passes the client's
// deadline and cancellation down, streams deltas, and returns errors as a public client may see
// them (PublicStatus: no worker addresses or library text; the detail is logged).
#ifndef PIXTRAL_SERVICES_GATEWAY_GATEWAY_SERVICE_H_
#define PIXTRAL_SERVICES_GATEWAY_GATEWAY_SERVICE_H_

#include <memory>
#include <string>

#include "proto/gateway.grpc.pb.h"
#include "services/common/auth.h"
#include "services/gateway/chat_pipeline.h"
#include "services/gateway/completion_slots.h"
#include "services/gateway/proto_convert.h"

namespace pixtral {

struct GatewayOptions {
  // Completions and tokenizations running at once.
  int max_concurrent_requests = 64;
  RequestLimits request_limits;
  v1::ModelInfo model_info;
  // When set (--auth_token_file), every call needs `authorization: Bearer <token>`.
  std::shared_ptr<const BearerTokens> tokens;
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
  absl::Status Complete(grpc::ServerContext* context, const v1::ChatCompletionRequest& request,
                        const std::function<bool(const ChatDelta&)>& on_delta, ChatResult* result);
  absl::Status TokenizeIds(const v1::TokenizeRequest& request, std::vector<int>* ids);
  // RESOURCE_EXHAUSTED: all max_concurrent_requests slots (shared with the HTTP front) are taken.
  absl::Status TooBusy() const;

  ChatPipeline& pipeline_;
  const TekkenTokenizer& tokenizer_;
  const GatewayOptions options_;
  CompletionSlots slots_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_GATEWAY_SERVICE_H_
