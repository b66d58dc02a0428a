// The served benchmark's scenarios (bench/served_scenarios.h) at toy scale on the CPU: an
// in-process gateway over the embedded stack (random toy weights, the real tekken vocabulary) on
// loopback gRPC. Checks what each report claims against what the gateway says independently
// (its tokenizer, its usage counts, its timing trailer), and that the admit scenario really sends
// the image while every stream is still running.
#include "bench/served_scenarios.h"

#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "services/client/gateway_client.h"
#include "services/common/server_runner.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/gateway_service.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

class ServedScenariosTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/model";
    ASSERT_TRUE(
        WriteRandomModel(dir, ToyConfig(), /*seed=*/3, "tests/data/generated/tekken.json").ok());
    auto stack = EmbeddedStack::Create(
        {.model_dir = dir, .cache_tokens = 4096, .max_batch_size = 16, .step_token_budget = 64});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    service_ = new GatewayService(
        stack_->pipeline(), stack_->tokenizer().tekken(),
        GatewayOptions{.max_concurrent_requests = 64, .model_info = stack_->model_info()});
    auto server = RunningServer::Start({service_}, {.address = "127.0.0.1:0"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    client_ = GatewayClient::Create("127.0.0.1:" + std::to_string(server_->port())).release();
  }

  static ServedOptions Small() {
    return {.text_streams = 4,
            .text_prompt_tokens = 40,
            .text_output_tokens = 8,
            .admit_streams = 3,
            .admit_prompt_tokens = 24,
            .admit_output_tokens = 48,
            .admit_after_tokens = 4,
            .image_side = 64,
            .image_output_tokens = 3,
            .repeats = 2};
  }

  static EmbeddedStack* stack_;
  static GatewayService* service_;
  static RunningServer* server_;
  static GatewayClient* client_;
};

EmbeddedStack* ServedScenariosTest::stack_ = nullptr;
GatewayService* ServedScenariosTest::service_ = nullptr;
RunningServer* ServedScenariosTest::server_ = nullptr;
GatewayClient* ServedScenariosTest::client_ = nullptr;

TEST_F(ServedScenariosTest, PromptTextHasTheAskedTokenCount) {
  for (int tokens : {20, 64, 130}) {
    absl::StatusOr<std::string> text = TextOfPromptTokens(*client_, tokens, tokens);
    ASSERT_TRUE(text.ok()) << text.status();
    ChatCompletionRequest chat;
    chat.messages.push_back(UserMessage{*text});
    absl::StatusOr<std::vector<int>> ids = client_->Tokenize(chat);
    ASSERT_TRUE(ids.ok());
    EXPECT_NEAR(static_cast<double>(ids->size()), tokens, 2) << *text;
  }
}

TEST_F(ServedScenariosTest, VariantJpegsDifferAndHaveTheSide) {
  const std::string a = VariantJpeg("", 64, 1), b = VariantJpeg("", 64, 2);
  EXPECT_EQ(a, VariantJpeg("", 64, 1));
  EXPECT_NE(a, b);
  cv::Mat image = cv::imdecode(std::vector<uchar>(a.begin(), a.end()), cv::IMREAD_COLOR);
  EXPECT_EQ(image.cols, 64);
  EXPECT_EQ(image.rows, 64);
  EXPECT_EQ(a.substr(0, 2), "\xFF\xD8");  // a JPEG
}

TEST_F(ServedScenariosTest, TextCountsEveryStreamsTokens) {
  absl::StatusOr<nlohmann::json> r = RunTextScenario(*client_, Small());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["output_tokens"].get<int>(), 4 * 8);
  EXPECT_NEAR((*r)["prompt_tokens_median"].get<double>(), 40, 2);
  EXPECT_GT((*r)["output_tokens_per_s"].get<double>(), 0);
  EXPECT_LE((*r)["output_tokens_per_s"].get<double>(),
            4 * 8 / ((*r)["ttft_median_ms"].get<double>() / 1000.0));
}

TEST_F(ServedScenariosTest, TextRoundsAddTheSteadyState) {
  ServedOptions options = Small();
  options.text_rounds = 3;
  absl::StatusOr<nlohmann::json> r = RunTextScenario(*client_, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["output_tokens"].get<int>(), 3 * 4 * 8);
  ASSERT_TRUE((*r).contains("steady")) << r->dump(2);
  const nlohmann::json& steady = (*r)["steady"];
  ASSERT_TRUE(steady.is_object()) << r->dump(2);
  EXPECT_GT(steady["window_ms"].get<double>(), 0) << r->dump(2);
  EXPECT_GT(steady["tokens_per_s"].get<double>(), 0) << r->dump(2);
  // One request a stream has no steady state.
  absl::StatusOr<nlohmann::json> once = RunTextScenario(*client_, Small());
  ASSERT_TRUE(once.ok()) << once.status();
  EXPECT_FALSE((*once).contains("steady"));
}

TEST_F(ServedScenariosTest, AdmitSendsTheImageIntoRunningStreams) {
  absl::StatusOr<nlohmann::json> r = RunAdmitScenario(*client_, Small());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)["streams_running_when_sent"].get<bool>()) << r->dump(2);
  // A 64x64 image is 4x4 patches: 16 image tokens, 4 breaks, plus the text.
  EXPECT_GT((*r)["image_prompt_tokens"].get<int>(), 20);
  EXPECT_GT((*r)["usual_gap_ms"].get<double>(), 0);
  EXPECT_GE((*r)["max_gap_during_image_ms"].get<double>(), 0);
  EXPECT_TRUE((*r)["image_breakdown_ms"].contains("first_token")) << r->dump(2);
}

TEST_F(ServedScenariosTest, MultiTurnRepeatsTheConversation) {
  absl::StatusOr<nlohmann::json> r = RunMultiTurnScenario(*client_, Small());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ((*r)["chats"].size(), 2u);
  for (const nlohmann::json& chat : (*r)["chats"]) {
    EXPECT_GT(chat["turn2_prompt_tokens"].get<int>(), chat["turn1_prompt_tokens"].get<int>() + 8);
    EXPECT_GT(chat["turn1_ttft_ms"].get<double>(), 0);
  }
}

TEST_F(ServedScenariosTest, ImageReportsTheGatewaysBreakdown) {
  absl::StatusOr<nlohmann::json> r = RunImageScenario(*client_, Small());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ((*r)["runs"].size(), 2u);
  for (const nlohmann::json& run : (*r)["runs"]) {
    const nlohmann::json& b = run["breakdown_ms"];
    ASSERT_TRUE(b.contains("image_decode") && b.contains("first_token") && b.contains("total"))
        << b.dump();
    // The gateway's clock sits inside the client's: its times cannot exceed what the client saw.
    EXPECT_LE(b["first_token"].get<double>(), run["ttft_ms"].get<double>());
    EXPECT_LE(b["total"].get<double>(), run["e2e_ms"].get<double>());
    EXPECT_GE(run["e2e_ms"].get<double>(), run["ttft_ms"].get<double>());
  }
}

}  // namespace
}  // namespace pixtral
