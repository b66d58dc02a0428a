#include "services/client/gateway_client.h"

#include <utility>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "services/common/grpc_status.h"
#include "services/gateway/proto_convert.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<GatewayClient>> GatewayClient::Connect(
    const std::string& address, const GatewayClientOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(options.max_message_bytes);
  arguments.SetMaxSendMessageSize(options.max_message_bytes);
  return std::make_unique<GatewayClient>(
      grpc::CreateCustomChannel(address, *credentials, arguments), options);
}

std::unique_ptr<GatewayClient> GatewayClient::Create(const std::string& address,
                                                     const GatewayClientOptions& options) {
  absl::StatusOr<std::unique_ptr<GatewayClient>> client = Connect(address, options);
  if (client.ok()) return *std::move(client);
  std::unique_ptr<GatewayClient> unusable(new GatewayClient(nullptr, options));
  unusable->unusable_ = client.status();
  return unusable;
}

GatewayClient::GatewayClient(std::shared_ptr<grpc::Channel> channel,
                             const GatewayClientOptions& options)
    : stub_(channel != nullptr ? v1::Gateway::NewStub(std::move(channel)) : nullptr),
      options_(options) {}

std::unique_ptr<grpc::ClientContext> GatewayClient::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (options_.timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  return context;
}

absl::StatusOr<ChatResult> GatewayClient::Complete(const ChatCompletionRequest& request,
                                                   const ChatParams& params) const {
  if (!unusable_.ok()) return unusable_;
  absl::StatusOr<v1::ChatCompletionRequest> proto = ToProto(request, params);
  if (!proto.ok()) return proto.status();
  v1::ChatCompletionResponse response;
  grpc::Status status = stub_->CreateChatCompletion(NewContext().get(), *proto, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return FromProto(response);
}

absl::StatusOr<ChatResult> GatewayClient::Stream(
    const ChatCompletionRequest& request, const ChatParams& params,
    const std::function<bool(const ChatDelta&)>& on_delta, std::string* timing) const {
  if (!unusable_.ok()) return unusable_;
  absl::StatusOr<v1::ChatCompletionRequest> proto = ToProto(request, params);
  if (!proto.ok()) return proto.status();
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  std::unique_ptr<grpc::ClientReader<v1::ChatCompletionChunk>> reader =
      stub_->StreamChatCompletion(context.get(), *proto);
  ChatResult result;
  bool finished = false;
  v1::ChatCompletionChunk chunk;
  while (reader->Read(&chunk)) {
    ChatDelta delta = FromProto(chunk);
    result.text += delta.text;
    result.token_ids.insert(result.token_ids.end(), delta.token_ids.begin(), delta.token_ids.end());
    result.logprobs.insert(result.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
    if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finished = true;
      result.finish = FromProto(chunk.finish_reason());
      result.usage = FromProto(chunk.usage());
      result.tool_calls = FromProto(chunk.tool_calls());
    }
    if ((!delta.text.empty() || !delta.token_ids.empty()) && on_delta && !on_delta(delta)) {
      context->TryCancel();
      reader->Finish();
      return absl::CancelledError("the client cancelled the completion");
    }
  }
  grpc::Status status = reader->Finish();
  if (timing != nullptr) {
    const auto& trailers = context->GetServerTrailingMetadata();
    const auto it = trailers.find("x-pixtral-timing");
    *timing = it == trailers.end() ? "" : std::string(it->second.data(), it->second.size());
  }
  if (!status.ok()) return ToAbslStatus(status);
  if (!finished) {
    return absl::UnavailableError("the gateway ended the stream without a finish reason");
  }
  return result;
}

absl::StatusOr<std::vector<int>> GatewayClient::Tokenize(
    const ChatCompletionRequest& request) const {
  absl::StatusOr<v1::ChatCompletionRequest> chat = ToProto(request, {});
  if (!chat.ok()) return chat.status();
  v1::TokenizeRequest proto;
  *proto.mutable_chat() = *std::move(chat);
  return Tokenize(proto);
}

absl::StatusOr<std::vector<int>> GatewayClient::Tokenize(absl::string_view text) const {
  v1::TokenizeRequest proto;
  proto.set_text(std::string(text));
  return Tokenize(proto);
}

absl::StatusOr<std::vector<int>> GatewayClient::Tokenize(const v1::TokenizeRequest& request) const {
  if (!unusable_.ok()) return unusable_;
  v1::TokenizeResponse response;
  grpc::Status status = stub_->Tokenize(NewContext().get(), request, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return std::vector<int>(response.token_ids().begin(), response.token_ids().end());
}

absl::StatusOr<v1::ModelInfo> GatewayClient::GetModelInfo() const {
  if (!unusable_.ok()) return unusable_;
  v1::ModelInfo info;
  grpc::Status status = stub_->GetModelInfo(NewContext().get(), v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return ToAbslStatus(status);
  return info;
}

}  // namespace pixtral
