// The checks mistral_common's MistralRequestValidatorV3 makes on a chat in serving mode, before
// the chat is encoded, plus this server's image limit. Every failure is InvalidArgument naming
// the message ("message 2: ...").
//
// - At least one message; a single message is a user or system message; the last message is a
//   user, tool or system message, or an assistant prefix.
// - Role order: after system come user, assistant or system; after user: assistant, system or
//   user; after assistant: assistant, user or tool; after tool: assistant, tool or user.
// - Each assistant message has content or tool calls, not both and not neither; a prefix is the
//   last message; an assistant's tool calls are answered by as many tool messages before the next
//   assistant message (and by the end of the chat).
// - Function names match [a-zA-Z0-9_-]{1,64}; tool call ids are 9 letters and digits (or "null"
//   for a call); a tool message names the call it answers; a tool's parameters are a JSON object.
//   (mistral_common also checks the parameters against the JSON Schema meta-schema; this does not.)
//
//   if (absl::Status status = ValidateChatRequest(request, 8); !status.ok()) return status;
#ifndef PIXTRAL_COMMON_CHAT_VALIDATE_H_
#define PIXTRAL_COMMON_CHAT_VALIDATE_H_

#include "absl/status/status.h"
#include "common/chat.h"

namespace pixtral {

absl::Status ValidateChatRequest(const ChatCompletionRequest& request, int max_images);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_CHAT_VALIDATE_H_
