// OpenAI's chat-completions JSON (and vLLM's /tokenize, /detokenize) to the pipeline's types and
// back: the HTTP API's whole vocabulary, with no sockets in it. Requests are untrusted: every
// field is type-checked, sizes are bounded, nesting is bounded, and anything wrong is an
// INVALID_ARGUMENT status naming the field; fields OpenAI defines that this server does not read
// (and unknown ones) are ignored as OpenAI ignores them, while those whose meaning it cannot honour
// (n > 1, top_logprobs > 0, penalties, a forced tool choice) are refused rather than silently
// dropped.
//
//   absl::StatusOr<OpenAiChatRequest> request = ParseChatCompletionRequest(body, limits);
//   absl::StatusOr<ChatResult> result = pipeline.Run(request->chat, request->params, {}, nullptr);
//   std::string reply = ChatCompletionJson(identity, *result, tokenizer, request->logprobs).dump();
#ifndef PIXTRAL_SERVICES_GATEWAY_OPENAI_JSON_H_
#define PIXTRAL_SERVICES_GATEWAY_OPENAI_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/chat.h"
#include "common/tekken.h"
#include "nlohmann/json.hpp"
#include "services/gateway/chat_types.h"
#include "services/gateway/proto_convert.h"

namespace pixtral {

// Deeper JSON than this is refused (a request needs 6 levels; tool schemas a few more).
inline constexpr int kMaxJsonDepth = 64;

// A parsed POST /v1/chat/completions body.
struct OpenAiChatRequest {
  std::string model;  // empty if the client sent none
  ChatCompletionRequest chat;
  ChatParams params;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

absl::StatusOr<OpenAiChatRequest> ParseChatCompletionRequest(absl::string_view body,
                                                             const RequestLimits& limits);

// A parsed POST /tokenize body: a plain prompt or a chat (vLLM's two request shapes).
struct TokenizeHttpRequest {
  std::string model;
  bool is_chat = false;
  std::string prompt;
  bool add_special_tokens = true;  // the prompt form only: <s> first
  ChatCompletionRequest chat;
};

absl::StatusOr<TokenizeHttpRequest> ParseTokenizeRequest(absl::string_view body,
                                                         const RequestLimits& limits);

// A parsed POST /detokenize body.
struct DetokenizeHttpRequest {
  std::string model;
  std::vector<int> tokens;
};

absl::StatusOr<DetokenizeHttpRequest> ParseDetokenizeRequest(absl::string_view body);

// What every response and chunk of one completion repeats.
struct CompletionIdentity {
  std::string id;  // "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

// "stop", "length" or "tool_calls".
const char* FinishReasonName(ChatFinish finish);

// OpenAI's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}], with
// "index" as streamed deltas carry it.
nlohmann::json ToolCallsJson(const std::vector<ToolCall>& calls, bool with_index);

// The `logprobs` object of a choice for `token_ids` (OpenAI's {"content": [{token, logprob,
// bytes, top_logprobs: []}]}).
nlohmann::json LogprobsJson(const TekkenTokenizer& tokenizer, const std::vector<int32_t>& token_ids,
                            const std::vector<float>& logprobs);

nlohmann::json UsageJson(const ChatUsage& usage);

// The unary response ("chat.completion"); `logprobs` adds each choice's logprobs.
nlohmann::json ChatCompletionJson(const CompletionIdentity& identity, const ChatResult& result,
                                  const TekkenTokenizer& tokenizer, bool logprobs);

// One "chat.completion.chunk" with a single choice: `delta` ({"role": ...} or {"content": ...}),
// `logprobs` (null if not asked for), `finish_reason` (nullptr: not the last). With
// `include_usage`, the chunk has "usage": null, as OpenAI sends it before the usage chunk.
nlohmann::json ChunkJson(const CompletionIdentity& identity, nlohmann::json delta,
                         nlohmann::json logprobs, const char* finish_reason, bool include_usage);

// The last chunk of a stream with include_usage: no choices, the usage.
nlohmann::json UsageChunkJson(const CompletionIdentity& identity, const ChatUsage& usage);

// An OpenAI error object and the HTTP status that carries it.
struct HttpError {
  int http_status = 500;
  nlohmann::json body;
};

HttpError MakeHttpError(int http_status, absl::string_view message, absl::string_view code = "");

// The HTTP status for a pipeline or parsing error: the client's mistakes are 4xx (an image over
// the size limits is 413), an overloaded or missing backend is 429 or 503.
HttpError HttpErrorOf(const absl::Status& status);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_OPENAI_JSON_H_
