// A chat request as mistral_common's ChatCompletionRequest describes it: system, user, assistant
// and tool messages, where a user message holds a string or a list of text and image chunks, and
// the tools (functions) the model may call. These are plain data; MistralTokenizer
// (chat_encoder.h) validates and encodes them.
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

// A function the model asked to call (mistral_common's ToolCall).
struct ToolCall {
  // Nine letters and digits, or "null" (no id), as mistral_common v3 requires.
  std::string id = "null";
  std::string name;
  // The arguments as JSON text (normally an object); empty means {}.
  std::string arguments;
};

struct AssistantMessage {
  std::string content;
  // A prefix is the start of the answer the model must continue: it must be the last message
  // and gets no </s>.
  bool prefix = false;
  // Either content or tool calls, never both.
  std::vector<ToolCall> tool_calls;
};

// A tool's result, answering the call with the same id.
struct ToolMessage {
  std::string content;  // JSON text or plain text
  std::string tool_call_id;
  std::string name;  // optional (mistral_common v3 does not encode it)
};

using ChatMessage = std::variant<SystemMessage, UserMessage, AssistantMessage, ToolMessage>;

// A function the model may call (mistral_common's Tool with a Function).
struct Tool {
  std::string name;
  std::string description;
  // A JSON Schema object as JSON text; empty means {}.
  std::string parameters;
};

struct ChatCompletionRequest {
  std::vector<ChatMessage> messages;
  std::vector<Tool> tools;
};

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_CHAT_H_
