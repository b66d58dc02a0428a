#include "common/chat_encoder.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/core.hpp"
#include "opencv2/imgcodecs.hpp"

namespace pixtral {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr char kTekkenPath[] = "tests/data/generated/tekken.json";
constexpr int kBos = 1, kEos = 2, kInst = 3, kEndInst = 4, kImg = 10, kBreak = 12, kEnd = 13;

// A solid PNG of width x height pixels.
std::string Png(int width, int height) {
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(0, 0, 255));
  std::vector<uchar> bytes;
  cv::imencode(".png", image, bytes);
  return std::string(bytes.begin(), bytes.end());
}

// mistral_common's tests shrink patches to 2 pixels, so a 4x4 image is 2x2 tokens.
std::unique_ptr<MistralTokenizer> Tokenizer(MistralTokenizer::Options options = {}) {
  if (!options.image_config.has_value()) options.image_config = ImageEncoderConfig{2, 1024, 1};
  absl::StatusOr<std::unique_ptr<MistralTokenizer>> tokenizer =
      MistralTokenizer::FromFile(kTekkenPath, std::move(options));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

std::vector<int> Text(const MistralTokenizer& tokenizer, absl::string_view text) {
  return *tokenizer.tekken().Encode(text, false, false);
}

std::vector<int> Cat(std::initializer_list<std::vector<int>> parts) {
  std::vector<int> all;
  for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

std::vector<int> ImageTokens(int cols, int rows) {
  std::vector<int> tokens;
  for (int r = 0; r < rows; ++r) {
    tokens.insert(tokens.end(), cols, kImg);
    tokens.push_back(r + 1 < rows ? kBreak : kEnd);
  }
  return tokens;
}

UserMessage User(std::vector<ContentChunk> chunks) { return UserMessage{std::move(chunks)}; }
UserMessage User(std::string text) { return UserMessage{std::move(text)}; }
ContentChunk Img(int width = 4, int height = 4) { return ImageChunk{Png(width, height)}; }
ContentChunk Txt(std::string text) { return TextChunk{std::move(text)}; }

std::vector<int> Encode(const MistralTokenizer& tokenizer, std::vector<ChatMessage> messages) {
  absl::StatusOr<EncodedChat> encoded = tokenizer.EncodeChatCompletion({std::move(messages)});
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  return encoded.ok() ? encoded->tokens : std::vector<int>{};
}

absl::Status EncodeStatus(const MistralTokenizer& tokenizer, std::vector<ChatMessage> messages) {
  return tokenizer.EncodeChatCompletion({std::move(messages)}).status();
}

// The expected ids are mistral_common's own, from test_image_tokenization_integration in
// tests/test_tokenizer_v3_mm.py ("a" = 1097, "A" = 1065, " B" = 1398, "\n\n" = 1267, "C" =
// 1067...).
TEST(ChatEncoderTest, MatchesMistralCommonsImageIntegrationCases) {
  auto tokenizer = Tokenizer();
  const std::vector<int> img = ImageTokens(2, 2);
  EXPECT_EQ(Encode(*tokenizer, {User({Txt("a"), Img()})}),
            Cat({{kBos, kInst}, img, {1097, kEndInst}}));
  EXPECT_EQ(Encode(*tokenizer, {SystemMessage{"A B"}, User({Txt("C"), Img()})}),
            Cat({{kBos, kInst, 1065, 1398, 1267}, img, {1067, kEndInst}}));
  EXPECT_EQ(Encode(*tokenizer, {SystemMessage{"A B"}, User({Img(), Txt("C")})}),
            Cat({{kBos, kInst, 1065, 1398, 1267}, img, {1067, kEndInst}}));
  EXPECT_EQ(Encode(*tokenizer, {SystemMessage{"A B"}, User({Img(), Img(), Txt("C")}),
                                AssistantMessage{"D"}, User({Img(), Txt("E"), Img()})}),
            Cat({{kBos, kInst},
                 img,
                 img,
                 {1067, kEndInst, 1068, kEos, kInst, 1065, 1398, 1267},
                 img,
                 {1069},
                 img,
                 {kEndInst}}));
  EXPECT_EQ(
      Encode(*tokenizer, {User({Txt("A"), Img(), Txt("B"), Txt("C"), Img(), Txt("D"), Txt("E")})}),
      Cat({{kBos, kInst, 1065}, img, {1066, 1267, 1067}, img, {1068, 1267, 1069, kEndInst}}));
}

TEST(ChatEncoderTest, KeepsTheOrderOfSeveralImages) {
  auto tokenizer = Tokenizer();
  const std::vector<int> both = Cat({ImageTokens(2, 2), ImageTokens(3, 2)});
  EXPECT_EQ(Encode(*tokenizer, {User({Txt(""), Img(4, 4), Img(6, 4)})}),
            Cat({{kBos, kInst}, both, {kEndInst}}));
  EXPECT_EQ(Encode(*tokenizer, {User({Img(4, 4), Img(6, 4)})}),
            Cat({{kBos, kInst}, both, {kEndInst}}));
  EXPECT_EQ(Encode(*tokenizer, {User({Txt("x"), Img(4, 4), Img(6, 4)})}),
            Cat({{kBos, kInst}, Text(*tokenizer, "x"), both, {kEndInst}}));
}

TEST(ChatEncoderTest, PutsASingleTrailingImageFirstOnly) {
  auto tokenizer = Tokenizer();
  const std::vector<int> img = ImageTokens(2, 2);
  const std::vector<int> prompt = Text(*tokenizer, "What is on this image?");
  EXPECT_EQ(Encode(*tokenizer, {User({Txt("What is on this image?"), Img()})}),
            Encode(*tokenizer, {User({Img(), Txt("What is on this image?")})}));
  // One more text chunk after the image: no reordering, the texts stay apart.
  EXPECT_EQ(Encode(*tokenizer, {User({Txt("What is on this image?"), Img(), Txt("more")})}),
            Cat({{kBos, kInst}, prompt, img, Text(*tokenizer, "more"), {kEndInst}}));
}

TEST(ChatEncoderTest, ReturnsPreprocessedImagesInTokenOrder) {
  auto tokenizer = Tokenizer();
  absl::StatusOr<EncodedChat> encoded =
      tokenizer->EncodeChatCompletion({{User({Img(6, 4), Txt("x"), Img(4, 4)})}});
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_EQ(encoded->images.size(), 2u);
  EXPECT_EQ(encoded->images[0].grid.cols, 3);
  EXPECT_EQ(encoded->images[0].width, 6);
  EXPECT_EQ(encoded->images[1].grid.cols, 2);
  EXPECT_EQ(encoded->images[0].pixels.size(), 3u * 4 * 6);
}

// test_tokenizer_v3_mm.py's text requests, with ids derived by the rules (consecutive user
// messages and text chunks join with "\n\n"; the system prompt starts the last user message).
TEST(ChatEncoderTest, EncodesTextConversationsAsMistralCommon) {
  auto tokenizer = Tokenizer();
  const auto& t = *tokenizer;
  EXPECT_EQ(Encode(t, {User("hello"), User({Txt("bbb"), Txt("ccc")}), AssistantMessage{"aaa"},
                       User("goodbye")}),
            Cat({{kBos, kInst},
                 Text(t, "hello\n\nbbb\n\nccc"),
                 {kEndInst},
                 Text(t, "aaa"),
                 {kEos, kInst},
                 Text(t, "goodbye"),
                 {kEndInst}}));
  EXPECT_EQ(Encode(t, {User("hello")}), Cat({{kBos, kInst}, Text(t, "hello"), {kEndInst}}));
  EXPECT_EQ(Encode(t, {User({Txt("")})}), (std::vector<int>{kBos, kInst, kEndInst}));
  EXPECT_EQ(Encode(t, {SystemMessage{"You are an AI assistant"}, User({Txt("aaa"), Txt("bbb")}),
                       AssistantMessage{"aaa"}, User("goodbye")}),
            Cat({{kBos, kInst},
                 Text(t, "aaa\n\nbbb"),
                 {kEndInst},
                 Text(t, "aaa"),
                 {kEos, kInst},
                 Text(t, "You are an AI assistant\n\ngoodbye"),
                 {kEndInst}}));
  // test_tokenize_v3.py: "a" alone is [1, 3, 1097, 4].
  EXPECT_EQ(Encode(t, {User("a")}), (std::vector<int>{kBos, kInst, 1097, kEndInst}));
}

TEST(ChatEncoderTest, WritesTheTemplateText) {
  auto tokenizer = Tokenizer();
  absl::StatusOr<EncodedChat> encoded = tokenizer->EncodeChatCompletion(
      {{User("a"), AssistantMessage{"b"}, SystemMessage{"SYSTEM"}, User("c")}});
  ASSERT_FALSE(encoded.ok());  // A system message may not follow an assistant message...
  encoded = tokenizer->EncodeChatCompletion(
      {{SystemMessage{"SYSTEM"}, User("a"), AssistantMessage{"b"}, User("c")}});
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(encoded->text, "<s>[INST]a[/INST]b</s>[INST]SYSTEM\n\nc[/INST]");
}

TEST(ChatEncoderTest, MergesSystemPromptsAndStripsAssistantTrailingSpaces) {
  auto tokenizer = Tokenizer();
  absl::StatusOr<EncodedChat> encoded = tokenizer->EncodeChatCompletion(
      {{SystemMessage{"S1"}, SystemMessage{"S2"}, User("u1"), AssistantMessage{"a1  "},
        AssistantMessage{"a2"}, User("u2"), AssistantMessage{"pre", /*prefix=*/true}}});
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(encoded->text, "<s>[INST]u1[/INST]a1  \n\na2</s>[INST]S1\n\nS2\n\nu2[/INST]pre");
}

TEST(ChatEncoderTest, SystemPromptBeforeImagesIsItsOwnEncode) {
  auto tokenizer = Tokenizer();
  const auto& t = *tokenizer;
  EXPECT_EQ(
      Encode(t, {SystemMessage{"Look:"}, User({Img(), Txt("hi")})}),
      Cat({{kBos, kInst}, Text(t, "Look:\n\n"), ImageTokens(2, 2), Text(t, "hi"), {kEndInst}}));
}

TEST(ChatEncoderTest, SystemOnlyRequestGetsAnEmptyUserTurn) {
  auto tokenizer = Tokenizer();
  EXPECT_EQ(Encode(*tokenizer, {SystemMessage{"S"}}),
            Cat({{kBos, kInst}, Text(*tokenizer, "S\n\n"), {kEndInst}}));
}

TEST(ChatEncoderTest, FetchesImageUrls) {
  MistralTokenizer::Options options;
  std::vector<std::string> fetched;
  options.fetch_image = [&](absl::string_view url) -> absl::StatusOr<std::string> {
    fetched.emplace_back(url);
    if (url == "https://example.com/red.png") return Png(4, 4);
    return absl::NotFoundError("404");
  };
  auto tokenizer = Tokenizer(std::move(options));
  EXPECT_EQ(Encode(*tokenizer, {User({ImageURLChunk{"https://example.com/red.png"}})}),
            Cat({{kBos, kInst}, ImageTokens(2, 2), {kEndInst}}));
  absl::Status status =
      EncodeStatus(*tokenizer, {User({Txt("x"), ImageURLChunk{"https://example.com/gone.png"}})});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("message 0, chunk 1"));
}

TEST(ChatEncoderTest, UsesTheFilesImageSectionByDefault) {
  absl::StatusOr<std::unique_ptr<MistralTokenizer>> tokenizer =
      MistralTokenizer::FromFile(kTekkenPath);
  ASSERT_TRUE(tokenizer.ok());
  // 40 x 20 pixels with 16-pixel patches: 3 columns, 2 rows.
  EXPECT_EQ(Encode(**tokenizer, {User({Img(40, 20)})}),
            Cat({{kBos, kInst}, ImageTokens(3, 2), {kEndInst}}));
}

TEST(ChatEncoderErrorTest, RejectsMalformedConversations) {
  auto tokenizer = Tokenizer();
  auto expect_invalid = [&](std::vector<ChatMessage> messages, absl::string_view needle) {
    absl::Status status = EncodeStatus(*tokenizer, std::move(messages));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_THAT(status.message(), HasSubstr(needle));
  };
  expect_invalid({}, "no messages");
  expect_invalid({AssistantMessage{"hi"}}, "must start with");
  expect_invalid({User("a"), AssistantMessage{"b"}}, "last message");
  expect_invalid({User("a"), AssistantMessage{"b"}, SystemMessage{"s"}, User("c")},
                 "cannot follow an assistant");
  expect_invalid({User("a"), AssistantMessage{""}, User("c")}, "needs content");
  expect_invalid({User("a"), AssistantMessage{"p", true}, User("c")}, "prefix must be the last");
  expect_invalid({User({ImageChunk{""}})}, "image is empty");
  expect_invalid({User("bad \xFF utf8")}, "UTF-8");
}

TEST(ChatEncoderErrorTest, RejectsTooManyImages) {
  MistralTokenizer::Options options;
  options.max_images = 2;
  auto tokenizer = Tokenizer(std::move(options));
  absl::Status status = EncodeStatus(*tokenizer, {User({Img(), Img(), Img()})});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("3 images"));
}

