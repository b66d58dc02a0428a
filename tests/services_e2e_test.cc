// The whole system across processes on loopback, with a random-weight toy model and the real
// tekken vocabulary: a vision worker, a decoder worker and a gateway in front of them, checked
// against a gateway running the same model embedded (one process, no network hop).
#include <signal.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/gateway_calls.h"
#include "tests/server_process.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr char kGateway[] = "services/gateway/gateway_server";
constexpr char kVisionWorker[] = "services/vision_worker/vision_worker";
constexpr char kDecoderWorker[] = "services/decoder_worker/decoder_worker";
constexpr int kMaxImages = 3;

class ServicesEndToEndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/model";
    ASSERT_TRUE(
        WriteRandomModel(dir, ToyConfig(), /*seed=*/5, "tests/data/generated/tekken.json").ok());
    const std::string model = "--model_dir=" + dir;
    // The same limits on both gateways, so both judge requests alike.
    const std::vector<std::string> limits = {absl::StrCat("--max_images_per_request=", kMaxImages),
                                             "--max_image_bytes=2000000",
                                             "--max_image_pixels=2000000"};
    auto vision = ServerProcess::Start(kVisionWorker, {model}, "vision");
    ASSERT_TRUE(vision.ok()) << vision.status();
    vision_ = vision->release();
    auto decoder = ServerProcess::Start(kDecoderWorker, {model, "--cache_tokens=16384"}, "decoder");
    ASSERT_TRUE(decoder.ok()) << decoder.status();
    decoder_ = decoder->release();
    std::vector<std::string> args = {model, "--vision_workers=" + vision_->address(),
                                     "--decoder_workers=" + decoder_->address()};
    args.insert(args.end(), limits.begin(), limits.end());
    auto gateway = ServerProcess::Start(kGateway, args, "gateway");
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = gateway->release();
    args = {model, "--embedded", "--cache_tokens=16384"};
    args.insert(args.end(), limits.begin(), limits.end());
    auto embedded = ServerProcess::Start(kGateway, args, "embedded");
    ASSERT_TRUE(embedded.ok()) << embedded.status();
    embedded_ = embedded->release();
  }

  static void TearDownTestSuite() {
    for (ServerProcess* process : {gateway_, embedded_, vision_, decoder_}) delete process;
  }

  void SetUp() override {
    ASSERT_NE(gateway_, nullptr);
    ASSERT_NE(embedded_, nullptr);
    distributed_stub_ = GatewayStub(gateway_->address());
    embedded_stub_ = GatewayStub(embedded_->address());
  }

  // Every process is still up and serving.
  void TearDown() override {
    for (ServerProcess* process : {gateway_, embedded_, vision_, decoder_}) {
      EXPECT_FALSE(process->Wait(absl::ZeroDuration()).has_value()) << process->pid();
      EXPECT_TRUE(IsServing(process->address())) << process->address();
    }
  }

  static std::string Image(const std::string& name) {
    return ReadFileOrFail("tests/data/images/" + name);
  }

  static ServerProcess* vision_;
  static ServerProcess* decoder_;
  static ServerProcess* gateway_;
  static ServerProcess* embedded_;
  std::unique_ptr<v1::Gateway::Stub> distributed_stub_;
  std::unique_ptr<v1::Gateway::Stub> embedded_stub_;
};

ServerProcess* ServicesEndToEndTest::vision_ = nullptr;
ServerProcess* ServicesEndToEndTest::decoder_ = nullptr;
ServerProcess* ServicesEndToEndTest::gateway_ = nullptr;
ServerProcess* ServicesEndToEndTest::embedded_ = nullptr;

