// ChatPipeline's handling of what the decoder generates, with a decoder stage that replays given
// ids: a random-weight model never writes [TOOL_CALLS] followed by valid JSON, so a scripted one
// stands in for the decoder here (the real decoder runs in tests/ and services/embedded).
#include "services/gateway/chat_pipeline.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

class NoVision : public VisionStage {
 public:
  absl::StatusOr<FeatureRows> Encode(absl::Span<const PreprocessedImage>,
                                     const CallContext&) override {
    return absl::UnimplementedError("no images in these tests");
  }
  int width() const override { return 1; }
};

// Hands `ids` to the pipeline one at a time, then ends as if EOS came.
class ScriptedDecoder : public DecoderStage {
 public:
  explicit ScriptedDecoder(std::vector<int> ids) : ids_(std::move(ids)) {}

  absl::StatusOr<Completion> Generate(
      GenerationRequest request,
      const std::function<bool(absl::Span<const SampledToken>)>& on_tokens,
      const CallContext&) override {
    prompt_ = request.prompt.tokens;
    Completion completion;
    completion.finish_reason = FinishReason::kEos;
    for (int id : ids_) {
      const SampledToken token{id, -0.25f};
      completion.tokens.push_back(id);
      if (!on_tokens(absl::MakeConstSpan(&token, 1))) {
        completion.finish_reason = FinishReason::kCancelled;
        break;
      }
    }
    return completion;
  }

  std::vector<int32_t> prompt_;

 private:
  std::vector<int> ids_;
};

class ChatPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<MistralTokenizer>> tokenizer =
        MistralTokenizer::FromFile("tests/data/generated/tekken.json");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
  }

  std::vector<int> Answer(bool calls, const std::string& text) {
    std::vector<int> ids;
    if (calls) ids.push_back(*tokenizer_->tekken().SpecialTokenId("[TOOL_CALLS]"));
    absl::StatusOr<std::vector<int>> encoded = tokenizer_->tekken().Encode(text, false, false);
    EXPECT_TRUE(encoded.ok());
    ids.insert(ids.end(), encoded->begin(), encoded->end());
    return ids;
  }

  // Runs `request` against a decoder that answers `ids`; `streamed` gets the deltas' text.
  absl::StatusOr<ChatResult> Run(const ChatCompletionRequest& request, std::vector<int> ids,
                                 std::string* streamed) {
    ScriptedDecoder decoder(std::move(ids));
    ChatPipeline pipeline(*tokenizer_, vision_, decoder, {});
    return pipeline.Run(request, {.max_tokens = 100}, {}, [streamed](const ChatDelta& delta) {
      *streamed += delta.text;
      return true;
    });
  }

  static ChatCompletionRequest WithTools() {
    return {{UserMessage{"Weather in Paris?"}}, {Tool{"get_weather", "", ""}}};
  }

  std::unique_ptr<MistralTokenizer> tokenizer_;
  NoVision vision_;
};

TEST_F(ChatPipelineTest, AnAnswerOfToolCallsBecomesToolCalls) {
  std::string streamed;
  absl::StatusOr<ChatResult> result = Run(
      WithTools(),
      Answer(true, R"([{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"},)"
                   R"( {"name": "get_time", "arguments": {}}])"),
      &streamed);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish, ChatFinish::kToolCalls);
  EXPECT_EQ(result->text, "");
  EXPECT_EQ(streamed, "");  // the JSON never streams as text
  ASSERT_EQ(result->tool_calls.size(), 2u);
  EXPECT_EQ(result->tool_calls[0].id, "a1b2c3d4e");
  EXPECT_EQ(result->tool_calls[0].name, "get_weather");
  EXPECT_EQ(result->tool_calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(result->tool_calls[1].name, "get_time");
  EXPECT_EQ(result->tool_calls[1].arguments, "{}");
  // No id was written: a fresh one, as mistral_common's validator wants it.
  EXPECT_THAT(result->tool_calls[1].id, ::testing::MatchesRegex("[a-zA-Z0-9]{9}"));
  EXPECT_FALSE(result->token_ids.empty());
  EXPECT_EQ(result->usage.completion_tokens, static_cast<int>(result->token_ids.size()));
}

TEST_F(ChatPipelineTest, WithoutToolsTheSameAnswerIsText) {
  const std::string json = R"([{"name": "get_weather", "arguments": {}}])";
  std::string streamed;
  absl::StatusOr<ChatResult> result =
      Run({{UserMessage{"Weather in Paris?"}}}, Answer(true, json), &streamed);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish, ChatFinish::kStop);
  EXPECT_TRUE(result->tool_calls.empty());
  EXPECT_EQ(result->text, json);  // [TOOL_CALLS] itself is a control token, never shown
  EXPECT_EQ(streamed, json);
}

TEST_F(ChatPipelineTest, CallsThatDoNotParseComeBackAsText) {
  std::string streamed;
  absl::StatusOr<ChatResult> result =
      Run(WithTools(), Answer(true, R"([{"name": "get_weather", "argu)"), &streamed);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish, ChatFinish::kStop);
  EXPECT_TRUE(result->tool_calls.empty());
  EXPECT_EQ(result->text, R"([{"name": "get_weather", "argu)");
  EXPECT_EQ(streamed, result->text);
}

TEST_F(ChatPipelineTest, TextAnswersToRequestsWithToolsStream) {
  std::string streamed;
  absl::StatusOr<ChatResult> result = Run(WithTools(), Answer(false, "It is sunny."), &streamed);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish, ChatFinish::kStop);
  EXPECT_EQ(result->text, "It is sunny.");
  EXPECT_EQ(streamed, "It is sunny.");
}

}  // namespace
}  // namespace pixtral
