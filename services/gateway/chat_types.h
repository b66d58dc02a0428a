// What a chat completion takes besides the messages (ChatParams) and what it gives back, whole
// (ChatResult) or as it is generated (ChatDelta). Plain data shared by the chat pipeline, the
// gateway's proto conversion and the client library, so a client need not link the model.
#ifndef PIXTRAL_SERVICES_GATEWAY_CHAT_TYPES_H_
#define PIXTRAL_SERVICES_GATEWAY_CHAT_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/chat.h"

namespace pixtral {

struct ChatParams {
  // 0: the pipeline's default.
  int max_tokens = 0;
  float temperature = 0.0f;
  // 0 or 1: no nucleus cut.
  float top_p = 1.0f;
  // Unset: a fresh random seed.
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool logprobs = false;
};

struct ChatDelta {
  std::string text;  // whole UTF-8 characters
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
};

enum class ChatFinish { kStop, kLength, kToolCalls };

struct ChatUsage {
  int prompt_tokens = 0;
  int image_tokens = 0;  // [IMG], [IMG_BREAK] and [IMG_END] among prompt_tokens
  int completion_tokens = 0;
};

struct ChatResult {
  std::string text;                  // empty when the model called tools
  std::vector<ToolCall> tool_calls;  // with ChatFinish::kToolCalls
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  ChatFinish finish = ChatFinish::kStop;
  ChatUsage usage;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_CHAT_TYPES_H_
