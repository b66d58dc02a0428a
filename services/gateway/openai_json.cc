#include "services/gateway/openai_json.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/utf8.h"

namespace pixtral {
namespace {

using json = nlohmann::json;
// Requests keep their keys' order: tool schemas are written into the prompt as the client sent
// them (mistral_common keeps Python's dict order).
using ojson = nlohmann::ordered_json;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// The body as a JSON object, refusing malformed text, other top-level types and deep nesting
// (the callback discards anything deeper than kMaxJsonDepth, so no deep value is ever built).
absl::StatusOr<ojson> ParseObject(absl::string_view body) {
  bool too_deep = false;
  ojson::parser_callback_t bound_depth = [&too_deep](int depth, ojson::parse_event_t, ojson&) {
    if (depth > kMaxJsonDepth) too_deep = true;
    return !too_deep;
  };
  ojson parsed = ojson::parse(body.begin(), body.end(), bound_depth, /*allow_exceptions=*/false);
  if (too_deep) {
    return absl::InvalidArgumentError(
        absl::StrCat("the JSON body nests deeper than ", kMaxJsonDepth, " levels"));
  }
  if (parsed.is_discarded()) return absl::InvalidArgumentError("the body is not valid JSON");
  if (!parsed.is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  return parsed;
}

// Present and not null.
const ojson* Field(const ojson& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status ReadString(const ojson& object, const char* name, std::string* out) {
  const ojson* value = Field(object, name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_string()) return Invalid(name, "must be a string");
  *out = value->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadBool(const ojson& object, const char* name, bool* out) {
  const ojson* value = Field(object, name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_boolean()) return Invalid(name, "must be a boolean");
  *out = value->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadNumber(const ojson& object, const char* name, double low, double high,
                        std::optional<double>* out) {
  const ojson* value = Field(object, name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number()) return Invalid(name, "must be a number");
  const double number = value->get<double>();
  if (!(number >= low && number <= high)) {
    return Invalid(name, absl::StrCat("must be between ", low, " and ", high));
  }
  *out = number;
  return absl::OkStatus();
}

absl::Status ReadInteger(const ojson& object, const char* name, int64_t low, int64_t high,
                         std::optional<int64_t>* out) {
  const ojson* value = Field(object, name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number_integer()) return Invalid(name, "must be an integer");
  // Unsigned values above int64's range read as negative through get<int64_t>: check the sign.
  if (value->is_number_unsigned() &&
      value->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Invalid(name, absl::StrCat("must be at most ", high));
  }
  const int64_t number = value->get<int64_t>();
  if (number < low || number > high) {
    return Invalid(name, absl::StrCat("must be between ", low, " and ", high));
  }
  *out = number;
  return absl::OkStatus();
}

// The text parts of a system or assistant message's content (a string or an array of text parts),
// joined as mistral_common joins a message's chunks.
absl::StatusOr<std::string> TextContent(const ojson& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Invalid(where, "content must be a string or an array");
  std::vector<std::string> texts;
  for (size_t p = 0; p < content.size(); ++p) {
    const ojson& part = content[p];
    const std::string place = absl::StrCat(where, ".content[", p, "]");
    if (!part.is_object()) return Invalid(place, "must be an object");
    std::string type;
    if (absl::Status s = ReadString(part, "type", &type); !s.ok())
      return Invalid(place, s.message());
    if (type != "text") return Invalid(place, "only text parts are allowed in this message");
    std::string text;
    if (absl::Status s = ReadString(part, "text", &text); !s.ok())
      return Invalid(place, s.message());
    texts.push_back(std::move(text));
  }
  return absl::StrJoin(texts, "\n\n");
}

absl::StatusOr<std::vector<ContentChunk>> UserContent(const ojson& content,
                                                      const std::string& where) {
  std::vector<ContentChunk> chunks;
  for (size_t p = 0; p < content.size(); ++p) {
    const ojson& part = content[p];
    const std::string place = absl::StrCat(where, ".content[", p, "]");
    if (!part.is_object()) return Invalid(place, "must be an object");
    std::string type;
    if (absl::Status s = ReadString(part, "type", &type); !s.ok())
      return Invalid(place, s.message());
    if (type == "text") {
      std::string text;
      if (absl::Status s = ReadString(part, "text", &text); !s.ok()) {
        return Invalid(place, s.message());
      }
      chunks.push_back(TextChunk{std::move(text)});
    } else if (type == "image_url") {
      // OpenAI nests the URL ({"image_url": {"url": ...}}); Mistral's API also takes a string.
      const ojson* image = Field(part, "image_url");
      std::string url;
      if (image != nullptr && image->is_string()) {
        url = image->get<std::string>();
      } else if (image != nullptr && image->is_object()) {
        if (absl::Status s = ReadString(*image, "url", &url); !s.ok()) {
          return Invalid(place + ".image_url", s.message());
        }
      }
      if (url.empty()) return Invalid(place, "image_url needs a url");
      chunks.push_back(ImageURLChunk{std::move(url)});
    } else {
      return Invalid(place, absl::StrCat("unsupported content part type \"", type, "\""));
    }
  }
  return chunks;
}

// An assistant message's "tool_calls": [{"id", "type": "function", "function": {"name",
// "arguments"}}]. Arguments are JSON text in OpenAI's API; an object is accepted too.
absl::Status ReadToolCalls(const ojson& message, const std::string& where,
                           std::vector<ToolCall>* calls) {
  const ojson* list = Field(message, "tool_calls");
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) return Invalid(where + ".tool_calls", "must be an array");
  for (size_t c = 0; c < list->size(); ++c) {
    const ojson& item = (*list)[c];
    const std::string place = absl::StrCat(where, ".tool_calls[", c, "]");
    const ojson* function = item.is_object() ? Field(item, "function") : nullptr;
    if (function == nullptr || !function->is_object()) {
      return Invalid(place, "needs a function object");
    }
    ToolCall call;
    std::string type = "function";
    for (absl::Status s : {ReadString(item, "id", &call.id), ReadString(item, "type", &type),
                           ReadString(*function, "name", &call.name)}) {
      if (!s.ok()) return Invalid(place, s.message());
    }
    if (type != "function") return Invalid(place, "only function tool calls are supported");
    if (call.id.empty()) call.id = "null";
    if (const ojson* arguments = Field(*function, "arguments"); arguments != nullptr) {
      call.arguments = arguments->is_string() ? arguments->get<std::string>() : arguments->dump();
    }
    calls->push_back(std::move(call));
  }
  return absl::OkStatus();
}

// "tools": [{"type": "function", "function": {"name", "description", "parameters"}}] and
// "tool_choice". "none" leaves the tools out of the prompt, so the model answers in text; forcing
// a call ("required", or a named function) is refused, since nothing here can force one.
absl::Status ParseTools(const ojson& body, std::vector<Tool>* tools) {
  const ojson* list = Field(body, "tools");
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) return Invalid("tools", "must be an array");
  for (size_t t = 0; t < list->size(); ++t) {
    const ojson& item = (*list)[t];
    const std::string place = absl::StrCat("tools[", t, "]");
    const ojson* function = item.is_object() ? Field(item, "function") : nullptr;
    if (function == nullptr || !function->is_object()) {
      return Invalid(place, "needs a function object");
    }
    std::string type = "function";
    Tool tool;
    for (absl::Status s :
         {ReadString(item, "type", &type), ReadString(*function, "name", &tool.name),
          ReadString(*function, "description", &tool.description)}) {
      if (!s.ok()) return Invalid(place, s.message());
    }
    if (type != "function") return Invalid(place, "only function tools are supported");
    if (const ojson* parameters = Field(*function, "parameters"); parameters != nullptr) {
      if (!parameters->is_object()) return Invalid(place, "parameters must be an object");
      // Re-serialized in the client's key order by the chat encoder (it keeps JSON text as is).
      tool.parameters = parameters->dump();
    }
    tools->push_back(std::move(tool));
  }
  const ojson* choice = Field(body, "tool_choice");
  if (choice == nullptr || *choice == "auto") return absl::OkStatus();
  if (*choice == "none") {
    tools->clear();
    return absl::OkStatus();
  }
  return Invalid("tool_choice", "only \"auto\" and \"none\" are supported");
}

// The text of an assistant's or a tool's `content`, which may be absent (then empty).
absl::Status OptionalTextContent(const ojson* content, const std::string& where, std::string* out) {
  if (content == nullptr) return absl::OkStatus();
  absl::StatusOr<std::string> text = TextContent(*content, where);
  if (!text.ok()) return text.status();
  *out = *std::move(text);
  return absl::OkStatus();
}

absl::Status ParseMessages(const ojson& body, const RequestLimits& limits,
                           ChatCompletionRequest* chat) {
  const ojson* messages = Field(body, "messages");
  if (messages == nullptr || !messages->is_array()) {
    return Invalid("messages", "is required and must be an array");
  }
  if (messages->size() > static_cast<size_t>(limits.max_messages)) {
    return Invalid("messages",
                   absl::StrCat("at most ", limits.max_messages, ", got ", messages->size()));
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const ojson& message = (*messages)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) return Invalid(where, "must be an object");
    std::string role;
    if (absl::Status s = ReadString(message, "role", &role); !s.ok()) {
      return Invalid(where, s.message());
    }
    const ojson* content = Field(message, "content");
    if (role == "system" || role == "developer") {
      if (content == nullptr) return Invalid(where, "a system message needs content");
      absl::StatusOr<std::string> text = TextContent(*content, where);
      if (!text.ok()) return text.status();
      chat->messages.push_back(SystemMessage{*std::move(text)});
    } else if (role == "user") {
      if (content == nullptr) return Invalid(where, "a user message needs content");
      if (content->is_string()) {
        chat->messages.push_back(UserMessage{content->get<std::string>()});
        continue;
      }
      if (!content->is_array()) return Invalid(where, "content must be a string or an array");
      absl::StatusOr<std::vector<ContentChunk>> chunks = UserContent(*content, where);
      if (!chunks.ok()) return chunks.status();
      chat->messages.push_back(UserMessage{*std::move(chunks)});
    } else if (role == "assistant") {
      AssistantMessage assistant;
      if (absl::Status st = OptionalTextContent(content, where, &assistant.content); !st.ok()) {
        return st;
      }
      // Mistral's API marks a final assistant message to continue with "prefix": true.
      if (absl::Status s = ReadBool(message, "prefix", &assistant.prefix); !s.ok()) {
        return Invalid(where, s.message());
      }
      if (absl::Status s = ReadToolCalls(message, where, &assistant.tool_calls); !s.ok()) return s;
      chat->messages.push_back(std::move(assistant));
    } else if (role == "tool") {
      ToolMessage tool;
      if (absl::Status st = OptionalTextContent(content, where, &tool.content); !st.ok()) return st;
      if (absl::Status s = ReadString(message, "tool_call_id", &tool.tool_call_id); !s.ok()) {
        return Invalid(where, s.message());
      }
      if (absl::Status s = ReadString(message, "name", &tool.name); !s.ok()) {
        return Invalid(where, s.message());
      }
      chat->messages.push_back(std::move(tool));
    } else if (role.empty()) {
      return Invalid(where, "role is required");
    } else {
      return Invalid(where, absl::StrCat("unsupported role \"", role, "\""));
    }
  }
  return absl::OkStatus();
}

// vLLM's continue_final_message: the last message, an assistant's, is a prefix to continue.
absl::Status ApplyContinueFinalMessage(const ojson& body, ChatCompletionRequest* chat) {
  bool continue_final = false;
  if (absl::Status s = ReadBool(body, "continue_final_message", &continue_final); !s.ok()) return s;
  if (!continue_final) return absl::OkStatus();
  AssistantMessage* last =
      chat->messages.empty() ? nullptr : std::get_if<AssistantMessage>(&chat->messages.back());
  if (last == nullptr) {
    return Invalid("continue_final_message", "the last message must be an assistant message");
  }
  last->prefix = true;
  return absl::OkStatus();
}

absl::Status ParseStop(const ojson& body, std::vector<std::string>* stop) {
  const ojson* value = Field(body, "stop");
  if (value == nullptr) return absl::OkStatus();
  if (value->is_string()) {
    stop->push_back(value->get<std::string>());
    return absl::OkStatus();
  }
  if (!value->is_array()) return Invalid("stop", "must be a string or an array of strings");
  for (const ojson& item : *value) {
    if (!item.is_string()) return Invalid("stop", "must be a string or an array of strings");
    stop->push_back(item.get<std::string>());
  }
  return absl::OkStatus();
}

// Fields with a meaning this server cannot honour: refused unless they ask for the default.
absl::Status RefuseUnsupported(const ojson& body) {
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    const ojson* value = Field(body, name);
    if (value != nullptr && (!value->is_number() || value->get<double>() != 0.0)) {
      return Invalid(name, "is not supported (only 0)");
    }
  }
  const ojson* format = Field(body, "response_format");
  if (format != nullptr) {
    const ojson* type = format->is_object() ? Field(*format, "type") : nullptr;
    if (type == nullptr || *type != "text") {
      return Invalid("response_format", "only {\"type\": \"text\"} is supported");
    }
  }
  // The deprecated function-calling API; "tools" replaces it.
  if (const ojson* functions = Field(body, "functions"); functions != nullptr) {
    return Invalid("functions", "is deprecated and not supported; use tools");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OpenAiChatRequest> ParseChatCompletionRequest(absl::string_view body,
                                                             const RequestLimits& limits) {
  absl::StatusOr<ojson> parsed = ParseObject(body);
  if (!parsed.ok()) return parsed.status();
  const ojson& object = *parsed;
  OpenAiChatRequest request;
  absl::Status status = ReadString(object, "model", &request.model);
  if (status.ok()) status = ParseMessages(object, limits, &request.chat);
  if (status.ok()) status = ApplyContinueFinalMessage(object, &request.chat);
  if (status.ok()) status = ParseTools(object, &request.chat.tools);
  // The gRPC API's bounds on chunks, text and images hold here too.
  if (status.ok()) status = CheckRequestLimits(request.chat, limits);
  if (status.ok()) status = RefuseUnsupported(object);
  if (!status.ok()) return status;

  std::optional<int64_t> max_tokens, max_completion_tokens, n, seed, top_logprobs;
  std::optional<double> temperature, top_p;
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  for (absl::Status s : {
           ReadInteger(object, "max_tokens", 1, kMaxInt, &max_tokens),
           ReadInteger(object, "max_completion_tokens", 1, kMaxInt, &max_completion_tokens),
           ReadInteger(object, "n", 1, kMaxInt, &n),
           ReadInteger(object, "seed", std::numeric_limits<int64_t>::min(),
                       std::numeric_limits<int64_t>::max(), &seed),
           ReadInteger(object, "top_logprobs", 0, 20, &top_logprobs),
           ReadNumber(object, "temperature", 0.0, 2.0, &temperature),
           ReadNumber(object, "top_p", 0.0, 1.0, &top_p),
           ReadBool(object, "stream", &request.stream),
           ReadBool(object, "logprobs", &request.params.logprobs),
           ParseStop(object, &request.params.stop),
       }) {
    if (!s.ok()) return s;
  }
  if (n.value_or(1) != 1) return Invalid("n", "only 1 choice per request is supported");
  if (top_logprobs.value_or(0) > 0) {
    // The engine reports the chosen token's logprob only; alternatives are not computed.
    return Invalid("top_logprobs",
                   "is not supported (only 0): the server returns the logprob of "
                   "the chosen token only");
  }
  if (const ojson* options = Field(object, "stream_options"); options != nullptr) {
    if (!options->is_object()) return Invalid("stream_options", "must be an object");
    if (!request.stream) return Invalid("stream_options", "is only allowed with stream: true");
    if (absl::Status s = ReadBool(*options, "include_usage", &request.include_usage); !s.ok()) {
      return Invalid("stream_options", s.message());
    }
  }
  if (max_completion_tokens.has_value()) {
    request.params.max_tokens = static_cast<int>(*max_completion_tokens);
  } else if (max_tokens.has_value()) {
    request.params.max_tokens = static_cast<int>(*max_tokens);
  }
  // OpenAI's default temperature is 1.
  request.params.temperature = static_cast<float>(temperature.value_or(1.0));
  request.params.top_p = static_cast<float>(top_p.value_or(1.0));
  if (seed.has_value()) request.params.seed = static_cast<uint64_t>(*seed);
  return request;
}

absl::StatusOr<TokenizeHttpRequest> ParseTokenizeRequest(absl::string_view body,
                                                         const RequestLimits& limits) {
  absl::StatusOr<ojson> parsed = ParseObject(body);
  if (!parsed.ok()) return parsed.status();
  const ojson& object = *parsed;
  TokenizeHttpRequest request;
  if (absl::Status s = ReadString(object, "model", &request.model); !s.ok()) return s;
  const bool has_prompt = Field(object, "prompt") != nullptr;
  const bool has_messages = Field(object, "messages") != nullptr;
  if (has_prompt == has_messages) {
    return absl::InvalidArgumentError("give exactly one of prompt and messages");
  }
  if (has_prompt) {
    if (absl::Status s = ReadString(object, "prompt", &request.prompt); !s.ok()) return s;
    if (static_cast<int64_t>(request.prompt.size()) > limits.max_text_bytes) {
      return Invalid("prompt", absl::StrCat("has ", request.prompt.size(), " bytes; at most ",
                                            limits.max_text_bytes, " are accepted"));
    }
    if (absl::Status s = ReadBool(object, "add_special_tokens", &request.add_special_tokens);
        !s.ok()) {
      return s;
    }
    return request;
  }
  request.is_chat = true;
  if (absl::Status s = ParseMessages(object, limits, &request.chat); !s.ok()) return s;
  bool add_generation_prompt = true;
  if (absl::Status s = ReadBool(object, "add_generation_prompt", &add_generation_prompt); !s.ok()) {
    return s;
  }
  bool continue_final = false;
  if (absl::Status s = ReadBool(object, "continue_final_message", &continue_final); !s.ok()) {
    return s;
  }
  if (continue_final && add_generation_prompt) {
    // vLLM's rule: continuing a message and opening a new assistant turn contradict each other.
    return absl::InvalidArgumentError(
        "continue_final_message and add_generation_prompt cannot both be true");
  }
  if (absl::Status s = ApplyContinueFinalMessage(object, &request.chat); !s.ok()) return s;
  if (absl::Status s = ParseTools(object, &request.chat.tools); !s.ok()) return s;
  if (absl::Status s = CheckRequestLimits(request.chat, limits); !s.ok()) return s;
  if (absl::Status s = RefuseUnsupported(object); !s.ok()) return s;
  return request;
}

absl::StatusOr<DetokenizeHttpRequest> ParseDetokenizeRequest(absl::string_view body) {
  absl::StatusOr<ojson> parsed = ParseObject(body);
  if (!parsed.ok()) return parsed.status();
  DetokenizeHttpRequest request;
  if (absl::Status s = ReadString(*parsed, "model", &request.model); !s.ok()) return s;
  const ojson* tokens = Field(*parsed, "tokens");
  if (tokens == nullptr || !tokens->is_array()) {
    return Invalid("tokens", "is required and must be an array of integers");
  }
  for (const ojson& token : *tokens) {
    if (!token.is_number_integer() || token.get<int64_t>() < 0 ||
        token.get<int64_t>() > std::numeric_limits<int>::max()) {
      return Invalid("tokens", "must be an array of non-negative integers");
    }
    request.tokens.push_back(static_cast<int>(token.get<int64_t>()));
  }
  return request;
}

const char* FinishReasonName(ChatFinish finish) {
  switch (finish) {
    case ChatFinish::kLength:
      return "length";
    case ChatFinish::kToolCalls:
      return "tool_calls";
    case ChatFinish::kStop:
      break;
  }
  return "stop";
}

json ToolCallsJson(const std::vector<ToolCall>& calls, bool with_index) {
  json list = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json call = {{"id", calls[i].id},
                 {"type", "function"},
                 {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (with_index) call["index"] = i;
    list.push_back(std::move(call));
  }
  return list;
}

json LogprobsJson(const TekkenTokenizer& tokenizer, const std::vector<int32_t>& token_ids,
                  const std::vector<float>& logprobs) {
  json content = json::array();
  for (size_t i = 0; i < token_ids.size() && i < logprobs.size(); ++i) {
    const int id = token_ids[i];
    const absl::string_view bytes =
        id >= 0 && id < tokenizer.vocab_size() ? tokenizer.TokenBytes(id) : absl::string_view();
    // A token may hold part of a character: `token` is repaired text, `bytes` the exact bytes.
    std::string token;
    AppendUtf8Replacing(bytes, &token);
    json byte_values = json::array();
    for (unsigned char c : bytes) byte_values.push_back(static_cast<int>(c));
    // JSON has no -inf: OpenAI clamps impossible tokens to -9999.0.
    const double logprob = std::isfinite(logprobs[i]) ? logprobs[i] : -9999.0;
    content.push_back({{"token", std::move(token)},
                       {"logprob", logprob},
                       {"bytes", std::move(byte_values)},
                       {"top_logprobs", json::array()}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

json UsageJson(const ChatUsage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

json ChatCompletionJson(const CompletionIdentity& identity, const ChatResult& result,
                        const TekkenTokenizer& tokenizer, bool logprobs) {
  json message = {{"role", "assistant"}, {"content", result.text}, {"refusal", nullptr}};
  if (!result.tool_calls.empty()) {
    message["content"] = nullptr;
    message["tool_calls"] = ToolCallsJson(result.tool_calls, /*with_index=*/false);
  }
  json choice = {{"index", 0},
                 {"message", std::move(message)},
                 {"logprobs", logprobs ? LogprobsJson(tokenizer, result.token_ids, result.logprobs)
                                       : json(nullptr)},
                 {"finish_reason", FinishReasonName(result.finish)}};
  return {{"id", identity.id},
          {"object", "chat.completion"},
          {"created", identity.created},
          {"model", identity.model},
          {"choices", json::array({std::move(choice)})},
          {"usage", UsageJson(result.usage)}};
}

json ChunkJson(const CompletionIdentity& identity, json delta, json logprobs,
               const char* finish_reason, bool include_usage) {
  json choice = {{"index", 0},
                 {"delta", std::move(delta)},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", finish_reason != nullptr ? json(finish_reason) : json(nullptr)}};
  json chunk = {{"id", identity.id},
                {"object", "chat.completion.chunk"},
                {"created", identity.created},
                {"model", identity.model},
                {"choices", json::array({std::move(choice)})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json UsageChunkJson(const CompletionIdentity& identity, const ChatUsage& usage) {
  return {{"id", identity.id},           {"object", "chat.completion.chunk"},
          {"created", identity.created}, {"model", identity.model},
          {"choices", json::array()},    {"usage", UsageJson(usage)}};
}

HttpError MakeHttpError(int http_status, absl::string_view message, absl::string_view code) {
  const char* type = "invalid_request_error";
  if (http_status == 429) type = "rate_limit_error";
  if (http_status >= 500) type = "server_error";
  if (http_status == 404) type = "not_found_error";
  json error = {{"message", std::string(message)},
                {"type", type},
                {"param", nullptr},
                {"code", code.empty() ? json(nullptr) : json(std::string(code))}};
  return {http_status, {{"error", std::move(error)}}};
}

HttpError HttpErrorOf(const absl::Status& status) {
  const std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:  // an image file or URL that is not there
      return MakeHttpError(400, message);
    case absl::StatusCode::kPermissionDenied:
      return MakeHttpError(403, message, "permission_denied");
    case absl::StatusCode::kResourceExhausted:
      // The chat encoder prefixes an image's own errors with its place ("message 1, chunk 0:
      // ..."): an image over the size limits is the request's fault and retrying cannot help, as
      // is a body over the HTTP limit. Anything else exhausted (a full queue) is transient.
      // The image memory budget's refusal says "retry later": it is transient, so 429.
      if (absl::StrContains(message, "retry later")) {
        return MakeHttpError(429, message, "rate_limit_exceeded");
      }
      if (absl::StartsWith(message, "message ") || absl::StartsWith(message, "the request body")) {
        return MakeHttpError(413, message, "request_too_large");
      }
      return MakeHttpError(429, message, "rate_limit_exceeded");
    case absl::StatusCode::kUnavailable:
      return MakeHttpError(503, message, "service_unavailable");
    case absl::StatusCode::kDeadlineExceeded:
      return MakeHttpError(504, message, "timeout");
    case absl::StatusCode::kCancelled:
      return MakeHttpError(499, message, "cancelled");
    default:
      return MakeHttpError(500, message, "internal_error");
  }
}

}  // namespace pixtral
