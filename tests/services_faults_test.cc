// Faults across processes: workers killed mid-request, streams cancelled or expired (their KV
// cache must come back), replicas failing over, and SIGTERM with calls in flight. A gateway
// fronts two vision workers and one decoder worker with a deliberately small cache.
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

constexpr char kGateway[] = "services/gateway/gateway_server";
constexpr char kVisionWorker[] = "services/vision_worker/vision_worker";
constexpr char kDecoderWorker[] = "services/decoder_worker/decoder_worker";
// Small enough that one request can ask for all of it.
constexpr int kCacheTokens = 2048;

// A streaming call kept open by the test.
class OpenStream {
 public:
  OpenStream(v1::Gateway::Stub& stub, const v1::ChatCompletionRequest& request,
             absl::Duration timeout = absl::Seconds(60)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    reader_ = stub.StreamChatCompletion(&context_, request);
  }

  // Reads until a chunk with tokens arrives; false if the stream ended first.
  bool ReadTokens() {
    v1::ChatCompletionChunk chunk;
    while (reader_->Read(&chunk)) {
      tokens_ += chunk.token_ids_size();
      if (chunk.token_ids_size() > 0) return true;
    }
    return false;
  }

  // Reads to the end and returns the status.
  grpc::Status Finish() {
    while (ReadTokens()) {
    }
    return reader_->Finish();
  }

  void Cancel() { context_.TryCancel(); }
  int tokens() const { return tokens_; }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::ChatCompletionChunk>> reader_;
  int tokens_ = 0;
};

class ServicesFaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::string(std::getenv("TEST_TMPDIR")) + "/model");
    ASSERT_TRUE(
        WriteRandomModel(*dir_, ToyConfig(), /*seed=*/9, "tests/data/generated/tekken.json").ok());
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(StartVision(i, /*port=*/0));
    }
    ASSERT_TRUE(StartDecoder(/*port=*/0));
    auto gateway = ServerProcess::Start(
        kGateway,
        {"--model_dir=" + *dir_,
         absl::StrCat("--vision_workers=", vision_[0]->address(), ",", vision_[1]->address()),
         "--decoder_workers=" + decoder_->address(),
         // Every image request then goes through a vision worker before the decoder sees it,
         // as these tests of their failures need (with image keys the decoder would refuse the
         // large image before any encoding, and answer repeated images from its cache).
         "--image_keys=false"},
        "gateway");
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = gateway->release();
  }

  static void TearDownTestSuite() {
    for (ServerProcess* process : {gateway_, vision_[0], vision_[1], decoder_}) delete process;
  }

  void SetUp() override {
    ASSERT_NE(gateway_, nullptr);
    stub_ = GatewayStub(gateway_->address());
  }

  // Restarts on the same port (0: a free one), as a restarted pod would come back.
  static bool StartVision(int i, int port) {
    delete vision_[i];
    vision_[i] = nullptr;
    auto vision = ServerProcess::Start(
        kVisionWorker,
        // No image-feature cache: the kill test times a real encode of an image sent twice.
        {"--model_dir=" + *dir_, absl::StrCat("--port=", port), "--image_cache_bytes=0"}, "vision");
    if (!vision.ok()) return false;
    vision_[i] = vision->release();
    return true;
  }
  static bool StartDecoder(int port) {
    delete decoder_;
    decoder_ = nullptr;
    auto decoder = ServerProcess::Start(kDecoderWorker,
                                        {"--model_dir=" + *dir_, absl::StrCat("--port=", port),
                                         absl::StrCat("--cache_tokens=", kCacheTokens)},
                                        "decoder");
    if (!decoder.ok()) return false;
    decoder_ = decoder->release();
    return true;
  }

  static void Kill(ServerProcess* process) {
    process->Signal(SIGKILL);
    ASSERT_TRUE(process->Wait(absl::Seconds(10)).has_value());
  }

  // Retries `request` until it succeeds (a restarted worker's channel reconnects with backoff).
  CallResult SucceedsWithin(const v1::ChatCompletionRequest& request, absl::Duration limit) {
    const absl::Time deadline = absl::Now() + limit;
    CallResult result = Unary(*stub_, request);
    while (!result.status.ok() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(200));
      result = Unary(*stub_, request);
    }
    return result;
  }

  static std::string Image(const std::string& name) {
    return ReadFileOrFail("tests/data/images/" + name);
  }

  static std::string* dir_;
  static ServerProcess* vision_[2];
  static ServerProcess* decoder_;
  static ServerProcess* gateway_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

