// The public API's messages (proto/gateway.proto) to the library's chat types and back, both
// ways in one place: the gateway reads requests and writes results, the client library
// (services/client) writes requests and reads results. Every field of a request the gateway
// receives is checked here or by the chat encoder; nothing a client sends can make the gateway
// misbehave.
#ifndef PIXTRAL_SERVICES_GATEWAY_PROTO_CONVERT_H_
#define PIXTRAL_SERVICES_GATEWAY_PROTO_CONVERT_H_

#include "absl/status/statusor.h"
#include "common/chat.h"
#include "common/model_config.h"
#include "proto/gateway.pb.h"
#include "services/gateway/chat_types.h"

namespace pixtral {

struct RequestLimits {
  // Encoded bytes of one image sent inline (ImageChunk); URLs are capped by the image fetcher.
  int64_t max_image_bytes = 20 << 20;
  int max_messages = 256;
  int max_chunks_per_message = 256;  // and tool calls of one message
  int max_tools = 128;
  // Text of all messages together: more than the model's context can hold, yet a bound on the
  // tokenizer's work for one request.
  int64_t max_text_bytes = 4 << 20;
  // An image URL; a data: URI of the largest allowed image (base64) fits.
  int64_t max_url_bytes() const { return max_image_bytes / 3 * 4 + 4096; }
};

// INVALID_ARGUMENT for an unspecified role, an empty chunk, an image in a system, assistant or
// tool message, too many messages, chunks, tool calls or tools, too much text (tool calls and
// tools included), or an inline image or URL over the limit. Text chunks of a system, assistant
// or tool message join with "\n\n", as mistral_common joins a message's chunks.
absl::StatusOr<ChatCompletionRequest> FromProto(const v1::ChatCompletionRequest& request,
                                                const RequestLimits& limits);

// The same RequestLimits on a request that did not come as a proto (the HTTP front's JSON):
// messages, chunks and tool calls of one message, tools, text (tools and tool calls included),
// inline images and image URLs. INVALID_ARGUMENT naming the limit.
absl::Status CheckRequestLimits(const ChatCompletionRequest& request, const RequestLimits& limits);

// The gateway's answers, whole or streamed.
void ToProto(const ChatResult& result, v1::ChatCompletionResponse* out);
// A streamed chunk before the last: the delta's text, ids and logprobs.
void ToProto(const ChatDelta& delta, v1::ChatCompletionChunk* out);

// The client's direction: a user message's plain string becomes one text chunk.
absl::StatusOr<v1::ChatCompletionRequest> ToProto(const ChatCompletionRequest& request,
                                                  const ChatParams& params);
void ToProto(const ChatParams& params, v1::SamplingParams* out);

ChatFinish FromProto(v1::FinishReason finish);
ChatUsage FromProto(const v1::Usage& usage);
std::vector<ToolCall> FromProto(const google::protobuf::RepeatedPtrField<v1::ToolCall>& calls);
ChatResult FromProto(const v1::ChatCompletionResponse& response);
ChatDelta FromProto(const v1::ChatCompletionChunk& chunk);

ChatParams FromProto(const v1::SamplingParams& sampling);

v1::FinishReason ToProto(ChatFinish finish);
void ToProto(const ChatUsage& usage, v1::Usage* out);

// What GetModelInfo reports: the model folder's name and what its config and the serving limits
// allow.
v1::ModelInfo ToModelInfo(const std::string& model_dir, const ModelConfig& config,
                          int max_context_tokens, int max_images_per_request);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_PROTO_CONVERT_H_
