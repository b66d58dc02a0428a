#include "services/gateway/proto_convert.h"

#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

template <typename Message>
Message ParseText(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

ChatCompletionRequest EveryKindOfMessage() {
  ChatCompletionRequest request;
  request.messages.push_back(SystemMessage{"Be brief."});
  request.messages.push_back(UserMessage{std::vector<ContentChunk>{
      ImageURLChunk{"https://example.com/cat.png"}, TextChunk{"What is it?"},
      ImageChunk{std::string("\x89PNG\0\x01", 6)}}});
  request.messages.push_back(AssistantMessage{"A cat."});
  request.messages.push_back(UserMessage{"And its colour?"});
  return request;
}

TEST(RequestToProtoTest, WritesEveryMessageAndChunkInOrder) {
  absl::StatusOr<v1::ChatCompletionRequest> proto =
      ToProto(EveryKindOfMessage(), {.max_tokens = 64,
                                     .temperature = 0.35f,
                                     .top_p = 0.9f,
                                     .seed = 42,
                                     .stop = {"\n\n", "###"},
                                     .stop_token_ids = {7},
                                     .ignore_eos = true,
                                     .logprobs = true});
  ASSERT_TRUE(proto.ok()) << proto.status();
  const auto expected = ParseText<v1::ChatCompletionRequest>(R"pb(
    messages {
      role: ROLE_SYSTEM
      content { text: "Be brief." }
    }
    messages {
      role: ROLE_USER
      content { image_url: "https://example.com/cat.png" }
      content { text: "What is it?" }
      content { image: "\x89PNG\x00\x01" }
    }
    messages {
      role: ROLE_ASSISTANT
      content { text: "A cat." }
    }
    messages {
      role: ROLE_USER
      content { text: "And its colour?" }
    }
    sampling {
      max_tokens: 64
      temperature: 0.35
      top_p: 0.9
      seed: 42
      stop: [ "\n\n", "###" ]
      stop_token_ids: 7
      ignore_eos: true
      logprobs: true
    }
  )pb");
  EXPECT_TRUE(MessageDifferencer::Equals(*proto, expected)) << proto->DebugString();
}

TEST(RequestToProtoTest, UnsetSeedStaysUnset) {
  absl::StatusOr<v1::ChatCompletionRequest> proto = ToProto(EveryKindOfMessage(), {});
  ASSERT_TRUE(proto.ok());
  EXPECT_FALSE(proto->sampling().has_seed());
}

ChatCompletionRequest WithToolsAndPrefix() {
  ChatCompletionRequest request;
  request.tools.push_back({"get_weather", "The weather", R"({"type": "object"})"});
  request.messages.push_back(UserMessage{"Weather in Paris?"});
  AssistantMessage calls;
  calls.tool_calls.push_back({"a1b2c3d4e", "get_weather", R"({"city": "Paris"})"});
  request.messages.push_back(calls);
  request.messages.push_back(ToolMessage{"20C", "a1b2c3d4e", "get_weather"});
  request.messages.push_back(AssistantMessage{"It is", /*prefix=*/true});
  return request;
}

TEST(RequestToProtoTest, ToolsToolCallsResultsAndPrefix) {
  absl::StatusOr<v1::ChatCompletionRequest> proto = ToProto(WithToolsAndPrefix(), {});
  ASSERT_TRUE(proto.ok()) << proto.status();
  const auto expected = ParseText<v1::ChatCompletionRequest>(R"pb(
    messages {
      role: ROLE_USER
      content { text: "Weather in Paris?" }
    }
    messages {
      role: ROLE_ASSISTANT
      tool_calls { id: "a1b2c3d4e" name: "get_weather" arguments: "{\"city\": \"Paris\"}" }
    }
    messages {
      role: ROLE_TOOL
      content { text: "20C" }
      tool_call_id: "a1b2c3d4e"
      name: "get_weather"
    }
    messages {
      role: ROLE_ASSISTANT
      content { text: "It is" }
      prefix: true
    }
    tools { name: "get_weather" description: "The weather" parameters: "{\"type\": \"object\"}" }
    sampling { top_p: 1 }
  )pb");
  EXPECT_TRUE(MessageDifferencer::Equals(*proto, expected)) << proto->DebugString();
  absl::StatusOr<ChatCompletionRequest> read = FromProto(*proto, RequestLimits());
  ASSERT_TRUE(read.ok()) << read.status();
  absl::StatusOr<v1::ChatCompletionRequest> again = ToProto(*read, {});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(*again, *proto)) << again->DebugString();
}

