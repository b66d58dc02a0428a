// A chat request as mistral_common's ChatCompletionRequest describes it: system, user and
// assistant messages, where a user message holds a string or a list of text and image chunks.
// These are plain data; MistralTokenizer (chat_encoder.h) validates and encodes them.
//
//   ChatCompletionRequest request;
//   request.messages.push_back(SystemMessage{"Answer briefly."});
//   request.messages.push_back(UserMessage{std::vector<ContentChunk>{
//       ImageURLChunk{"https://example.com/cat.png"}, TextChunk{"What is this?"}}});
#ifndef PIXTRAL_COMMON_CHAT_H_
#define PIXTRAL_COMMON_CHAT_H_

#include <string>
#include <variant>
#include <vector>

namespace pixtral {

struct TextChunk {
  std::string text;
};

// An image by reference: an http(s) URL, a `data:image/...;base64,...` URI or a `file://` path.
struct ImageURLChunk {
  std::string url;
};

// An image by value: the encoded file bytes (PNG, JPEG, WebP, GIF, BMP).
struct ImageChunk {
  std::string data;
};

using ContentChunk = std::variant<TextChunk, ImageURLChunk, ImageChunk>;

struct SystemMessage {
  std::string content;
};

struct UserMessage {
  std::variant<std::string, std::vector<ContentChunk>> content;
};

struct AssistantMessage {
  std::string content;
  // A prefix is the start of the answer the model must continue: it must be the last message
  // and gets no </s>.
  bool prefix = false;
};

using ChatMessage = std::variant<SystemMessage, UserMessage, AssistantMessage>;

struct ChatCompletionRequest {
  std::vector<ChatMessage> messages;
};

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_CHAT_H_
