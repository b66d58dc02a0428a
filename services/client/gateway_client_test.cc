// The client against a real GatewayService on loopback, backed by the embedded stack on a random
// toy model: what comes over the wire, unary or streamed, is what the pipeline computes in
// process.
#include "services/client/gateway_client.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/server_runner.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/gateway_service.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

class GatewayClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/model";
    ASSERT_TRUE(
        WriteRandomModel(dir, ToyConfig(), /*seed=*/11, "tests/data/generated/tekken.json").ok());
    auto stack = EmbeddedStack::Create({.model_dir = dir, .cache_tokens = 8192});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    service_ = new GatewayService(stack_->pipeline(), stack_->tokenizer().tekken(),
                                  {.model_info = stack_->model_info()});
    auto server = RunningServer::Start({service_}, {.address = "127.0.0.1:0"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }

  static void TearDownTestSuite() {
    delete server_;
    delete service_;
    delete stack_;
  }

  void SetUp() override {
    client_ = GatewayClient::Create(absl::StrCat("127.0.0.1:", server_->port()));
  }

  static ChatCompletionRequest ImageChat() {
    ChatCompletionRequest request;
    request.messages.push_back(SystemMessage{"Answer in one word."});
    request.messages.push_back(UserMessage{
        std::vector<ContentChunk>{ImageChunk{ReadFileOrFail("tests/data/images/chelsea.png")},
                                  TextChunk{"What animal is it?"}}});
    request.messages.push_back(AssistantMessage{"A cat."});
    request.messages.push_back(UserMessage{"And its colour?"});
    return request;
  }

  static EmbeddedStack* stack_;
  static GatewayService* service_;
  static RunningServer* server_;
  std::unique_ptr<GatewayClient> client_;
};

EmbeddedStack* GatewayClientTest::stack_ = nullptr;
GatewayService* GatewayClientTest::service_ = nullptr;
RunningServer* GatewayClientTest::server_ = nullptr;

constexpr ChatParams kGreedy{.max_tokens = 8, .ignore_eos = true};

TEST_F(GatewayClientTest, UnaryMatchesTheEmbeddedPipeline) {
  absl::StatusOr<ChatResult> local = stack_->pipeline().Run(ImageChat(), kGreedy, {}, nullptr);
  ASSERT_TRUE(local.ok()) << local.status();
  absl::StatusOr<ChatResult> remote = client_->Complete(ImageChat(), kGreedy);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(remote->token_ids, local->token_ids);
  EXPECT_EQ(remote->text, local->text);
  EXPECT_EQ(remote->finish, ChatFinish::kLength);
  EXPECT_EQ(remote->usage.prompt_tokens, local->usage.prompt_tokens);
  EXPECT_EQ(remote->usage.image_tokens, local->usage.image_tokens);
  EXPECT_GT(remote->usage.image_tokens, 0);
  EXPECT_EQ(remote->usage.completion_tokens, 8);
}

TEST_F(GatewayClientTest, StreamingAgreesWithUnary) {
  absl::StatusOr<ChatResult> unary = client_->Complete(ImageChat(), kGreedy);
  ASSERT_TRUE(unary.ok()) << unary.status();
  std::string streamed;
  std::vector<int32_t> streamed_ids;
  int deltas = 0;
  absl::StatusOr<ChatResult> stream =
      client_->Stream(ImageChat(), kGreedy, [&](const ChatDelta& delta) {
        ++deltas;
        streamed += delta.text;
        streamed_ids.insert(streamed_ids.end(), delta.token_ids.begin(), delta.token_ids.end());
        return true;
      });
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_GT(deltas, 1);
  EXPECT_EQ(streamed, unary->text);
  EXPECT_EQ(streamed_ids, unary->token_ids);
  EXPECT_EQ(stream->text, unary->text);
  EXPECT_EQ(stream->token_ids, unary->token_ids);
  EXPECT_EQ(stream->finish, unary->finish);
  EXPECT_EQ(stream->usage.prompt_tokens, unary->usage.prompt_tokens);
  EXPECT_EQ(stream->usage.completion_tokens, unary->usage.completion_tokens);
}

TEST_F(GatewayClientTest, SeededSamplingIsReproducibleOverTheWire) {
  const ChatParams sampled{.max_tokens = 6, .temperature = 1.0f, .seed = 5, .ignore_eos = true};
  absl::StatusOr<ChatResult> local = stack_->pipeline().Run(ImageChat(), sampled, {}, nullptr);
  absl::StatusOr<ChatResult> remote = client_->Complete(ImageChat(), sampled);
  ASSERT_TRUE(local.ok() && remote.ok());
  EXPECT_EQ(remote->token_ids, local->token_ids);
}

