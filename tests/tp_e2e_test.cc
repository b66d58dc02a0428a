// Tensor parallelism through the services, across processes on loopback: a decoder worker split
// over two CPU ranks (--tp=2 --backend=cpu) and an embedded gateway split the same way give the
// greedy tokens of an unsplit decoder worker, on the toy model with the real tekken vocabulary.
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/gateway_calls.h"
#include "tests/server_process.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

using ::testing::SizeIs;

constexpr char kGateway[] = "services/gateway/gateway_server";
constexpr char kVisionWorker[] = "services/vision_worker/vision_worker";
constexpr char kDecoderWorker[] = "services/decoder_worker/decoder_worker";

class TensorParallelEndToEndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/model";
    ASSERT_TRUE(
        WriteRandomModel(dir, ToyConfig(), /*seed=*/11, "tests/data/generated/tekken.json").ok());
    model_ = "--model_dir=" + dir;
    auto vision = ServerProcess::Start(kVisionWorker, {model_}, "vision");
    ASSERT_TRUE(vision.ok()) << vision.status();
    vision_ = vision->release();
    for (int i = 0; i < 2; ++i) {
      const std::string tp = i == 0 ? "--tp=1" : "--tp=2";
      auto decoder = ServerProcess::Start(
          kDecoderWorker, {model_, "--backend=cpu", tp, "--cache_tokens=16384"}, "decoder" + tp);
      ASSERT_TRUE(decoder.ok()) << decoder.status();
      decoders_[i] = decoder->release();
      auto gateway = ServerProcess::Start(kGateway,
                                          {model_, "--vision_workers=" + vision_->address(),
                                           "--decoder_workers=" + decoders_[i]->address()},
                                          "gateway" + tp);
      ASSERT_TRUE(gateway.ok()) << gateway.status();
      gateways_[i] = gateway->release();
    }
    auto embedded = ServerProcess::Start(
        kGateway, {model_, "--embedded", "--backend=cpu", "--tp=2", "--cache_tokens=16384"},
        "embedded-tp2");
    ASSERT_TRUE(embedded.ok()) << embedded.status();
    embedded_ = embedded->release();
  }

  static void TearDownTestSuite() {
    for (ServerProcess* process :
         {gateways_[0], gateways_[1], embedded_, decoders_[0], decoders_[1], vision_}) {
      delete process;
    }
  }

  void SetUp() override {
    for (ServerProcess* gateway : {gateways_[0], gateways_[1], embedded_}) {
      ASSERT_NE(gateway, nullptr);
    }
    tp1_ = GatewayStub(gateways_[0]->address());
    tp2_ = GatewayStub(gateways_[1]->address());
    embedded_tp2_ = GatewayStub(embedded_->address());
  }

  static std::string Image(const std::string& name) {
    return ReadFileOrFail("tests/data/images/" + name);
  }

  static std::vector<v1::ChatCompletionRequest> Requests() {
    return {GreedyChat("Tell me a story.", {}, 12),
            GreedyChat("Describe it.", {Image("chelsea.png")}, 12),
            GreedyChat("Compare them.", {Image("coffee.png"), Image("astronaut_rgba.png")}, 12)};
  }

  static std::string model_;
  static ServerProcess* vision_;
  static ServerProcess* decoders_[2];
  static ServerProcess* gateways_[2];
  static ServerProcess* embedded_;
  std::unique_ptr<v1::Gateway::Stub> tp1_, tp2_, embedded_tp2_;
};

std::string TensorParallelEndToEndTest::model_;
ServerProcess* TensorParallelEndToEndTest::vision_ = nullptr;
ServerProcess* TensorParallelEndToEndTest::decoders_[2] = {nullptr, nullptr};
ServerProcess* TensorParallelEndToEndTest::gateways_[2] = {nullptr, nullptr};
ServerProcess* TensorParallelEndToEndTest::embedded_ = nullptr;

TEST_F(TensorParallelEndToEndTest, Tp2GivesTheGreedyTokensOfTp1) {
  for (const v1::ChatCompletionRequest& request : Requests()) {
    const CallResult want = Unary(*tp1_, request);
    const CallResult got = Unary(*tp2_, request);
    const CallResult embedded = Streamed(*embedded_tp2_, request);
    ASSERT_TRUE(want.status.ok()) << want.status.error_message();
    ASSERT_TRUE(got.status.ok()) << got.status.error_message();
    ASSERT_TRUE(embedded.status.ok()) << embedded.status.error_message();
    EXPECT_THAT(want.token_ids, SizeIs(12));
    EXPECT_EQ(got.token_ids, want.token_ids);
    EXPECT_EQ(got.text, want.text);
    EXPECT_EQ(got.usage.image_tokens(), want.usage.image_tokens());
    EXPECT_EQ(embedded.token_ids, want.token_ids);
  }
}

// Requests that run together (continuous batching of prefills and decode rows over the ranks)
// get what each gets alone at TP=1.
TEST_F(TensorParallelEndToEndTest, ConcurrentStreamsAtTp2MatchTp1Alone) {
  const std::vector<v1::ChatCompletionRequest> requests = Requests();
  std::vector<CallResult> alone;
  for (const auto& request : requests) alone.push_back(Unary(*tp1_, request));
  std::vector<CallResult> together(requests.size() * 2);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < together.size(); ++i) {
    threads.emplace_back([&, i] { together[i] = Streamed(*tp2_, requests[i % requests.size()]); });
  }
  for (std::thread& thread : threads) thread.join();
  for (size_t i = 0; i < together.size(); ++i) {
    ASSERT_TRUE(together[i].status.ok()) << together[i].status.error_message();
    EXPECT_EQ(together[i].token_ids, alone[i % requests.size()].token_ids) << i;
  }
}

// --tp must divide the model's 4 attention heads: the worker refuses to start.
TEST_F(TensorParallelEndToEndTest, ATpThatDoesNotDivideTheHeadsIsRefused) {
  for (const std::string tp : {"--tp=3", "--tp=0"}) {
    auto worker =
        ServerProcess::Start(kDecoderWorker, {model_, "--backend=cpu", tp}, "decoder-bad" + tp);
    EXPECT_FALSE(worker.ok()) << tp;
    EXPECT_THAT(std::string(worker.status().message()), ::testing::HasSubstr("before serving"));
  }
}

}  // namespace
}  // namespace pixtral
