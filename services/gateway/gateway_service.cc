#include "services/gateway/gateway_service.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/common/grpc_status.h"

namespace pixtral {
namespace {

CallContext ContextOf(grpc::ServerContext* context) {
  return {.deadline = absl::FromChrono(context->deadline()),
          .cancelled = [context] { return context->IsCancelled(); }};
}

}  // namespace

grpc::Status GatewayService::Complete(grpc::ServerContext* context,
                                      const v1::ChatCompletionRequest& request,
                                      const std::function<bool(const ChatDelta&)>& on_delta,
                                      ChatResult* result) {
  std::optional<CompletionSlots::Slot> slot = slots_.TryAcquire();
  if (!slot.has_value()) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("the gateway is running its maximum of ",
                                     options_.max_concurrent_requests, " completions"));
  }
  absl::StatusOr<ChatCompletionRequest> chat = FromProto(request, options_.request_limits);
  if (!chat.ok()) return ToGrpcStatus(chat.status());
  absl::StatusOr<ChatResult> completed =
      pipeline_.Run(*chat, FromProto(request.sampling()), ContextOf(context), on_delta);
  if (!completed.ok()) return ToGrpcStatus(completed.status());
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
  for (const ToolCall& call : result.tool_calls) {
    v1::ToolCall* out = last.add_tool_calls();
    out->set_id(call.id);
    out->set_name(call.name);
    out->set_arguments(call.arguments);
  }
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