TEST(ChatEncoderErrorTest, RejectsPromptsLongerThanTheContext) {
  MistralTokenizer::Options options;
  options.max_prompt_tokens = 8;
  auto tokenizer = Tokenizer(std::move(options));
  EXPECT_TRUE(tokenizer->EncodeChatCompletion({{User("short")}}).ok());
  absl::Status status = EncodeStatus(*tokenizer, {User({Img(8, 8)})});  // 4x4 grid: 20 tokens.
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("context"));
}

TEST(ChatEncoderErrorTest, ReportsUndecodableImagesAndMissingFetcher) {
  auto tokenizer = Tokenizer();
  absl::Status status = EncodeStatus(*tokenizer, {User({Txt("x"), ImageChunk{"not an image"}})});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("message 0, chunk 1"));
  status = EncodeStatus(*tokenizer, {User({ImageURLChunk{"https://example.com/a.png"}})});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
}

// Images are the costly part of an encoding: a request whose caller has gone stops before them.
TEST(ChatEncoderTest, StopsBeforeImagesWhenTheCallIsOverButEncodesText) {
  auto tokenizer = Tokenizer();
  const ChatCompletionRequest with_image{{User({Img(), Txt("a")})}};
  EXPECT_EQ(tokenizer->EncodeChatCompletion(with_image, {.deadline = absl::InfinitePast()})
                .status()
                .code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(tokenizer->EncodeChatCompletion(with_image, {.cancelled = [] { return true; }})
                .status()
                .code(),
            absl::StatusCode::kCancelled);
  EXPECT_TRUE(
      tokenizer->EncodeChatCompletion(with_image, {.cancelled = [] { return false; }}).ok());
  const ChatCompletionRequest text_only{{User("a")}};
  EXPECT_TRUE(tokenizer->EncodeChatCompletion(text_only, {.deadline = absl::InfinitePast()}).ok());
}

// The expected texts below are those of mistral_common's tests/test_tokenize_v3.py
// (test_tools_singleturn, test_system_tools_multiturn, test_tool_message) for tekken, where the
// requests there end in a way the serving validator allows.
std::string TemplateText(const MistralTokenizer& tokenizer, ChatCompletionRequest request) {
  absl::StatusOr<EncodedChat> encoded = tokenizer.EncodeChatCompletion(request);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  return encoded.ok() ? encoded->text : "";
}

AssistantMessage Calls(std::vector<ToolCall> calls) {
  AssistantMessage message;
  message.tool_calls = std::move(calls);
  return message;
}

TEST(ChatEncoderToolsTest, AvailableToolsGoBeforeTheLastUserMessage) {
  auto tokenizer = Tokenizer();
  ChatCompletionRequest request{{User("a")}, {Tool{"tool1", "1", "{}"}}};
  EXPECT_EQ(TemplateText(*tokenizer, request),
            "<s>[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": \"tool1\", "
            "\"description\": \"1\", \"parameters\": {}}}][/AVAILABLE_TOOLS][INST]a[/INST]");
  absl::StatusOr<EncodedChat> encoded = tokenizer->EncodeChatCompletion(request);
  ASSERT_TRUE(encoded.ok());
  // Outside the tools' span the ids are the plain chat's: [1, 3, 1097, 4].
  const std::vector<int>& tokens = encoded->tokens;
  const int begin = *tokenizer->tekken().SpecialTokenId("[AVAILABLE_TOOLS]");
  const int end = *tokenizer->tekken().SpecialTokenId("[/AVAILABLE_TOOLS]");
  const auto b = std::find(tokens.begin(), tokens.end(), begin);
  const auto e = std::find(tokens.begin(), tokens.end(), end);
  ASSERT_TRUE(b != tokens.end() && e != tokens.end());
  std::vector<int> outside(tokens.begin(), b);
  outside.insert(outside.end(), e + 1, tokens.end());
  EXPECT_EQ(outside, (std::vector<int>{kBos, kInst, 1097, kEndInst}));

  request = {{SystemMessage{"SYSTEM"}, User("a"), AssistantMessage{"b"}, User("c")},
             {Tool{"tool1", "1", ""}, Tool{"tool2", "2", "{\"type\":\"object\"}"}}};
  EXPECT_EQ(TemplateText(*tokenizer, request),
            "<s>[INST]a[/INST]b</s>[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": "
            "{\"name\": \"tool1\", \"description\": \"1\", \"parameters\": {}}}, {\"type\": "
            "\"function\", \"function\": {\"name\": \"tool2\", \"description\": \"2\", "
            "\"parameters\": {\"type\": \"object\"}}}][/AVAILABLE_TOOLS][INST]SYSTEM\n\nc[/INST]");
}

TEST(ChatEncoderToolsTest, ToolCallsAndResults) {
  auto tokenizer = Tokenizer();
  const ToolCall call{"123456789", "b", "{}"};
  EXPECT_EQ(TemplateText(*tokenizer, {{User("a"), Calls({call}), ToolMessage{"d", "123456789"}}}),
            "<s>[INST]a[/INST][TOOL_CALLS][{\"name\": \"b\", \"arguments\": {}, \"id\": "
            "\"123456789\"}]</s>[TOOL_RESULTS]{\"content\": \"d\", \"call_id\": "
            "\"123456789\"}[/TOOL_RESULTS]");
  // JSON content is embedded as JSON, normalized; other text as a string.
  EXPECT_EQ(
      TemplateText(*tokenizer, {{User("a"), Calls({call}), ToolMessage{"{\"a\":1}", "123456789"}}}),
      "<s>[INST]a[/INST][TOOL_CALLS][{\"name\": \"b\", \"arguments\": {}, \"id\": "
      "\"123456789\"}]</s>[TOOL_RESULTS]{\"content\": {\"a\": 1}, \"call_id\": "
      "\"123456789\"}[/TOOL_RESULTS]");
  EXPECT_EQ(TemplateText(*tokenizer,
                         {{User("a"), Calls({call}), ToolMessage{"d{\"a\": 1}", "123456789"}}}),
            "<s>[INST]a[/INST][TOOL_CALLS][{\"name\": \"b\", \"arguments\": {}, \"id\": "
            "\"123456789\"}]</s>[TOOL_RESULTS]{\"content\": \"d{\\\"a\\\": 1}\", \"call_id\": "
            "\"123456789\"}[/TOOL_RESULTS]");
  // A "null" id is left out; arguments are normalized JSON; empty arguments and results are {}.
  EXPECT_EQ(TemplateText(*tokenizer, {{User("a"), Calls({{"null", "b", "{\"x\":[1,2]}"}}),
                                       ToolMessage{"", "123456789"}, User("e")}}),
            "<s>[INST]a[/INST][TOOL_CALLS][{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}]</s>"
            "[TOOL_RESULTS]{\"content\": {}, \"call_id\": \"123456789\"}[/TOOL_RESULTS]"
            "[INST]e[/INST]");
  // Two calls, two results, then the model's answer and a prefix to continue.
  EXPECT_EQ(TemplateText(*tokenizer, {{User("a"), Calls({call, {"abcdefghi", "q", ""}}),
                                       ToolMessage{"1", "123456789"}, ToolMessage{"2", "abcdefghi"},
                                       AssistantMessage{"So", /*prefix=*/true}}}),
            "<s>[INST]a[/INST][TOOL_CALLS][{\"name\": \"b\", \"arguments\": {}, \"id\": "
            "\"123456789\"}, {\"name\": \"q\", \"arguments\": {}, \"id\": \"abcdefghi\"}]</s>"
            "[TOOL_RESULTS]{\"content\": 1, \"call_id\": \"123456789\"}[/TOOL_RESULTS]"
            "[TOOL_RESULTS]{\"content\": 2, \"call_id\": \"abcdefghi\"}[/TOOL_RESULTS]So");
}

// mistral_common accepts these; the encoder used to refuse them.
TEST(ChatEncoderTest, AcceptsALastSystemMessageAndAnEmptyUserMessage) {
  auto tokenizer = Tokenizer();
  EXPECT_EQ(TemplateText(*tokenizer, {{User("a"), SystemMessage{"s"}}}), "<s>[INST]s\n\na[/INST]");
  EXPECT_EQ(TemplateText(*tokenizer, {{User(std::vector<ContentChunk>{})}}), "<s>[INST][/INST]");
  EXPECT_EQ(TemplateText(*tokenizer, {{SystemMessage{"s"}, User(std::vector<ContentChunk>{})}}),
            "<s>[INST]s\n\n[/INST]");
}

TEST(ChatEncoderToolsTest, ValidatesAsMistralCommonV3) {
  auto tokenizer = Tokenizer();
  auto expect_invalid = [&](ChatCompletionRequest request, absl::string_view needle) {
    absl::Status status = tokenizer->EncodeChatCompletion(request).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_THAT(status.message(), HasSubstr(needle));
  };
  const ToolCall call{"123456789", "b", "{}"};
  expect_invalid({{User("a"), Calls({{"12", "b", "{}"}}), ToolMessage{"d", "123456789"}}},
                 "tool call id \"12\"");
  expect_invalid({{User("a"), Calls({{"123456789", "b c", "{}"}}), ToolMessage{"d", "123456789"}}},
                 "function name");
  expect_invalid({{User("a"), Calls({call}), ToolMessage{"d", ""}}}, "needs a tool_call_id");
  expect_invalid({{User("a"), Calls({call}), ToolMessage{"d", "bad id"}}}, "tool call id");
  expect_invalid({{User("a"), Calls({call}), User("b")}}, "differ in number");
  expect_invalid({{User("a"), Calls({call}), ToolMessage{"d", "123456789"},
                   ToolMessage{"d", "123456789"}, AssistantMessage{"x"}, User("y")}},
                 "differ in number");
  AssistantMessage both = Calls({call});
  both.content = "text";
  expect_invalid({{User("a"), both, ToolMessage{"d", "123456789"}}}, "both content and tool calls");
  expect_invalid({{User("a"), ToolMessage{"d", "123456789"}}}, "cannot follow a user");
  expect_invalid({{User("a"), Calls({call}), ToolMessage{"d", "123456789"}, SystemMessage{"s"}}},
                 "cannot follow a tool");
  expect_invalid({{User("a")}, {Tool{"bad name", "", ""}}}, "function name");
  expect_invalid({{User("a")}, {Tool{"f", "", "[1]"}}}, "JSON object");
}
}  // namespace
}  // namespace pixtral
