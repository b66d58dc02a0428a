#include "common/chat_validate.h"

#include <string>
#include <variant>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/chat_json.h"

namespace pixtral {
namespace {

enum class Role { kSystem, kUser, kAssistant, kTool };

Role RoleOf(const ChatMessage& message) { return static_cast<Role>(message.index()); }

const char* RoleName(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
    case Role::kTool:
      return "tool";
  }
  return "?";
}

const char* Article(Role role) { return role == Role::kAssistant ? "an" : "a"; }

absl::Status Invalid(size_t index, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("message ", index, ": ", what));
}

// ^[a-zA-Z0-9_-]{1,64}$
bool IsFunctionName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-') return false;
  }
  return true;
}

// ^[a-zA-Z0-9]{9}$
bool IsToolCallId(absl::string_view id) {
  if (id.size() != 9) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c)) return false;
  }
  return true;
}

absl::Status BadFunctionName(size_t index, absl::string_view name) {
  return Invalid(index,
                 absl::StrCat("function name \"", name,
                              "\" must be 1 to 64 of a-z, A-Z, 0-9, underscores and dashes"));
}

absl::Status ValidateStructure(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return absl::InvalidArgumentError("the request has no messages");
  const Role last = RoleOf(messages.back());
  if (messages.size() == 1 && last != Role::kUser && last != Role::kSystem) {
    return absl::InvalidArgumentError("a conversation must start with a user or system message");
  }
  if (messages.size() > 1 && last == Role::kAssistant &&
      !std::get<AssistantMessage>(messages.back()).prefix) {
    return Invalid(messages.size() - 1,
                   "the last message must be a user, tool or system message, or an assistant "
                   "prefix, not an assistant message");
  }
  for (size_t i = 1; i < messages.size(); ++i) {
    const Role previous = RoleOf(messages[i - 1]);
    const Role current = RoleOf(messages[i]);
    const bool allowed = (previous == Role::kSystem && current != Role::kTool) ||
                         (previous == Role::kUser && current != Role::kTool) ||
                         (previous == Role::kAssistant && current != Role::kSystem) ||
                         (previous == Role::kTool && current != Role::kSystem);
    if (!allowed) {
      return Invalid(
          i, absl::StrCat(Article(current), " ", RoleName(current), " message cannot follow ",
                          Article(previous), " ", RoleName(previous), " message"));
    }
  }
  // _validate_tool_calls_followed_by_tool_messages (it starts counting at the second message).
  int expected_results = 0;
  for (size_t i = 1; i < messages.size(); ++i) {
    if (RoleOf(messages[i]) == Role::kTool) {
      --expected_results;
    } else if (const auto* assistant = std::get_if<AssistantMessage>(&messages[i])) {
      if (expected_results != 0) {
        return Invalid(i,
                       "the previous assistant message's tool calls and the tool messages "
                       "answering them differ in number");
      }
      expected_results = static_cast<int>(assistant->tool_calls.size());
    }
  }
  if (expected_results != 0) {
    return absl::InvalidArgumentError(
        "the last assistant message's tool calls and the tool messages answering them differ in "
        "number");
  }
  return absl::OkStatus();
}

absl::Status ValidateAssistant(const AssistantMessage& assistant, size_t index, bool is_last) {
  if (assistant.content.empty() == assistant.tool_calls.empty()) {
    return Invalid(index, assistant.content.empty()
                              ? "an assistant message needs content or tool calls"
                              : "an assistant message cannot have both content and tool calls");
  }
  for (const ToolCall& call : assistant.tool_calls) {
    if (!IsFunctionName(call.name)) return BadFunctionName(index, call.name);
    if (call.id != "null" && !IsToolCallId(call.id)) {
      return Invalid(index,
                     absl::StrCat("tool call id \"", call.id, "\" must be 9 of a-z, A-Z and 0-9"));
    }
  }
  if (assistant.prefix && !is_last) {
    return Invalid(index, "an assistant prefix must be the last message");
  }
  return absl::OkStatus();
}

absl::Status ValidateTool(const ToolMessage& tool, size_t index) {
  if (!tool.name.empty() && !IsFunctionName(tool.name)) return BadFunctionName(index, tool.name);
  if (tool.tool_call_id.empty()) return Invalid(index, "a tool message needs a tool_call_id");
  if (!IsToolCallId(tool.tool_call_id)) {
    return Invalid(index, absl::StrCat("tool call id \"", tool.tool_call_id,
                                       "\" must be 9 of a-z, A-Z and 0-9"));
  }
  return absl::OkStatus();
}

absl::Status ValidateUser(const UserMessage& user, size_t index, int* images) {
  const auto* chunks = std::get_if<std::vector<ContentChunk>>(&user.content);
  if (chunks == nullptr) return absl::OkStatus();
  for (size_t c = 0; c < chunks->size(); ++c) {
    const ContentChunk& chunk = (*chunks)[c];
    if (std::holds_alternative<TextChunk>(chunk)) continue;
    const bool empty = std::holds_alternative<ImageChunk>(chunk)
                           ? std::get<ImageChunk>(chunk).data.empty()
                           : std::get<ImageURLChunk>(chunk).url.empty();
    if (empty) return Invalid(index, absl::StrCat("chunk ", c, ": the image is empty"));
    ++*images;
  }
  return absl::OkStatus();
}

absl::Status ValidateTools(const std::vector<Tool>& tools) {
  for (size_t t = 0; t < tools.size(); ++t) {
    const Tool& tool = tools[t];
    if (!IsFunctionName(tool.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tool ", t, ": function name \"", tool.name,
                       "\" must be 1 to 64 of a-z, A-Z, 0-9, underscores and dashes"));
    }
    if (!tool.parameters.empty() && !JsonOrString(tool.parameters).is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tool ", t, " (", tool.name, "): parameters must be a JSON object"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateChatRequest(const ChatCompletionRequest& request, int max_images) {
  const std::vector<ChatMessage>& messages = request.messages;
  if (absl::Status status = ValidateStructure(messages); !status.ok()) return status;
  int images = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    absl::Status status;
    if (const auto* assistant = std::get_if<AssistantMessage>(&messages[i])) {
      status = ValidateAssistant(*assistant, i, i + 1 == messages.size());
    } else if (const auto* tool = std::get_if<ToolMessage>(&messages[i])) {
      status = ValidateTool(*tool, i);
    } else if (const auto* user = std::get_if<UserMessage>(&messages[i])) {
      status = ValidateUser(*user, i, &images);
    }
    if (!status.ok()) return status;
  }
  if (images > max_images) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", images, " images; at most ", max_images, " are allowed"));
  }
  return ValidateTools(request.tools);
}

}  // namespace pixtral
