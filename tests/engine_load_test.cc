// The load benchmark at small scale on the CPU, as a test of the serving engine's properties: an
// in-process gateway over the embedded stack (random-weight toy model, real tekken vocabulary) on
// loopback gRPC, driven by bench/load_runner with multi-turn sessions, repeated images, client
// cancels, bad requests and a KV cache small enough to force preemptions. It checks that
// requests are admitted in arrival order, that no decoding stream waits more than one step, that
// repeated prefixes and images hit the prefix cache, that every KV block comes back, and that
// every completed request got the greedy tokens it gets alone.
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "bench/load_runner.h"
#include "bench/load_workload.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/client/gateway_client.h"
#include "services/common/server_runner.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/gateway_service.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

// A gateway over an embedded stack, served on loopback.
struct InProcessGateway {
  std::unique_ptr<EmbeddedStack> stack;
  std::unique_ptr<GatewayService> service;
  std::unique_ptr<RunningServer> server;
  std::unique_ptr<GatewayClient> client;

  static std::unique_ptr<InProcessGateway> Start(const EmbeddedStackOptions& options) {
    auto g = std::make_unique<InProcessGateway>();
    auto stack = EmbeddedStack::Create(options);
    EXPECT_TRUE(stack.ok()) << stack.status();
    if (!stack.ok()) return nullptr;
    g->stack = *std::move(stack);
    g->service = std::make_unique<GatewayService>(
        g->stack->pipeline(), g->stack->tokenizer().tekken(),
        GatewayOptions{.max_concurrent_requests = 1024, .model_info = g->stack->model_info()});
    auto server = RunningServer::Start({g->service.get()}, {.address = "127.0.0.1:0"});
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    g->server = *std::move(server);
    g->client = GatewayClient::Create("127.0.0.1:" + std::to_string(g->server->port()));
    return g;
  }

  // Blocks held by sequences, once the engine has had time to end what clients cancelled.
  int UsedBlocksWhenIdle() {
    for (int i = 0; i < 500 && stack->runner().num_used_blocks() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return stack->runner().num_used_blocks();
  }
};

class EngineLoadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::string(std::getenv("TEST_TMPDIR")) + "/model");
    ASSERT_TRUE(
        WriteRandomModel(*dir_, ToyConfig(), /*seed=*/11, "tests/data/generated/tekken.json").ok());
  }

  static EmbeddedStackOptions Options() {
    // 20 blocks of 16: six sessions' conversations do not fit at once. Steps with decode rows
    // take at most 24 tokens, so prompts also prefill in chunks beside running streams.
    return {.model_dir = *dir_,
            .cache_tokens = 320,
            .max_batch_size = 8,
            .step_token_budget = 48,
            .mixed_step_token_budget = 24};
  }

  static std::string* dir_;
};

std::string* EngineLoadTest::dir_ = nullptr;

