#include "services/gateway/openai_json.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

absl::StatusOr<OpenAiChatRequest> Parse(const std::string& body) {
  return ParseChatCompletionRequest(body, RequestLimits{});
}

TEST(ParseChatCompletionRequest, ReadsOpenAisShapes) {
  absl::StatusOr<OpenAiChatRequest> request = Parse(R"({
    "model": "m", "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": 3,
    "stop": ["a", "b"], "stream": true, "stream_options": {"include_usage": true},
    "logprobs": true, "top_logprobs": 0, "n": 1, "user": "ignored", "some_future_field": {},
    "messages": [
      {"role": "system", "content": [{"type": "text", "text": "s1"}, {"type": "text", "text": "s2"}]},
      {"role": "user", "content": [{"type": "text", "text": "hi"},
                                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "auto"}}]},
      {"role": "assistant", "content": "yes"},
      {"role": "user", "content": "more"}]})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->model, "m");
  EXPECT_EQ(request->params.max_tokens, 7);
  EXPECT_EQ(request->params.temperature, 0.0f);
  EXPECT_EQ(request->params.top_p, 0.5f);
  EXPECT_EQ(request->params.seed, 3u);
  EXPECT_THAT(request->params.stop, ElementsAre("a", "b"));
  EXPECT_TRUE(request->stream);
  EXPECT_TRUE(request->include_usage);
  EXPECT_TRUE(request->params.logprobs);
  ASSERT_EQ(request->chat.messages.size(), 4u);
  // mistral_common joins a message's text chunks with "\n\n".
  EXPECT_EQ(std::get<SystemMessage>(request->chat.messages[0]).content, "s1\n\ns2");
  const auto& chunks =
      std::get<std::vector<ContentChunk>>(std::get<UserMessage>(request->chat.messages[1]).content);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(std::get<TextChunk>(chunks[0]).text, "hi");
  EXPECT_EQ(std::get<ImageURLChunk>(chunks[1]).url, "data:image/png;base64,AA");
  EXPECT_EQ(std::get<AssistantMessage>(request->chat.messages[2]).content, "yes");
  EXPECT_EQ(std::get<std::string>(std::get<UserMessage>(request->chat.messages[3]).content),
            "more");
}

TEST(ParseChatCompletionRequest, DefaultsAreOpenAis) {
  absl::StatusOr<OpenAiChatRequest> request =
      Parse(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->params.temperature, 1.0f);
  EXPECT_EQ(request->params.top_p, 1.0f);
  EXPECT_FALSE(request->params.seed.has_value());
  EXPECT_EQ(request->params.max_tokens, 5);
  EXPECT_FALSE(request->stream);
}

TEST(ParseChatCompletionRequest, PrefixAndContinueFinalMessage) {
  absl::StatusOr<OpenAiChatRequest> prefix = Parse(
      R"({"messages": [{"role": "user", "content": "x"},
                       {"role": "assistant", "content": "Once", "prefix": true}]})");
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_TRUE(std::get<AssistantMessage>(prefix->chat.messages[1]).prefix);
  absl::StatusOr<OpenAiChatRequest> continued = Parse(
      R"({"continue_final_message": true, "messages": [{"role": "user", "content": "x"},
                       {"role": "assistant", "content": "Once"}]})");
  ASSERT_TRUE(continued.ok()) << continued.status();
  EXPECT_TRUE(std::get<AssistantMessage>(continued->chat.messages[1]).prefix);
}

TEST(ParseChatCompletionRequest, RefusesWhatItCannotHonour) {
  const char* bodies[] = {
      R"({"messages": [{"role": "user", "content": "x"}], "n": 2})",
      R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3, "logprobs": true})",
      R"({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 0.5})",
      R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})",
  };
  for (const char* body : bodies) {
    absl::StatusOr<OpenAiChatRequest> request = Parse(body);
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument) << body;
  }
}

TEST(ParseChatCompletionRequest, BadInputIsInvalidArgumentNamingTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "not valid JSON"},
      {"[1]", "JSON object"},
      {"{\"messages\": 3}", "messages"},
      {R"({"messages": [{"role": "user"}]})", "messages[0]"},
      {R"({"messages": [{"role": "wizard", "content": "x"}]})", "wizard"},
      {R"({"messages": [{"role": "user", "content": [{"type": "audio"}]}]})", "audio"},
      {R"({"messages": [{"role": "user", "content": "x"}], "temperature": 3})", "temperature"},
      {R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})", "temperature"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})", "max_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e99})", "max_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 18446744073709551615})",
       "max_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stream_options": {}})",
       "stream_options"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stop": [1]})", "stop"},
      {R"({"messages": [{"role": "system", "content": [{"type": "image_url"}]}]})", "text parts"},
  };
  for (const auto& [body, field] : cases) {
    absl::StatusOr<OpenAiChatRequest> request = Parse(body);
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_THAT(request.status().message(), HasSubstr(field)) << body;
  }
}