TEST_F(ServicesEndToEndTest, DistributedAndEmbeddedGiveTheSameGreedyTokens) {
  for (const v1::ChatCompletionRequest& request :
       {GreedyChat("Tell me a story."), GreedyChat("Describe it.", {Image("chelsea.png")}),
        GreedyChat("Compare them.", {Image("coffee.png"), Image("astronaut_rgba.png")})}) {
    const CallResult distributed = Unary(*distributed_stub_, request);
    const CallResult embedded = Unary(*embedded_stub_, request);
    ASSERT_TRUE(distributed.status.ok()) << distributed.status.error_message();
    ASSERT_TRUE(embedded.status.ok()) << embedded.status.error_message();
    EXPECT_THAT(distributed.token_ids, SizeIs(8));
    EXPECT_EQ(distributed.token_ids, embedded.token_ids);
    EXPECT_EQ(distributed.text, embedded.text);
    EXPECT_EQ(distributed.usage.prompt_tokens(), embedded.usage.prompt_tokens());
    EXPECT_EQ(distributed.usage.image_tokens(), embedded.usage.image_tokens());
    EXPECT_EQ(distributed.finish_reason, v1::FINISH_REASON_LENGTH);
  }
}

TEST_F(ServicesEndToEndTest, StreamingAndUnaryAgree) {
  const v1::ChatCompletionRequest request =
      GreedyChat("What is in this picture?", {Image("camera.png")}, /*max_tokens=*/12);
  const CallResult unary = Unary(*distributed_stub_, request);
  const CallResult streamed = Streamed(*distributed_stub_, request);
  ASSERT_TRUE(unary.status.ok()) << unary.status.error_message();
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  EXPECT_GT(streamed.chunks, 1);
  EXPECT_EQ(streamed.token_ids, unary.token_ids);
  EXPECT_EQ(streamed.text, unary.text);
  EXPECT_EQ(streamed.finish_reason, unary.finish_reason);
  EXPECT_EQ(streamed.usage.SerializeAsString(), unary.usage.SerializeAsString());
  EXPECT_EQ(unary.usage.completion_tokens(), 12);
}

TEST_F(ServicesEndToEndTest, MultiTurnWithImages) {
  const v1::ChatCompletionRequest first = GreedyChat("What is this?", {Image("chelsea.png")});
  const CallResult answer = Unary(*distributed_stub_, first);
  ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();

  v1::ChatCompletionRequest second = first;
  *second.add_messages() = AssistantMessage(answer.text);
  *second.add_messages() = UserMessage("And this one?", {Image("coffee.png")});
  const CallResult distributed = Unary(*distributed_stub_, second);
  const CallResult embedded = Unary(*embedded_stub_, second);
  ASSERT_TRUE(distributed.status.ok()) << distributed.status.error_message();
  ASSERT_TRUE(embedded.status.ok()) << embedded.status.error_message();
  EXPECT_EQ(distributed.token_ids, embedded.token_ids);
  // Both images are in the prompt: more image tokens than the first turn alone had.
  EXPECT_GT(distributed.usage.image_tokens(), answer.usage.image_tokens());
  EXPECT_GT(distributed.usage.prompt_tokens(),
            answer.usage.prompt_tokens() + answer.usage.completion_tokens());

  v1::TokenizeRequest tokenize;
  *tokenize.mutable_chat() = second;
  v1::TokenizeResponse tokens;
  grpc::ClientContext context;
  ASSERT_TRUE(distributed_stub_->Tokenize(&context, tokenize, &tokens).ok());
  EXPECT_EQ(tokens.token_ids_size(), distributed.usage.prompt_tokens());
}