// mistral_common joins a message's text chunks with "\n\n" (the model would see another prompt
// if they were glued together).
TEST(RequestFromProtoTest, TextChunksOfSystemAssistantAndToolMessagesJoinWithBlankLines) {
  const auto proto = ParseText<v1::ChatCompletionRequest>(R"pb(
    messages {
      role: ROLE_SYSTEM
      content { text: "a" }
      content { text: "" }
      content { text: "b" }
    }
    messages {
      role: ROLE_USER
      content { text: "u" }
    }
    messages {
      role: ROLE_ASSISTANT
      content { text: "c" }
      content { text: "d" }
    }
  )pb");
  absl::StatusOr<ChatCompletionRequest> read = FromProto(proto, RequestLimits());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(std::get<SystemMessage>(read->messages[0]).content, "a\n\nb");
  EXPECT_EQ(std::get<AssistantMessage>(read->messages[2]).content, "c\n\nd");
}

TEST(ResultFromProtoTest, ToolCallsAndTheirFinishReason) {
  const auto response = ParseText<v1::ChatCompletionResponse>(R"pb(
    tool_calls { id: "a1b2c3d4e" name: "f" arguments: "{}" }
    finish_reason: FINISH_REASON_TOOL_CALLS
    usage {}
  )pb");
  const ChatResult result = FromProto(response);
  EXPECT_EQ(result.finish, ChatFinish::kToolCalls);
  ASSERT_EQ(result.tool_calls.size(), 1u);
  EXPECT_EQ(result.tool_calls[0].id, "a1b2c3d4e");
  v1::ChatCompletionResponse back;
  ToProto(result, &back);
  EXPECT_TRUE(MessageDifferencer::Equals(back, response)) << back.DebugString();
}

TEST(RequestToProtoTest, TheGatewayReadsBackWhatTheClientWrote) {
  const ChatParams params{.max_tokens = 9, .temperature = 0.5f, .seed = 3, .stop = {"x"}};
  absl::StatusOr<v1::ChatCompletionRequest> proto = ToProto(EveryKindOfMessage(), params);
  ASSERT_TRUE(proto.ok());
  absl::StatusOr<ChatCompletionRequest> read = FromProto(*proto, RequestLimits());
  ASSERT_TRUE(read.ok()) << read.status();
  // Written again, the request is the same message: nothing was lost either way.
  absl::StatusOr<v1::ChatCompletionRequest> again = ToProto(*read, FromProto(proto->sampling()));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(*proto, *again)) << again->DebugString();
}

