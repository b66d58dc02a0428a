#include "tests/gateway_calls.h"

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/health.grpc.pb.h"

namespace pixtral {
namespace {

void SetTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace

v1::ChatMessage UserMessage(const std::string& text, const std::vector<std::string>& images) {
  v1::ChatMessage message;
  message.set_role(v1::ChatMessage::ROLE_USER);
  for (const std::string& image : images) message.add_content()->set_image(image);
  message.add_content()->set_text(text);
  return message;
}

v1::ChatMessage AssistantMessage(const std::string& text) {
  v1::ChatMessage message;
  message.set_role(v1::ChatMessage::ROLE_ASSISTANT);
  message.add_content()->set_text(text);
  return message;
}

v1::ChatCompletionRequest GreedyChat(const std::string& text,
                                     const std::vector<std::string>& images, int max_tokens) {
  v1::ChatCompletionRequest request;
  *request.add_messages() = UserMessage(text, images);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

std::unique_ptr<v1::Gateway::Stub> GatewayStub(const std::string& address) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(64 << 20);
  return v1::Gateway::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments));
}

CallResult Unary(v1::Gateway::Stub& stub, const v1::ChatCompletionRequest& request,
                 absl::Duration timeout) {
  grpc::ClientContext context;
  SetTimeout(context, timeout);
  v1::ChatCompletionResponse response;
  CallResult result;
  result.status = stub.CreateChatCompletion(&context, request, &response);
  result.text = response.text();
  result.token_ids.assign(response.token_ids().begin(), response.token_ids().end());
  result.finish_reason = response.finish_reason();
  result.usage = response.usage();
  return result;
}

CallResult Streamed(v1::Gateway::Stub& stub, const v1::ChatCompletionRequest& request,
                    absl::Duration timeout) {
  grpc::ClientContext context;
  SetTimeout(context, timeout);
  CallResult result;
  auto reader = stub.StreamChatCompletion(&context, request);
  v1::ChatCompletionChunk chunk;
  while (reader->Read(&chunk)) {
    ++result.chunks;
    result.text += chunk.delta();
    result.token_ids.insert(result.token_ids.end(), chunk.token_ids().begin(),
                            chunk.token_ids().end());
    if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      result.finish_reason = chunk.finish_reason();
      result.usage = chunk.usage();
    }
  }
  result.status = reader->Finish();
  return result;
}

bool IsServing(const std::string& address) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(5));
  grpc::health::v1::HealthCheckResponse response;
  return stub->Check(&context, {}, &response).ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

}  // namespace pixtral