TEST_F(ServicesEndToEndTest, ConcurrentStreamsGetTheTokensTheyGetAlone) {
  constexpr int kRequests = 32;
  const std::vector<std::string> images = {Image("chelsea.png"), Image("astronaut_rgba.png"),
                                           Image("camera.png")};
  std::vector<v1::ChatCompletionRequest> requests;
  std::vector<CallResult> alone;
  for (int i = 0; i < kRequests; ++i) {
    // Every other request has an image; lengths differ so requests finish at different steps.
    requests.push_back(GreedyChat(absl::StrCat("Request ", i, ": say something about ", i * 7, "."),
                                  i % 2 == 0
                                      ? std::vector<std::string>{images[i / 2 % images.size()]}
                                      : std::vector<std::string>{},
                                  /*max_tokens=*/4 + i % 5));
  }
  // Alone: one at a time, through the embedded gateway (also checks the two paths again).
  for (const v1::ChatCompletionRequest& request : requests) {
    alone.push_back(Unary(*embedded_stub_, request));
    ASSERT_TRUE(alone.back().status.ok()) << alone.back().status.error_message();
  }
  std::vector<CallResult> together(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] { together[i] = Streamed(*distributed_stub_, requests[i]); });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(together[i].status.ok()) << i << ": " << together[i].status.error_message();
    EXPECT_THAT(together[i].token_ids, ElementsAreArray(alone[i].token_ids)) << i;
    EXPECT_EQ(together[i].text, alone[i].text) << i;
  }
}

struct BadRequest {
  std::string name;
  v1::ChatCompletionRequest request;
  grpc::StatusCode code;
  std::string message;
};

TEST_F(ServicesEndToEndTest, BadInputGetsAClearStatusAndTheServersKeepServing) {
  std::vector<BadRequest> cases;
  const std::string png = Image("chelsea.png");
  cases.push_back({"corrupt image", GreedyChat("Hi", {png.substr(0, png.size() / 3)}),
                   grpc::StatusCode::INVALID_ARGUMENT, ""});
  cases.push_back({"unsupported format", GreedyChat("Hi", {std::string("II*\0\x08\0\0\0", 8)}),
                   grpc::StatusCode::INVALID_ARGUMENT, ""});
  cases.push_back({"image over the byte limit", GreedyChat("Hi", {std::string(2000001, 'x')}),
                   grpc::StatusCode::INVALID_ARGUMENT, "bytes"});
  cases.push_back({"image over the pixel limit", GreedyChat("Hi", {Image("coffee_big.jpg")}),
                   grpc::StatusCode::RESOURCE_EXHAUSTED, ""});
  v1::ChatCompletionRequest too_many = GreedyChat("Hi", std::vector<std::string>(4, png));
  cases.push_back({"too many images", too_many, grpc::StatusCode::INVALID_ARGUMENT, ""});
  for (const char* url : {"http://127.0.0.1:1/cat.png", "http://10.1.2.3/cat.png",
                          "http://169.254.169.254/latest/meta-data"}) {
    v1::ChatCompletionRequest request = GreedyChat("Hi");
    request.mutable_messages(0)->add_content()->set_image_url(url);
    cases.push_back({url, request, grpc::StatusCode::PERMISSION_DENIED, "refusing"});
  }
  v1::ChatCompletionRequest local_file = GreedyChat("Hi");
  local_file.mutable_messages(0)->add_content()->set_image_url("file:///etc/passwd");
  cases.push_back({"local file", local_file, grpc::StatusCode::PERMISSION_DENIED, "not enabled"});
  v1::ChatCompletionRequest empty = GreedyChat("Hi");
  empty.clear_messages();
  cases.push_back({"no messages", empty, grpc::StatusCode::INVALID_ARGUMENT, ""});
  v1::ChatCompletionRequest empty_chunk = GreedyChat("Hi");
  empty_chunk.mutable_messages(0)->add_content();
  cases.push_back({"an empty chunk", empty_chunk, grpc::StatusCode::INVALID_ARGUMENT, ""});
  // (A user message without content is empty text, as mistral_common encodes it; an assistant
  // message needs content or tool calls.)
  v1::ChatCompletionRequest no_content = GreedyChat("Hi");
  no_content.add_messages()->set_role(v1::ChatMessage::ROLE_ASSISTANT);
  *no_content.add_messages() = no_content.messages(0);
  cases.push_back({"an assistant message without content", no_content,
                   grpc::StatusCode::INVALID_ARGUMENT, "content or tool calls"});
  v1::ChatCompletionRequest no_role = GreedyChat("Hi");
  no_role.mutable_messages(0)->set_role(v1::ChatMessage::ROLE_UNSPECIFIED);
  cases.push_back({"no role", no_role, grpc::StatusCode::INVALID_ARGUMENT, ""});
  v1::ChatCompletionRequest huge = GreedyChat("Hi", {}, /*max_tokens=*/1 << 30);
  cases.push_back({"huge max_tokens", huge, grpc::StatusCode::INVALID_ARGUMENT, "context"});
  v1::ChatCompletionRequest negative = GreedyChat("Hi", {}, /*max_tokens=*/-1);
  cases.push_back({"negative max_tokens", negative, grpc::StatusCode::INVALID_ARGUMENT, ""});
  v1::ChatCompletionRequest hot = GreedyChat("Hi");
  hot.mutable_sampling()->set_temperature(-1);
  cases.push_back({"negative temperature", hot, grpc::StatusCode::INVALID_ARGUMENT, ""});

  for (v1::Gateway::Stub* stub : {distributed_stub_.get(), embedded_stub_.get()}) {
    for (const BadRequest& bad : cases) {
      for (const CallResult& result : {Unary(*stub, bad.request), Streamed(*stub, bad.request)}) {
        EXPECT_EQ(result.status.error_code(), bad.code)
            << bad.name << ": " << result.status.error_message();
        EXPECT_THAT(result.status.error_message(), HasSubstr(bad.message)) << bad.name;
      }
    }
    const CallResult good = Unary(*stub, GreedyChat("Hi", {png}));
    EXPECT_TRUE(good.status.ok()) << good.status.error_message();
    v1::ChatCompletionRequest empty_user = GreedyChat("Hi");
    empty_user.mutable_messages(0)->clear_content();
    const CallResult empty = Unary(*stub, empty_user);
    EXPECT_TRUE(empty.status.ok())
        << "a user message without content is empty text: " << empty.status.error_message();
  }
}

