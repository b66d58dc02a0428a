#include "services/gateway/gateway_service.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/grpc_auth.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"
#include "services/common/public_status.h"

namespace pixtral {
namespace {

CallContext ContextOf(grpc::ServerContext* context, RequestTimings* timings) {
  return {.deadline = absl::FromChrono(context->deadline()),
          .cancelled = [context] { return context->IsCancelled(); },
          .request_id = RequestIdOf(*context),
          .timings = timings};
}

}  // namespace

absl::Status GatewayService::TooBusy() const {
  return absl::ResourceExhaustedError(absl::StrCat("the gateway is running its maximum of ",
                                                   slots_.max(), " requests; retry later"));
}

absl::Status GatewayService::Complete(grpc::ServerContext* context,
                                      const v1::ChatCompletionRequest& request,
                                      const std::function<bool(const ChatDelta&)>& on_delta,
                                      ChatResult* result) {
  std::optional<CompletionSlots::Slot> slot = slots_.TryAcquire();
  if (!slot.has_value()) return TooBusy();
  absl::StatusOr<ChatCompletionRequest> chat = FromProto(request, options_.request_limits);
  if (!chat.ok()) return chat.status();
  const absl::Time start = absl::Now();
  absl::Time first_token = absl::InfinitePast();
  RequestTimings timings;
  absl::StatusOr<ChatResult> completed =
      pipeline_.Run(*chat, FromProto(request.sampling()), ContextOf(context, &timings),
                    [&](const ChatDelta& delta) {
                      if (first_token == absl::InfinitePast() && !delta.token_ids.empty()) {
                        first_token = absl::Now();
                      }
                      return on_delta == nullptr || on_delta(delta);
                    });
  if (!completed.ok()) return completed.status();
  // Where the time went, for benchmarks (bench/served_bench): servers' own clocks, no content.
  context->AddTrailingMetadata(kTimingKey, timings.ToHeader());
  AddToRequestSummary(
      *context,
      absl::StrFormat(
          "prompt_tokens=%d image_tokens=%d completion_tokens=%d ttft=%.3f",
          completed->usage.prompt_tokens, completed->usage.image_tokens,
          completed->usage.completion_tokens,
          first_token == absl::InfinitePast() ? 0.0 : absl::ToDoubleSeconds(first_token - start)));
  *result = *std::move(completed);
  return absl::OkStatus();
}

grpc::Status GatewayService::CreateChatCompletion(grpc::ServerContext* context,
                                                  const v1::ChatCompletionRequest* request,
                                                  v1::ChatCompletionResponse* response) {
  if (grpc::Status denied = CheckCallToken(options_.tokens.get(), *context); !denied.ok()) {
    return denied;
  }
  ChatResult result;
  absl::Status status = Complete(context, *request, nullptr, &result);
  if (!status.ok()) return PublicStatus(status, RequestIdOf(*context));
  ToProto(result, response);
  return grpc::Status::OK;
}

grpc::Status GatewayService::StreamChatCompletion(
    grpc::ServerContext* context, const v1::ChatCompletionRequest* request,
    grpc::ServerWriter<v1::ChatCompletionChunk>* writer) {
  if (grpc::Status denied = CheckCallToken(options_.tokens.get(), *context); !denied.ok()) {
    return denied;
  }
  ChatResult result;
  absl::Status status = Complete(
      context, *request,
      [writer](const ChatDelta& delta) {
        v1::ChatCompletionChunk chunk;
        ToProto(delta, &chunk);
        return writer->Write(chunk);
      },
      &result);
  if (!status.ok()) return PublicStatus(status, RequestIdOf(*context));
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

absl::Status GatewayService::TokenizeIds(const v1::TokenizeRequest& request,
                                         std::vector<int>* ids) {
  // Tokenizing a long text or a chat with images costs CPU like a completion's front half.
  std::optional<CompletionSlots::Slot> slot = slots_.TryAcquire();
  if (!slot.has_value()) return TooBusy();
  absl::StatusOr<std::vector<int>> encoded;
  switch (request.input_case()) {
    case v1::TokenizeRequest::kText:
      if (static_cast<int64_t>(request.text().size()) > options_.request_limits.max_text_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("the text has ", request.text().size(), " bytes; at most ",
                         options_.request_limits.max_text_bytes, " are accepted"));
      }
      encoded = tokenizer_.Encode(request.text(), /*bos=*/false, /*eos=*/false);
      break;
    case v1::TokenizeRequest::kChat: {
      absl::StatusOr<ChatCompletionRequest> chat =
          FromProto(request.chat(), options_.request_limits);
      encoded = chat.ok() ? pipeline_.Tokenize(*chat) : chat.status();
      break;
    }
    default:
      return absl::InvalidArgumentError("nothing to tokenize");
  }
  if (!encoded.ok()) return encoded.status();
  *ids = *std::move(encoded);
  return absl::OkStatus();
}

grpc::Status GatewayService::Tokenize(grpc::ServerContext* context,
                                      const v1::TokenizeRequest* request,
                                      v1::TokenizeResponse* response) {
  if (grpc::Status denied = CheckCallToken(options_.tokens.get(), *context); !denied.ok()) {
    return denied;
  }
  std::vector<int> ids;
  if (absl::Status status = TokenizeIds(*request, &ids); !status.ok()) {
    return PublicStatus(status, RequestIdOf(*context));
  }
  response->mutable_token_ids()->Assign(ids.begin(), ids.end());
  return grpc::Status::OK;
}

grpc::Status GatewayService::GetModelInfo(grpc::ServerContext* context,
                                          const v1::GetModelInfoRequest*, v1::ModelInfo* response) {
  if (grpc::Status denied = CheckCallToken(options_.tokens.get(), *context); !denied.ok()) {
    return denied;
  }
  *response = options_.model_info;
  return grpc::Status::OK;
}

}  // namespace pixtral