TEST_F(EngineLoadTest, ServesTheLoadWithTheEnginesProperties) {
  std::unique_ptr<InProcessGateway> gateway = InProcessGateway::Start(Options());
  ASSERT_NE(gateway, nullptr);
  const LoadSpec spec{.sessions = 12,
                      .max_turns = 2,
                      .image_fraction = 0.5,
                      .distinct_images = 2,
                      .image_sides = {32, 64},
                      .min_prompt_words = 8,
                      .max_prompt_words = 40,
                      .min_output_tokens = 4,
                      .max_output_tokens = 24,
                      .cancel_fraction = 0.2,
                      .seed = 5};
  const std::vector<LoadSession> sessions = MakeSessions(spec);

  // Bad requests alongside the load: they fail alone and hold no blocks.
  std::thread bad_client([&] {
    ChatCompletionRequest corrupt;
    corrupt.messages.push_back(UserMessage{std::vector<ContentChunk>{ImageChunk{"not an image"}}});
    ChatCompletionRequest too_long;
    too_long.messages.push_back(UserMessage{std::string("hello")});
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(gateway->client->Complete(corrupt, {.max_tokens = 4}).status().code(),
                absl::StatusCode::kInvalidArgument);
      EXPECT_FALSE(gateway->client->Complete(too_long, {.max_tokens = 100000}).ok());
    }
  });
  LoadResult result = RunLoad(*gateway->client, sessions, spec, {.concurrency = 6});
  bad_client.join();
  // Then a burst of long answers, each needing most of the cache: overlapping, they must preempt.
  std::vector<TurnRecord> burst(4);
  std::vector<std::thread> burst_clients;
  for (int i = 0; i < std::ssize(burst); ++i) {
    burst_clients.emplace_back([&, i] {
      TurnRecord& r = burst[i];
      r.session = 1000 + i;
      r.request.messages.push_back(UserMessage{"Tell a long story, number " + std::to_string(i)});
      r.params = {.max_tokens = 120, .seed = 0, .ignore_eos = true};
      absl::StatusOr<ChatResult> out = gateway->client->Complete(r.request, r.params);
      r.status = out.status();
      if (out.ok()) r.tokens = out->token_ids;
    });
  }
  for (std::thread& t : burst_clients) t.join();
  for (TurnRecord& r : burst) {
    EXPECT_TRUE(r.status.ok()) << r.status;
    result.turns.push_back(std::move(r));
  }

  const nlohmann::json report = LoadReportJson(result);
  EXPECT_EQ(report["requests"]["failed"], 0) << report.dump(2);
  EXPECT_GT(report["requests"]["cancelled"].get<int>(), 0);
  EXPECT_GT(report["ttft_ms"]["p50"].get<double>(), 0.0);

  const EngineStats stats = gateway->stack->engine_stats();
  EXPECT_EQ(stats.admissions_out_of_order, 0);
  EXPECT_EQ(stats.max_decode_gap_steps, 1);  // a decoding stream gets a token every step
  EXPECT_GT(stats.preemptions, 0);           // the burst did not fit the cache at once
  EXPECT_LE(stats.step_tokens, stats.steps * 48);
  EXPECT_GT(stats.cached_prompt_tokens, 0);  // later turns start from the earlier ones
  EXPECT_EQ(gateway->UsedBlocksWhenIdle(), 0);

  // Every completed turn got the greedy tokens it gets alone, on a fresh stack that shares
  // nothing, batches nothing and never runs short of cache.
  EmbeddedStackOptions alone_options = Options();
  alone_options.cache_tokens = 8192;
  alone_options.prefix_cache = false;
  std::unique_ptr<InProcessGateway> alone = InProcessGateway::Start(alone_options);
  ASSERT_NE(alone, nullptr);
  int compared = 0;
  for (const TurnRecord& turn : result.turns) {
    if (!turn.status.ok()) continue;
    absl::StatusOr<ChatResult> reference = alone->client->Complete(turn.request, turn.params);
    ASSERT_TRUE(reference.ok()) << reference.status();
    EXPECT_EQ(turn.tokens, reference->token_ids)
        << "session " << turn.session << " turn " << turn.turn;
    ++compared;
  }
  EXPECT_GT(compared, 8);
}

// A new chat about an image another chat already showed skips the encoder and reuses the
// image's KV blocks.
TEST_F(EngineLoadTest, ARepeatedImageHitsThePrefixCache) {
  std::unique_ptr<InProcessGateway> gateway = InProcessGateway::Start(Options());
  ASSERT_NE(gateway, nullptr);
  const LoadSpec spec{.image_sides = {64}};
  const std::string png = LoadImagePng(spec, 0);
  auto chat = [&](const std::string& text) {
    ChatCompletionRequest request;
    request.messages.push_back(
        UserMessage{std::vector<ContentChunk>{ImageChunk{png}, TextChunk{text}}});
    return gateway->client->Complete(request, {.max_tokens = 3, .ignore_eos = true});
  };
  absl::StatusOr<ChatResult> first = chat("What is this?");
  ASSERT_TRUE(first.ok()) << first.status();
  const int64_t before = gateway->stack->engine_stats().cached_prompt_tokens;
  ASSERT_TRUE(chat("Describe the colours.").ok());
  const int64_t hit = gateway->stack->engine_stats().cached_prompt_tokens - before;
  // Everything up to the image's end lies in blocks of 16 shared by both prompts.
  EXPECT_GE(hit, (first->usage.image_tokens + 2) / 16 * 16);
  // And the image itself came from the image-feature cache, not the encoder.
  EXPECT_EQ(gateway->stack->image_cache_stats().hits, 1);
  EXPECT_EQ(gateway->stack->image_cache_stats().entries, 1);
  EXPECT_EQ(gateway->UsedBlocksWhenIdle(), 0);
}

}  // namespace
}  // namespace pixtral