TEST_F(ServicesEndToEndTest, InvalidUtf8TextIsInvalidArgument) {
  // proto3 string fields must be UTF-8: the C++ client serializes the bytes anyway (logging an
  // error), and the server's parser rejects the message before the gateway sees it. gRPC would
  // answer INTERNAL; the servers' ParseErrorInterceptor makes that INVALID_ARGUMENT.
  const v1::ChatCompletionRequest request = GreedyChat("caf\xC3 \xFF\xFE");
  for (v1::Gateway::Stub* stub : {distributed_stub_.get(), embedded_stub_.get()}) {
    for (const CallResult& result : {Unary(*stub, request), Streamed(*stub, request)}) {
      EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << result.status.error_message();
      EXPECT_THAT(result.status.error_message(), HasSubstr("UTF-8"));
    }
  }
}

TEST_F(ServicesEndToEndTest, DeadlinesExpire) {
  // Far more tokens than fit in the deadline.
  const v1::ChatCompletionRequest request =
      GreedyChat("Write a long story.", {Image("chelsea.png")}, /*max_tokens=*/8000);
  for (v1::Gateway::Stub* stub : {distributed_stub_.get(), embedded_stub_.get()}) {
    const absl::Time start = absl::Now();
    EXPECT_EQ(Unary(*stub, request, absl::Milliseconds(500)).status.error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
    const CallResult streamed = Streamed(*stub, request, absl::Milliseconds(500));
    EXPECT_EQ(streamed.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  }
}

TEST_F(ServicesEndToEndTest, ModelInfoDescribesTheModel) {
  for (v1::Gateway::Stub* stub : {distributed_stub_.get(), embedded_stub_.get()}) {
    grpc::ClientContext context;
    v1::ModelInfo info;
    ASSERT_TRUE(stub->GetModelInfo(&context, {}, &info).ok());
    EXPECT_EQ(info.model_name(), "model");
    EXPECT_EQ(info.vocab_size(), 131072);
    EXPECT_EQ(info.max_image_size(), 1024);
    EXPECT_EQ(info.image_patch_size(), 16);
    EXPECT_EQ(info.max_images_per_request(), kMaxImages);
  }
}

}  // namespace
}  // namespace pixtral
