// A generated answer that began with [TOOL_CALLS] into the calls it makes. The model writes the
// calls as mistral_common encodes them in prompts (chat_encoder.h):
//
//   [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]
//
//   absl::StatusOr<std::vector<ToolCall>> calls = ParseToolCalls(text_after_the_token);
//   // calls->at(0).arguments == "{\"city\": \"Paris\"}"
//
// A call without a valid id (9 letters and digits) gets a fresh random one, since the client must
// answer each call by id. Arguments come back as JSON text, as OpenAI's API carries them.
#ifndef PIXTRAL_SERVICES_GATEWAY_TOOL_CALL_PARSER_H_
#define PIXTRAL_SERVICES_GATEWAY_TOOL_CALL_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/chat.h"

namespace pixtral {

// InvalidArgument when `text` is not a JSON array of {"name": string, "arguments": ...} objects
// (a single such object is accepted too), or a name is not a valid function name.
absl::StatusOr<std::vector<ToolCall>> ParseToolCalls(absl::string_view text);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_TOOL_CALL_PARSER_H_