TEST(ResultFromProtoTest, ReadsEveryField) {
  const ChatResult result = FromProto(ParseText<v1::ChatCompletionResponse>(R"pb(
    text: "A cat."
    token_ids: [ 5, 6 ]
    logprobs: [ -0.5, -1.5 ]
    finish_reason: FINISH_REASON_LENGTH
    usage { prompt_tokens: 20 image_tokens: 12 completion_tokens: 2 }
  )pb"));
  EXPECT_EQ(result.text, "A cat.");
  EXPECT_THAT(result.token_ids, ElementsAre(5, 6));
  EXPECT_THAT(result.logprobs, ElementsAre(-0.5f, -1.5f));
  EXPECT_EQ(result.finish, ChatFinish::kLength);
  EXPECT_EQ(result.usage.prompt_tokens, 20);
  EXPECT_EQ(result.usage.image_tokens, 12);
  EXPECT_EQ(result.usage.completion_tokens, 2);
}

TEST(ResultFromProtoTest, ResultAndDeltaSurviveTheWire) {
  const ChatResult result{.text = "héllo",
                          .token_ids = {1, 2, 3},
                          .logprobs = {-1, -2, -3},
                          .finish = ChatFinish::kStop,
                          .usage = {.prompt_tokens = 4, .completion_tokens = 3}};
  v1::ChatCompletionResponse response;
  ToProto(result, &response);
  const ChatResult read = FromProto(response);
  EXPECT_EQ(read.text, result.text);
  EXPECT_EQ(read.token_ids, result.token_ids);
  EXPECT_EQ(read.logprobs, result.logprobs);
  EXPECT_EQ(read.finish, ChatFinish::kStop);
  EXPECT_EQ(read.usage.prompt_tokens, 4);
  EXPECT_EQ(read.usage.completion_tokens, 3);

  v1::ChatCompletionChunk chunk;
  ToProto(ChatDelta{.text = "é", .token_ids = {9}, .logprobs = {-0.25f}}, &chunk);
  const ChatDelta delta = FromProto(chunk);
  EXPECT_EQ(delta.text, "é");
  EXPECT_THAT(delta.token_ids, ElementsAre(9));
  EXPECT_THAT(delta.logprobs, ElementsAre(-0.25f));
}

TEST(ResultFromProtoTest, UnspecifiedFinishReadsAsStop) {
  EXPECT_EQ(FromProto(v1::FINISH_REASON_UNSPECIFIED), ChatFinish::kStop);
  EXPECT_EQ(FromProto(v1::FINISH_REASON_STOP), ChatFinish::kStop);
}

// Tools and tool calls are prompt text as much as content is: the same bounds hold for them, on
// the gRPC path (FromProto) and on the HTTP front's (CheckRequestLimits).
TEST(RequestLimitsTest, ToolsAndToolCallsCountTowardTheLimits) {
  RequestLimits limits;
  limits.max_text_bytes = 40;
  limits.max_chunks_per_message = 2;
  limits.max_tools = 1;
  auto expect_invalid = [&limits](const std::string& text, absl::string_view needle) {
    const auto proto = ParseText<v1::ChatCompletionRequest>(text);
    absl::Status status = FromProto(proto, limits).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(status.message(), HasSubstr(needle)) << text;
  };
  const std::string user = R"pb(messages {
                                  role: ROLE_USER
                                  content { text: "hi" }
                                })pb";
  EXPECT_TRUE(FromProto(ParseText<v1::ChatCompletionRequest>(
                            user + R"pb(tools { name: "f" parameters: "{}" })pb"),
                        limits)
                  .ok());
  expect_invalid(user + R"pb(tools { name: "f" }
                             tools { name: "g" })pb",
                 "at most 1 tools");
  expect_invalid(
      user + R"pb(tools { name: "f" description: ")pb" + std::string(40, 'd') + R"pb(" })pb",
      "bytes of text");
  expect_invalid(user + R"pb(messages {
                               role: ROLE_ASSISTANT
                               tool_calls { id: "123456789" name: "f" }
                               tool_calls { id: "123456780" name: "f" }
                               tool_calls { id: "123456781" name: "f" }
                             })pb",
                 "tool calls, got 3");
  expect_invalid(user + R"pb(messages { role: ROLE_ASSISTANT
                                        tool_calls { id: "123456789" name: "f" arguments: ")pb" +
                     std::string(40, 'a') + R"pb(                                                                                                  " }
                              })pb",
                 "bytes of text");

  ChatCompletionRequest chat{{UserMessage{"hi"}}, {Tool{"f", "", "{}"}}};
  EXPECT_TRUE(CheckRequestLimits(chat, limits).ok());
  chat.tools.push_back(Tool{"g", "", ""});
  EXPECT_THAT(CheckRequestLimits(chat, limits).message(), HasSubstr("at most 1 tools"));
  chat.tools.pop_back();
  AssistantMessage calls;
  calls.tool_calls = {{"123456789", "f", std::string(40, 'a')}};
  chat.messages.push_back(calls);
  EXPECT_THAT(CheckRequestLimits(chat, limits).message(), HasSubstr("bytes of text"));
  chat.messages.back() = ToolMessage{std::string(40, 'r'), "123456789"};
  EXPECT_THAT(CheckRequestLimits(chat, limits).message(), HasSubstr("bytes of text"));
  chat.messages.back() = UserMessage{std::vector<ContentChunk>{
      TextChunk{"a"}, ImageURLChunk{"https://example.com/x.png"}, TextChunk{"b"}}};
  EXPECT_THAT(CheckRequestLimits(chat, limits).message(), HasSubstr("chunks, got 3"));
  limits.max_image_bytes = 3;
  chat.messages.back() = UserMessage{std::vector<ContentChunk>{ImageChunk{"1234"}}};
  EXPECT_THAT(CheckRequestLimits(chat, limits).message(), HasSubstr("inline image of 4 bytes"));
  chat.messages.back() =
      UserMessage{std::vector<ContentChunk>{ImageURLChunk{"https://" + std::string(5000, 'h')}}};
  EXPECT_THAT(CheckRequestLimits(chat, limits).message(), HasSubstr("image URL"));
}

}  // namespace
}  // namespace pixtral
