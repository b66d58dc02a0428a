// The embedded mode end to end on a random-weight model with the real tekken vocabulary: chat in,
// text out, checked against running the same prompt through Generate() directly.
#include "services/embedded/embedded_stack.h"

#include <cstdlib>
#include <string>

#include "common/testing/files.h"
#include "common/utf8.h"
#include "decoder/generate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "services/common/request_timings.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

class EmbeddedStackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::string(std::getenv("TEST_TMPDIR")) + "/model");
    ASSERT_TRUE(
        WriteRandomModel(*dir_, ToyConfig(), /*seed=*/7, "tests/data/generated/tekken.json").ok());
  }

  void SetUp() override {
    auto stack = EmbeddedStack::Create({.model_dir = *dir_, .cache_tokens = 8192});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
  }

  static ChatCompletionRequest Chat(std::vector<ContentChunk> chunks) {
    ChatCompletionRequest request;
    request.messages.push_back(UserMessage{std::move(chunks)});
    return request;
  }

  static std::string* dir_;
  std::unique_ptr<EmbeddedStack> stack_;
};

std::string* EmbeddedStackTest::dir_ = nullptr;

TEST_F(EmbeddedStackTest, ImageChatMatchesGenerateOnTheSamePrompt) {
  const ChatCompletionRequest request = Chat(
      {ImageChunk{ReadFileOrFail("tests/data/images/chelsea.png")}, TextChunk{"Describe it."}});
  std::string streamed;
  absl::StatusOr<ChatResult> result = stack_->pipeline().Run(
      request, {.max_tokens = 8, .ignore_eos = true}, {}, [&](const ChatDelta& delta) {
        EXPECT_EQ(FindInvalidUtf8(delta.text), std::string::npos);
        streamed += delta.text;
        return true;
      });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->token_ids.size(), 8u);
  EXPECT_EQ(streamed, result->text);
  EXPECT_EQ(result->finish, ChatFinish::kLength);

  // The same prompt through the model directly (images encoded inside the model, not by the
  // batcher and the encoder-features path).
  absl::StatusOr<EncodedChat> encoded = stack_->tokenizer().EncodeChatCompletion(request);
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(result->usage.prompt_tokens, static_cast<int>(encoded->tokens.size()));
  const ImageTokenGrid grid = encoded->images[0].grid;
  EXPECT_EQ(result->usage.image_tokens, grid.rows * (grid.cols + 1));
  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  auto model = PixtralModel::Load(*dir_, backend.get(), {.num_blocks = 512});
  ASSERT_TRUE(model.ok());
  PixtralRunner sequences(**model);
  GenerationRequest direct;
  direct.prompt.tokens.assign(encoded->tokens.begin(), encoded->tokens.end());
  for (const PreprocessedImage& image : encoded->images) {
    direct.prompt.images.push_back({image.height, image.width, image.pixels});
  }
  direct.max_tokens = 8;
  direct.ignore_eos = true;
  auto completions = Generate(sequences, {direct}, {});
  ASSERT_TRUE(completions.ok()) << completions.status();
  EXPECT_EQ(result->token_ids, (*completions)[0].tokens);
}

// The next turn's image is in the prefix cache: the embedded decoder stage does not ask for its
// features, and the tokens equal those of the same chat on a fresh stack.
TEST_F(EmbeddedStackTest, TurnTwoLeavesTheCachedImageOut) {
  ChatCompletionRequest chat = Chat(
      {ImageChunk{ReadFileOrFail("tests/data/images/chelsea.png")}, TextChunk{"Describe it."}});
  const ChatParams params = {.max_tokens = 4, .ignore_eos = true};
  absl::StatusOr<ChatResult> first = stack_->pipeline().Run(chat, params, {}, nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  chat.messages.push_back(AssistantMessage{first->text});
  chat.messages.push_back(UserMessage{std::string("And the colours?")});
  RequestTimings timings;
  absl::StatusOr<ChatResult> second =
      stack_->pipeline().Run(chat, params, {.timings = &timings}, nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(timings.values().at("images_skipped"), 1);

  auto fresh = EmbeddedStack::Create({.model_dir = *dir_, .cache_tokens = 8192});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  RequestTimings fresh_timings;
  absl::StatusOr<ChatResult> want =
      (*fresh)->pipeline().Run(chat, params, {.timings = &fresh_timings}, nullptr);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(fresh_timings.values().at("images_skipped"), 0);
  EXPECT_EQ(second->token_ids, want->token_ids);
}

TEST_F(EmbeddedStackTest, StopStringCutsTheText) {
  const ChatCompletionRequest request = Chat({TextChunk{"Count to ten."}});
  absl::StatusOr<ChatResult> full =
      stack_->pipeline().Run(request, {.max_tokens = 12, .ignore_eos = true}, {}, nullptr);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_GE(full->text.size(), 4u);
  // Stop at a piece of the greedy text: the same completion, cut before it.
  const std::string stop = full->text.substr(full->text.size() / 2, 2);
  absl::StatusOr<ChatResult> cut = stack_->pipeline().Run(
      request, {.max_tokens = 12, .stop = {stop}, .ignore_eos = true}, {}, nullptr);
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(cut->text, full->text.substr(0, full->text.find(stop)));
  EXPECT_EQ(cut->finish, ChatFinish::kStop);
}

TEST_F(EmbeddedStackTest, BadRequestsAreClearErrorsAndTheStackKeepsServing) {
  EXPECT_EQ(stack_->pipeline()
                .Run(Chat({ImageChunk{"not an image"}, TextChunk{"?"}}), {}, {}, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(stack_->pipeline()
                  .Run(Chat({TextChunk{"hi"}}), {.max_tokens = 100000}, {}, nullptr)
                  .status()
                  .message(),
              HasSubstr("exceeds the model's context"));
  EXPECT_EQ(stack_->pipeline()
                .Run(Chat({TextChunk{"hi"}}), {.temperature = -1}, {}, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      stack_->pipeline()
          .Run(Chat({ImageURLChunk{"http://127.0.0.1:1/cat.png"}, TextChunk{"?"}}), {}, {}, nullptr)
          .status()
          .code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(stack_->pipeline().Run(Chat({TextChunk{"hi"}}), {.max_tokens = 2}, {}, nullptr).ok());
}

// Without a GPU (CI) the CUDA backend is a clear UNAVAILABLE; with one, the stack loads on it.
TEST_F(EmbeddedStackTest, CudaBackendLoadsOrIsUnavailable) {
  auto stack = EmbeddedStack::Create({.model_dir = *dir_, .backend = "cuda"});
  if (!stack.ok()) {
    EXPECT_EQ(stack.status().code(), absl::StatusCode::kUnavailable) << stack.status();
  }
}

}  // namespace
}  // namespace pixtral