TEST_F(GatewayClientTest, CancellingAStreamEndsItAndTheGatewayKeepsServing) {
  int deltas = 0;
  absl::StatusOr<ChatResult> stream =
      client_->Stream(ImageChat(), {.max_tokens = 64, .ignore_eos = true},
                      [&](const ChatDelta&) { return ++deltas < 2; });
  EXPECT_EQ(stream.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(deltas, 2);
  EXPECT_TRUE(client_->Complete(ImageChat(), {.max_tokens = 2}).ok());
}

TEST_F(GatewayClientTest, CompletionsBeyondTheLimitAreResourceExhausted) {
  GatewayService one_at_a_time(stack_->pipeline(), stack_->tokenizer().tekken(),
                               {.max_concurrent_requests = 1});
  auto server = RunningServer::Start({&one_at_a_time}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok());
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());
  std::unique_ptr<GatewayClient> first = GatewayClient::Create(address);
  std::unique_ptr<GatewayClient> second = GatewayClient::Create(address);
  ChatCompletionRequest chat;
  chat.messages.push_back(UserMessage{"Count."});
  // While the first completion streams (its slot is held until it ends), a second is refused.
  absl::Status while_busy;
  auto streamed =
      first->Stream(chat, {.max_tokens = 1000, .ignore_eos = true}, [&](const ChatDelta&) {
        while_busy = second->Complete(chat, kGreedy).status();
        return false;
      });
  EXPECT_EQ(while_busy.code(), absl::StatusCode::kResourceExhausted) << while_busy;
  EXPECT_EQ(streamed.status().code(), absl::StatusCode::kCancelled);
  // The slot is free again once the gateway has seen the first call end (the cancellation
  // reaches it asynchronously, within a scheduler poll interval).
  absl::Status after = absl::UnknownError("not tried");
  for (const absl::Time until = absl::Now() + absl::Seconds(5);
       !after.ok() && absl::Now() < until;) {
    after = second->Complete(chat, kGreedy).status();
    if (!after.ok()) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(after.ok()) << after;
}

TEST_F(GatewayClientTest, TokenizeAndModelInfoMatchTheStack) {
  absl::StatusOr<std::vector<int>> remote = client_->Tokenize(ImageChat());
  absl::StatusOr<EncodedChat> local = stack_->tokenizer().EncodeChatCompletion(ImageChat());
  ASSERT_TRUE(remote.ok() && local.ok()) << remote.status();
  EXPECT_EQ(*remote, std::vector<int>(local->tokens.begin(), local->tokens.end()));

  absl::StatusOr<std::vector<int>> text = client_->Tokenize("Hello, world");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, *stack_->tokenizer().tekken().Encode("Hello, world", false, false));

  absl::StatusOr<v1::ModelInfo> info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->vocab_size(), 131072);
  EXPECT_EQ(info->max_image_size(), stack_->config().vision->image_size);
}

TEST_F(GatewayClientTest, ErrorsKeepTheGatewaysStatus) {
  ChatCompletionRequest bad_image;
  bad_image.messages.push_back(
      UserMessage{std::vector<ContentChunk>{ImageChunk{"not an image"}, TextChunk{"?"}}});
  EXPECT_EQ(client_->Complete(bad_image, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Stream(bad_image, {}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<ChatResult> negative = client_->Complete(ImageChat(), {.temperature = -1});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.status().message(), HasSubstr("temperature"));
}

// A final assistant prefix reaches the model as the start of its answer: the prompt ends with
// the prefix's text and no </s>.
TEST_F(GatewayClientTest, APrefixIsContinued) {
  ChatCompletionRequest request;
  request.messages.push_back(UserMessage{"Hi"});
  request.messages.push_back(AssistantMessage{"Hel", /*prefix=*/true});
  absl::StatusOr<std::vector<int>> tokens = client_->Tokenize(request);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  absl::StatusOr<std::vector<int>> hel = client_->Tokenize("Hel");
  ASSERT_TRUE(hel.ok()) << hel.status();
  ASSERT_GE(tokens->size(), hel->size());
  EXPECT_TRUE(std::equal(hel->begin(), hel->end(), tokens->end() - hel->size()));
  absl::StatusOr<ChatResult> result = client_->Complete(request, {.max_tokens = 2});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->usage.prompt_tokens, static_cast<int>(tokens->size()));
}

TEST(GatewayClientUnreachableTest, IsUnavailable) {
  // Port 1 on loopback: nothing listens there.
  std::unique_ptr<GatewayClient> client =
      GatewayClient::Create("127.0.0.1:1", {.timeout = absl::Seconds(10)});
  ChatCompletionRequest request;
  request.messages.push_back(UserMessage{"Hi"});
  EXPECT_EQ(client->Complete(request, {}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace pixtral