TEST(ParseChatCompletionRequest, DeepNestingIsRefusedWithoutRecursion) {
  const std::string deep = "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  absl::StatusOr<OpenAiChatRequest> request = Parse(deep);
  EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(request.status().message(), HasSubstr("deeper"));
}

TEST(ParseChatCompletionRequest, TooManyMessages) {
  std::string body = R"({"messages": [)";
  for (int i = 0; i < 300; ++i) body += R"({"role": "user", "content": "x"},)";
  body.back() = ']';
  body += "}";
  EXPECT_EQ(Parse(body).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseTokenizeRequest, VllmShapes) {
  absl::StatusOr<TokenizeHttpRequest> prompt =
      ParseTokenizeRequest(R"({"prompt": "hello", "add_special_tokens": false})", {});
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_FALSE(prompt->is_chat);
  EXPECT_FALSE(prompt->add_special_tokens);
  absl::StatusOr<TokenizeHttpRequest> chat = ParseTokenizeRequest(
      R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
          "add_generation_prompt": false, "continue_final_message": true})",
      {});
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_TRUE(chat->is_chat);
  EXPECT_TRUE(std::get<AssistantMessage>(chat->chat.messages[1]).prefix);
  EXPECT_FALSE(ParseTokenizeRequest(
                   R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant",
                     "content": "y"}], "continue_final_message": true})",
                   {})
                   .ok());
  EXPECT_FALSE(ParseTokenizeRequest(R"({"prompt": "a", "messages": []})", {}).ok());
  EXPECT_FALSE(ParseDetokenizeRequest(R"({"tokens": [1, -2]})").ok());
  EXPECT_THAT(ParseDetokenizeRequest(R"({"tokens": [1, 2]})")->tokens, ElementsAre(1, 2));
}

// The gRPC API's request limits hold for the HTTP front's JSON too (RequestLimits).
TEST(ParseChatCompletionRequest, AppliesTheRequestLimits) {
  RequestLimits limits;
  limits.max_text_bytes = 20;
  limits.max_chunks_per_message = 2;
  limits.max_tools = 1;
  auto status = [&limits](const std::string& body) {
    return ParseChatCompletionRequest(body, limits).status();
  };
  EXPECT_TRUE(status(R"({"messages": [{"role": "user", "content": "hi"}]})").ok());
  EXPECT_THAT(
      status(R"({"messages": [{"role": "user", "content": "012345678901234567890"}]})").message(),
      HasSubstr("bytes of text"));
  EXPECT_THAT(status(R"({"messages": [{"role": "user", "content": [
      {"type": "text", "text": "a"}, {"type": "text", "text": "b"},
      {"type": "text", "text": "c"}]}]})")
                  .message(),
              HasSubstr("chunks, got 3"));
  EXPECT_THAT(status(R"({"messages": [{"role": "user", "content": "hi"}], "tools": [
      {"type": "function", "function": {"name": "f"}},
      {"type": "function", "function": {"name": "g"}}]})")
                  .message(),
              HasSubstr("at most 1 tools"));
  EXPECT_EQ(ParseTokenizeRequest(R"({"prompt": "012345678901234567890"})", limits).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ParseTokenizeRequest(
                  R"({"messages": [{"role": "user", "content": "012345678901234567890"}]})", limits)
                  .status()
                  .message(),
              HasSubstr("bytes of text"));
}

TEST(HttpErrorOf, StatusCodesAndOpenAisErrorObject) {
  EXPECT_EQ(HttpErrorOf(absl::InvalidArgumentError("x")).http_status, 400);
  EXPECT_EQ(HttpErrorOf(absl::UnavailableError("x")).http_status, 503);
  EXPECT_EQ(
      HttpErrorOf(absl::ResourceExhaustedError("message 0, chunk 1: too many pixels")).http_status,
      413);
  EXPECT_EQ(HttpErrorOf(absl::ResourceExhaustedError("queue full")).http_status, 429);
  // The image memory budget's refusal, placed by the chat encoder, is transient: 429, not 413.
  EXPECT_EQ(HttpErrorOf(absl::ResourceExhaustedError(
                            "message 0, chunk 1: the server is decoding as many images as its "
                            "memory allows (an image this size needs 40 MiB); retry later or "
                            "send a smaller image"))
                .http_status,
            429);
  const json body = HttpErrorOf(absl::InvalidArgumentError("bad")).body;
  EXPECT_EQ(body["error"]["message"], "bad");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(body["error"].contains("param"));
  EXPECT_TRUE(body["error"].contains("code"));
}