std::string* ServicesFaultsTest::dir_ = nullptr;
ServerProcess* ServicesFaultsTest::vision_[2] = {nullptr, nullptr};
ServerProcess* ServicesFaultsTest::decoder_ = nullptr;
ServerProcess* ServicesFaultsTest::gateway_ = nullptr;

// A step budget for steps with decode rows that leaves prompts no room is a usage error: the worker
// exits before serving (it would otherwise stall prompts behind full batches). One token more is
// accepted.
TEST_F(ServicesFaultsTest, DecoderWorkerRefusesAMixedBudgetWithinItsBatch) {
  const std::vector<std::string> args = {"--model_dir=" + *dir_, "--port=0", "--max_batch_size=8"};
  std::vector<std::string> refused = args, accepted = args;
  refused.push_back("--mixed_step_token_budget=8");
  accepted.push_back("--mixed_step_token_budget=9");
  auto bad = ServerProcess::Start(kDecoderWorker, refused, "decoder-bad-budget");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("exited with 1"));
  auto good = ServerProcess::Start(kDecoderWorker, accepted, "decoder-mixed-budget");
  ASSERT_TRUE(good.ok()) << good.status();
}

TEST_F(ServicesFaultsTest, CancelledAndExpiredStreamsReturnTheirCache) {
  // Three streams hold most of the cache; the client cancels them mid-way.
  std::vector<std::unique_ptr<OpenStream>> streams;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(std::make_unique<OpenStream>(
        *stub_, GreedyChat(absl::StrCat("Story ", i), {}, /*max_tokens=*/500)));
  }
  for (auto& stream : streams) ASSERT_TRUE(stream->ReadTokens());
  for (auto& stream : streams) {
    stream->Cancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
    EXPECT_LT(stream->tokens(), 500);
  }
  // One more runs out of time mid-way.
  OpenStream expiring(*stub_, GreedyChat("Another story", {}, /*max_tokens=*/1500),
                      absl::Milliseconds(300));
  EXPECT_EQ(expiring.Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  // A request that needs the whole cache: it only runs if every block came back (alone and out
  // of cache, the decoder fails it with RESOURCE_EXHAUSTED instead).
  std::string text;
  for (int i = 0; i < 1900; ++i) text += " hello";
  v1::TokenizeRequest tokenize;
  *tokenize.mutable_chat() = GreedyChat(text);
  v1::TokenizeResponse tokens;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->Tokenize(&context, tokenize, &tokens).ok());
  const int max_tokens = kCacheTokens - tokens.token_ids_size();
  ASSERT_GT(max_tokens, 0);
  ASSERT_LT(max_tokens, 200);
  const CallResult whole = Unary(*stub_, GreedyChat(text, {}, max_tokens));
  ASSERT_TRUE(whole.status.ok()) << whole.status.error_message();
  EXPECT_EQ(static_cast<int>(whole.token_ids.size()), max_tokens);
  // One token more does not fit at all.
  EXPECT_EQ(Unary(*stub_, GreedyChat(text, {}, max_tokens + 1)).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServicesFaultsTest, VisionWorkerKilledMidRequest) {
  const v1::ChatCompletionRequest small = GreedyChat("What is it?", {Image("chelsea.png")});
  const CallResult before = Unary(*stub_, small);
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();

  // One replica down: the pool fails over, every call succeeds with the same tokens.
  const int port0 = vision_[0]->port();
  Kill(vision_[0]);
  for (int i = 0; i < 4; ++i) {
    const CallResult result = Unary(*stub_, small);
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.token_ids, before.token_ids);
  }

  // The last replica dies while it encodes a large image (2752 patches): UNAVAILABLE, promptly.
  // (Alive, it encodes it, and then the decoder refuses a prompt larger than its small cache.)
  const v1::ChatCompletionRequest large =
      GreedyChat("Describe it.", {Image("coffee_big.jpg")}, /*max_tokens=*/2);
  const absl::Time start = absl::Now();
  const CallResult encoded = Unary(*stub_, large);
  const absl::Duration alone = absl::Now() - start;
  ASSERT_EQ(encoded.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_THAT(encoded.status.error_message(), ::testing::HasSubstr("exceeds the context"));
  ASSERT_GT(alone, absl::Milliseconds(200)) << "too fast to kill the worker mid-way";
  CallResult killed;
  std::thread call([&] { killed = Unary(*stub_, large); });
  // Most of that time is the encoder's (the gateway only decodes and resizes).
  absl::SleepFor(alone * 0.6);
  const absl::Time killed_at = absl::Now();
  Kill(vision_[1]);
  call.join();
  EXPECT_EQ(killed.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << killed.status.error_message();
  EXPECT_LT(absl::Now() - killed_at, absl::Seconds(3));

  // The gateway stays up: text needs no vision worker; images fail fast until one is back.
  EXPECT_TRUE(IsServing(gateway_->address()));
  EXPECT_TRUE(Unary(*stub_, GreedyChat("Hello")).status.ok());
  EXPECT_EQ(Unary(*stub_, small).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  ASSERT_TRUE(StartVision(0, port0));
  const CallResult after = SucceedsWithin(small, absl::Seconds(20));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.token_ids, before.token_ids);
  ASSERT_TRUE(StartVision(1, 0));  // not in the gateway's list any more; keeps the suite whole
}

TEST_F(ServicesFaultsTest, DecoderWorkerKilledMidStream) {
  const v1::ChatCompletionRequest request = GreedyChat("Tell me everything.", {}, 1500);
  OpenStream stream(*stub_, request);
  ASSERT_TRUE(stream.ReadTokens());
  const int port = decoder_->port();
  const absl::Time killed_at = absl::Now();
  Kill(decoder_);
  EXPECT_EQ(stream.Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - killed_at, absl::Seconds(3));
  EXPECT_EQ(Unary(*stub_, GreedyChat("Hello")).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  // With no decoder worker reachable the gateway leaves rotation (NOT_SERVING, still alive), and
  // returns once one is back.
  auto serving_within = [&](bool serving, absl::Duration limit) {
    const absl::Time until = absl::Now() + limit;
    while (IsServing(gateway_->address()) != serving) {
      if (absl::Now() > until) return false;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return true;
  };
  EXPECT_TRUE(serving_within(false, absl::Seconds(3)));

  ASSERT_TRUE(StartDecoder(port));
  const CallResult after = SucceedsWithin(GreedyChat("Hello"), absl::Seconds(20));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_TRUE(serving_within(true, absl::Seconds(3)));
}

TEST_F(ServicesFaultsTest, SigtermLetsTheDecoderWorkerFinishAnInFlightStream) {
  OpenStream stream(*stub_, GreedyChat("Count to a hundred.", {}, /*max_tokens=*/100));
  ASSERT_TRUE(stream.ReadTokens());
  const int port = decoder_->port();
  decoder_->Signal(SIGTERM);
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_EQ(stream.tokens(), 100);
  EXPECT_EQ(decoder_->Wait(absl::Seconds(15)), 0);
  ASSERT_TRUE(StartDecoder(port));
  EXPECT_TRUE(SucceedsWithin(GreedyChat("Hello"), absl::Seconds(20)).status.ok());
}

TEST_F(ServicesFaultsTest, SigtermOnTheGatewayFinishesOrCancelsAtTheGraceLimit) {
  // Grace enough for the stream: it completes, then the gateway exits 0.
  auto patient = ServerProcess::Start(
      kGateway, {"--model_dir=" + *dir_, "--embedded", "--shutdown_grace=30s"}, "patient");
  ASSERT_TRUE(patient.ok()) << patient.status();
  auto patient_stub = GatewayStub((*patient)->address());
  OpenStream finishing(*patient_stub, GreedyChat("Count to fifty.", {}, /*max_tokens=*/50));
  ASSERT_TRUE(finishing.ReadTokens());
  (*patient)->Signal(SIGTERM);
  EXPECT_TRUE(finishing.Finish().ok());
  EXPECT_EQ(finishing.tokens(), 50);
  EXPECT_EQ((*patient)->Wait(absl::Seconds(15)), 0);

  // A stream far longer than the grace period is cancelled at its end; still exit 0.
  auto hasty = ServerProcess::Start(
      kGateway, {"--model_dir=" + *dir_, "--embedded", "--shutdown_grace=1s"}, "hasty");
  ASSERT_TRUE(hasty.ok()) << hasty.status();
  auto hasty_stub = GatewayStub((*hasty)->address());
  OpenStream endless(*hasty_stub, GreedyChat("Never stop.", {}, /*max_tokens=*/30000));
  ASSERT_TRUE(endless.ReadTokens());
  const absl::Time signalled = absl::Now();
  (*hasty)->Signal(SIGTERM);
  EXPECT_FALSE(endless.Finish().ok());
  EXPECT_LT(endless.tokens(), 30000);
  EXPECT_EQ((*hasty)->Wait(absl::Seconds(15)), 0);
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(10));
}

}  // namespace
}  // namespace pixtral
