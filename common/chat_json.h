// JSON as mistral_common writes it into prompts: tool definitions, tool calls and tool results
// are Python objects passed through json.dumps(..., ensure_ascii=False), so their exact bytes
// (", " and ": " separators, non-ASCII kept, keys in the order given) are part of the prompt the
// model was trained on.
//
//   nlohmann::ordered_json call = {{"name", "f"}, {"arguments", JsonOrString("{\"x\":1}")}};
//   PythonJsonDumps(call);   // {"name": "f", "arguments": {"x": 1}}
#ifndef PIXTRAL_COMMON_CHAT_JSON_H_
#define PIXTRAL_COMMON_CHAT_JSON_H_

#include <string>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace pixtral {

// Nesting deeper than this is treated as "not JSON" by JsonOrString (a plain string then).
inline constexpr int kMaxChatJsonDepth = 64;

// Python's json.dumps(value, ensure_ascii=False). Floats use the shortest round-trip digits, as
// Python's repr does (the two differ only in where they switch to exponents beyond 1e15).
std::string PythonJsonDumps(const nlohmann::ordered_json& value);

// mistral_common's _parse_json_content: the JSON value `text` holds, or `text` itself as a JSON
// string when it is not JSON (or nests deeper than kMaxChatJsonDepth).
nlohmann::ordered_json JsonOrString(absl::string_view text);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_CHAT_JSON_H_