TEST(ChatCompletionJson, OpenAisResponseShape) {
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken =
      TekkenTokenizer::FromFile("tests/data/generated/tekken.json");
  ASSERT_TRUE(tekken.ok()) << tekken.status();
  absl::StatusOr<std::vector<int>> ids = (*tekken)->Encode("Hi there", false, false);
  ASSERT_TRUE(ids.ok());
  ChatResult result;
  result.text = "Hi there";
  result.token_ids.assign(ids->begin(), ids->end());
  result.logprobs.assign(ids->size(), -0.5f);
  result.finish = ChatFinish::kLength;
  result.usage = {.prompt_tokens = 10, .completion_tokens = static_cast<int>(ids->size())};
  const json response = ChatCompletionJson({"chatcmpl-1", 5, "m"}, result, **tekken, true);
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_EQ(response["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(response["choices"][0]["message"]["content"], "Hi there");
  EXPECT_EQ(response["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(response["usage"]["total_tokens"], 10 + static_cast<int>(ids->size()));
  const json& content = response["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), ids->size());
  std::string joined;
  for (const json& token : content) {
    joined += token["token"].get<std::string>();
    EXPECT_EQ(token["logprob"], -0.5);
    EXPECT_EQ(token["bytes"].size(), token["token"].get<std::string>().size());
  }
  EXPECT_EQ(joined, "Hi there");
}

}  // namespace
}  // namespace pixtral

namespace pixtral {
namespace {

TEST(ParseChatCompletionRequest, ToolsToolCallsAndToolResults) {
  absl::StatusOr<OpenAiChatRequest> request = Parse(R"({
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]}, "strict": false}}],
    "tool_choice": "auto", "parallel_tool_calls": true,
    "messages": [
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "a1b2c3d4e", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "a1b2c3d4e", "content": "{\"temp\": 20}"}]})");
  ASSERT_TRUE(request.ok()) << request.status();
  ASSERT_EQ(request->chat.tools.size(), 1u);
  EXPECT_EQ(request->chat.tools[0].name, "get_weather");
  EXPECT_EQ(request->chat.tools[0].description, "Weather");
  // The schema keeps the client's key order (it is written into the prompt).
  EXPECT_EQ(request->chat.tools[0].parameters,
            R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})");
  const auto& assistant = std::get<AssistantMessage>(request->chat.messages[1]);
  ASSERT_EQ(assistant.tool_calls.size(), 1u);
  EXPECT_EQ(assistant.tool_calls[0].id, "a1b2c3d4e");
  EXPECT_EQ(assistant.tool_calls[0].name, "get_weather");
  EXPECT_EQ(assistant.tool_calls[0].arguments, R"({"city": "Paris"})");
  const auto& tool = std::get<ToolMessage>(request->chat.messages[2]);
  EXPECT_EQ(tool.tool_call_id, "a1b2c3d4e");
  EXPECT_EQ(tool.content, R"({"temp": 20})");
}

TEST(ParseChatCompletionRequest, ToolChoice) {
  const std::string base =
      R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function",
          "function": {"name": "f"}}], "tool_choice": )";
  absl::StatusOr<OpenAiChatRequest> none = Parse(base + R"("none"})");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->chat.tools.empty());
  EXPECT_EQ(Parse(base + R"("required"})").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(base + R"({"type": "function", "function": {"name": "f"}}})").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Parse(R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "code"}]})")
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(ChatCompletionJson, ToolCallsAnswer) {
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken =
      TekkenTokenizer::FromFile("tests/data/generated/tekken.json");
  ASSERT_TRUE(tekken.ok()) << tekken.status();
  ChatResult result;
  result.tool_calls = {{"a1b2c3d4e", "get_weather", R"({"city": "Paris"})"}};
  result.finish = ChatFinish::kToolCalls;
  const json response = ChatCompletionJson({"chatcmpl-1", 5, "m"}, result, **tekken, false);
  const json& message = response["choices"][0]["message"];
  EXPECT_TRUE(message["content"].is_null());
  EXPECT_EQ(message["tool_calls"][0]["id"], "a1b2c3d4e");
  EXPECT_EQ(message["tool_calls"][0]["type"], "function");
  EXPECT_EQ(message["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(message["tool_calls"][0]["function"]["arguments"], R"({"city": "Paris"})");
  EXPECT_EQ(response["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(ToolCallsJson(result.tool_calls, true)[0]["index"], 0);
}

}  // namespace
}  // namespace pixtral
