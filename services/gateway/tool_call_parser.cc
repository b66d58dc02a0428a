#include "services/gateway/tool_call_parser.h"

#include <string>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/chat_json.h"

namespace pixtral {
namespace {

using ordered_json = nlohmann::ordered_json;

bool IsToolCallId(absl::string_view id) {
  if (id.size() != 9) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c)) return false;
  }
  return true;
}

bool IsFunctionName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-') return false;
  }
  return true;
}

std::string RandomToolCallId() {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  absl::BitGen gen;
  std::string id(9, ' ');
  for (char& c : id) c = kAlphabet[absl::Uniform<size_t>(gen, 0, sizeof(kAlphabet) - 1)];
  return id;
}

}  // namespace

absl::StatusOr<std::vector<ToolCall>> ParseToolCalls(absl::string_view text) {
  ordered_json parsed = JsonOrString(text);
  if (parsed.is_object()) parsed = ordered_json::array({std::move(parsed)});
  if (!parsed.is_array() || parsed.empty()) {
    return absl::InvalidArgumentError("the tool calls are not a JSON array of calls");
  }
  std::vector<ToolCall> calls;
  for (const ordered_json& item : parsed) {
    if (!item.is_object() || !item.contains("name") || !item["name"].is_string()) {
      return absl::InvalidArgumentError("a tool call has no name");
    }
    ToolCall call;
    call.name = item["name"].get<std::string>();
    if (!IsFunctionName(call.name)) {
      return absl::InvalidArgumentError(absl::StrCat("bad function name \"", call.name, "\""));
    }
    const auto arguments = item.find("arguments");
    if (arguments == item.end() || arguments->is_null()) {
      call.arguments = "{}";
    } else if (arguments->is_string()) {
      call.arguments = arguments->get<std::string>();
    } else {
      call.arguments = PythonJsonDumps(*arguments);
    }
    const auto id = item.find("id");
    call.id = id != item.end() && id->is_string() && IsToolCallId(id->get<std::string>())
                  ? id->get<std::string>()
                  : RandomToolCallId();
    calls.push_back(std::move(call));
  }
  return calls;
}

}  // namespace pixtral
