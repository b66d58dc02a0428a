#include "services/gateway/gateway_service.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"

namespace pixtral {
namespace {

CallContext ContextOf(grpc::ServerContext* context) {
  return {.deadline = absl::FromChrono(context->deadline()),
          .cancelled = [context] { return context->IsCancelled(); },
          .request_id = RequestIdOf(*context)};
}

}  // namespace

grpc::Status GatewayService::Complete(grpc::ServerContext* context,
                                      const v1::ChatCompletionRequest& request,
                                      const std::function<bool(const ChatDelta&)>& on_delta,
                                      ChatResult* result) {
  if (running_.fetch_add(1) >= options_.max_concurrent_requests) {
    running_.fetch_sub(1);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("the gateway is running its maximum of ",
                                     options_.max_concurrent_requests, " completions"));
  }
  absl::Cleanup release = [this] { running_.fetch_sub(1); };
  absl::StatusOr<ChatCompletionRequest> chat = FromProto(request, options_.request_limits);
  if (!chat.ok()) return ToGrpcStatus(chat.status());
  const absl::Time start = absl::Now();
  absl::Time first_token = absl::InfinitePast();
  absl::StatusOr<ChatResult> completed = pipeline_.Run(
      *chat, FromProto(request.sampling()), ContextOf(context), [&](const ChatDelta& delta) {
        if (first_token == absl::InfinitePast() && !delta.token_ids.empty()) {
          first_token = absl::Now();
        }
        return on_delta == nullptr || on_delta(delta);
      });
  if (!completed.ok()) return ToGrpcStatus(completed.status());
  AddToRequestSummary(
      *context,
      absl::StrFormat(
          "prompt_tokens=%d image_tokens=%d completion_tokens=%d ttft=%.3f",
          completed->usage.prompt_tokens, completed->usage.image_tokens,
          completed->usage.completion_tokens,
          first_token == absl::InfinitePast() ? 0.0 : absl::ToDoubleSeconds(first_token - start)));
  *result = *std::move(completed);
  return grpc::Status::OK;
}

grpc::Status GatewayService::CreateChatCompletion(grpc::ServerContext* context,
                                                  const v1::ChatCompletionRequest* request,
                                                  v1::ChatCompletionResponse* response) {
  ChatResult result;
  grpc::Status status = Complete(context, *request, nullptr, &result);
  if (!status.ok()) return status;
  ToProto(result, response);
  return grpc::Status::OK;
}

grpc::Status GatewayService::StreamChatCompletion(
    grpc::ServerContext* context, const v1::ChatCompletionRequest* request,
    grpc::ServerWriter<v1::ChatCompletionChunk>* writer) {
  ChatResult result;
  grpc::Status status = Complete(
      context, *request,
      [writer](const ChatDelta& delta) {
        v1::ChatCompletionChunk chunk;
        ToProto(delta, &chunk);
        return writer->Write(chunk);
      },
      &result);
  if (!status.ok()) return status;
  v1::ChatCompletionChunk last;
  last.set_finish_reason(ToProto(result.finish));
  ToProto(result.usage, last.mutable_usage());
  writer->Write(last);
  return grpc::Status::OK;
}

grpc::Status GatewayService::Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* request,
                                      v1::TokenizeResponse* response) {
  absl::StatusOr<std::vector<int>> ids;
  switch (request->input_case()) {
    case v1::TokenizeRequest::kText:
      ids = tokenizer_.Encode(request->text(), /*bos=*/false, /*eos=*/false);
      break;
    case v1::TokenizeRequest::kChat: {
      absl::StatusOr<ChatCompletionRequest> chat =
          FromProto(request->chat(), options_.request_limits);
      ids = chat.ok() ? pipeline_.Tokenize(*chat) : chat.status();
      break;
    }
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "nothing to tokenize");
  }
  if (!ids.ok()) return ToGrpcStatus(ids.status());
  response->mutable_token_ids()->Assign(ids->begin(), ids->end());
  return grpc::Status::OK;
}

grpc::Status GatewayService::GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest*,
                                          v1::ModelInfo* response) {
  *response = options_.model_info;
  return grpc::Status::OK;
}

}  // namespace pixtral
