// A two-turn image chat through a real gateway stack (DistributedStack) and real vision and
// decoder worker services on loopback gRPC, on the CPU with random toy weights: the second turn
// finds the image in the decoder's prefix cache by its key, so the vision worker is not called
// and no features travel, and its greedy tokens are those of a fresh decoder sent everything.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "bench/served_scenarios.h"
#include "decoder/pixtral_model.h"
#include "engine/pixtral_runner.h"
#include "engine/scheduler.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "proto/decoder_worker.grpc.pb.h"
#include "services/common/model_fingerprint.h"
#include "services/common/request_timings.h"
#include "services/common/server_runner.h"
#include "services/decoder_worker/decoder_service.h"
#include "services/gateway/distributed_stack.h"
#include "services/vision_worker/vision_service.h"
#include "tools/random_model.h"
#include "vision_encoder/encode_batcher.h"

namespace pixtral {
namespace {

// What real workers send with every response, so the gateway accepts them.
std::vector<std::pair<std::string, std::string>> Fingerprint(const std::string& dir) {
  absl::StatusOr<std::string> fingerprint = ModelFingerprint(dir);
  EXPECT_TRUE(fingerprint.ok()) << fingerprint.status();
  return {{kModelFingerprintKey, fingerprint.value_or("")}};
}

// The real vision service, counting the Encode calls and images that reach it.
class CountingVision final : public v1::VisionEncoder::Service {
 public:
  explicit CountingVision(VisionService& inner) : inner_(inner) {}
  grpc::Status Encode(grpc::ServerContext* context, const v1::EncodeRequest* request,
                      grpc::ServerWriter<v1::FeatureChunk>* writer) override {
    ++calls;
    images += request->images_size() + request->inputs_size();
    return inner_.Encode(context, request, writer);
  }
  std::atomic<int> calls{0}, images{0};

 private:
  VisionService& inner_;
};

// A decoder worker: its own model (and so its own KV cache), scheduler and server.
struct DecoderWorker {
  static std::unique_ptr<DecoderWorker> Start(const std::string& dir) {
    auto w = std::make_unique<DecoderWorker>();
    auto model = PixtralModel::Load(dir, w->backend.get());
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok()) return nullptr;
    w->model = *std::move(model);
    w->runner = std::make_unique<PixtralRunner>(*w->model);
    w->scheduler = std::make_unique<Scheduler>(*w->runner, Scheduler::Options{});
    w->scheduler->Start();
    const ModelConfig& config = w->model->config();
    w->service = std::make_unique<DecoderService>(
        *w->scheduler, DecoderServiceOptions{.vocab_size = config.decoder.vocab_size,
                                             .feature_width = config.vision->hidden_size,
                                             .image_token_id = config.vision->image_token_id,
                                             .max_context_tokens = 4096});
    auto server = RunningServer::Start(
        {w->service.get()}, {.address = "127.0.0.1:0", .response_metadata = Fingerprint(dir)});
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    w->server = *std::move(server);
    return w;
  }
  ~DecoderWorker() {
    if (server != nullptr) server->Shutdown();
    if (scheduler != nullptr) scheduler->Stop();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server->port()); }

  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> model;
  std::unique_ptr<PixtralRunner> runner;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<DecoderService> service;
  std::unique_ptr<RunningServer> server;
};

class ServedSkipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(std::getenv("TEST_TMPDIR")) + "/model";
    ASSERT_TRUE(
        WriteRandomModel(dir_, ToyConfig(), /*seed=*/5, "tests/data/generated/tekken.json").ok());
    auto model = PixtralModel::Load(dir_, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    vision_model_ = *std::move(model);
    batcher_ = std::make_unique<EncodeBatcher>(*vision_model_->vision_encoder(), *backend_,
                                               EncodeBatcher::Options{});
    const VisionEncoderConfig& vision = *vision_model_->config().vision;
    vision_service_ = std::make_unique<VisionService>(
        *batcher_,
        VisionServiceOptions{.patch_size = vision.patch_size, .max_image_size = vision.image_size});
    counting_ = std::make_unique<CountingVision>(*vision_service_);
    auto server = RunningServer::Start(
        {counting_.get()}, {.address = "127.0.0.1:0", .response_metadata = Fingerprint(dir_)});
    ASSERT_TRUE(server.ok()) << server.status();
    vision_server_ = *std::move(server);
  }
  void TearDown() override { vision_server_->Shutdown(); }

  std::unique_ptr<DistributedStack> Gateway(const DecoderWorker& decoder, bool image_keys = true) {
    auto stack = DistributedStack::Create(
        {.model_dir = dir_,
         .vision_workers = {"127.0.0.1:" + std::to_string(vision_server_->port())},
         .decoder_workers = {decoder.address()},
         .image_keys = image_keys});
    EXPECT_TRUE(stack.ok()) << stack.status();
    return stack.ok() ? *std::move(stack) : nullptr;
  }

  static ChatParams Greedy() { return {.max_tokens = 6, .temperature = 0, .ignore_eos = true}; }

  std::string dir_;
  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> vision_model_;
  std::unique_ptr<EncodeBatcher> batcher_;
  std::unique_ptr<VisionService> vision_service_;
  std::unique_ptr<CountingVision> counting_;
  std::unique_ptr<RunningServer> vision_server_;
};

TEST_F(ServedSkipTest, TurnTwoSendsNoImageAndGetsTheTokensOfAFreshDecoder) {
  std::unique_ptr<DecoderWorker> decoder = DecoderWorker::Start(dir_);
  ASSERT_NE(decoder, nullptr);
  std::unique_ptr<DistributedStack> gateway = Gateway(*decoder);
  ASSERT_NE(gateway, nullptr);

  ChatCompletionRequest chat;
  chat.messages.push_back(UserMessage{std::vector<ContentChunk>{
      ImageChunk{VariantJpeg("", 64, 1)}, TextChunk{"What is in this picture?"}}});
  absl::StatusOr<ChatResult> turn1 = gateway->pipeline().Run(chat, Greedy(), {}, nullptr);
  ASSERT_TRUE(turn1.ok()) << turn1.status();
  EXPECT_EQ(counting_->calls, 1);

  chat.messages.push_back(AssistantMessage{turn1->text});
  chat.messages.push_back(UserMessage{std::string("And which colours does it have?")});
  RequestTimings timings;
  absl::StatusOr<ChatResult> turn2 =
      gateway->pipeline().Run(chat, Greedy(), {.timings = &timings}, nullptr);
  ASSERT_TRUE(turn2.ok()) << turn2.status();
  EXPECT_EQ(counting_->calls, 1) << "turn 2 called the vision worker";
  const std::map<std::string, double> t = timings.values();
  EXPECT_EQ(t.count("vision_call"), 0u);
  EXPECT_EQ(t.at("images_skipped"), 1);
  EXPECT_GT(decoder->scheduler->stats().cached_prompt_tokens, turn2->usage.image_tokens);

  // The same turn-2 chat on a fresh decoder: every feature is asked for and sent.
  std::unique_ptr<DecoderWorker> fresh = DecoderWorker::Start(dir_);
  ASSERT_NE(fresh, nullptr);
  std::unique_ptr<DistributedStack> fresh_gateway = Gateway(*fresh);
  absl::StatusOr<ChatResult> want = fresh_gateway->pipeline().Run(chat, Greedy(), {}, nullptr);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(counting_->calls, 2);
  EXPECT_EQ(turn2->token_ids, want->token_ids);
  EXPECT_EQ(fresh->scheduler->stats().cached_prompt_tokens, 0);

  // Every KV block is back once the requests are done (pins included).
  EXPECT_EQ(decoder->runner->num_used_blocks(), 0);
  EXPECT_EQ(fresh->runner->num_used_blocks(), 0);
}

TEST_F(ServedSkipTest, AnotherImageInTurnTwoIsEncoded) {
  std::unique_ptr<DecoderWorker> decoder = DecoderWorker::Start(dir_);
  ASSERT_NE(decoder, nullptr);
  std::unique_ptr<DistributedStack> gateway = Gateway(*decoder);
  ASSERT_NE(gateway, nullptr);
  for (int variant : {1, 2}) {
    ChatCompletionRequest chat;
    chat.messages.push_back(UserMessage{std::vector<ContentChunk>{
        ImageChunk{VariantJpeg("", 64, variant)}, TextChunk{"What is in this picture?"}}});
    ASSERT_TRUE(gateway->pipeline().Run(chat, Greedy(), {}, nullptr).ok());
  }
  EXPECT_EQ(counting_->calls, 2);
  EXPECT_EQ(decoder->runner->num_used_blocks(), 0);
}

// Keys that do not fit the prompt's images are INVALID_ARGUMENT at the real decoder worker
// (which knows [IMG_END]), and it keeps serving.
TEST_F(ServedSkipTest, KeysThatDoNotFitTheImagesAreRefused) {
  std::unique_ptr<DecoderWorker> decoder = DecoderWorker::Start(dir_);
  ASSERT_NE(decoder, nullptr);
  std::unique_ptr<DistributedStack> gateway = Gateway(*decoder);
  ASSERT_NE(gateway, nullptr);
  ChatCompletionRequest chat;
  chat.messages.push_back(UserMessage{std::vector<ContentChunk>{
      ImageChunk{VariantJpeg("", 64, 4)}, TextChunk{"What is in this picture?"}}});
  absl::StatusOr<EncodedChat> encoded = gateway->tokenizer().EncodeChatCompletion(chat);
  ASSERT_TRUE(encoded.ok());
  const int rows = encoded->images[0].grid.rows * encoded->images[0].grid.cols;
  auto stub = v1::Decoder::NewStub(
      grpc::CreateChannel(decoder->address(), grpc::InsecureChannelCredentials()));
  auto call = [&](const std::vector<int>& key_rows, bool on_request) {
    v1::GenerateHeader header;
    for (int id : encoded->tokens) header.add_prompt_token_ids(id);
    header.set_image_feature_rows(rows);
    header.mutable_sampling()->set_max_tokens(2);
    for (int n : key_rows) header.add_image_keys()->set_rows(n);
    header.set_features_on_request(on_request);
    grpc::ClientContext context;
    auto stream = stub->Generate(&context);
    v1::GenerateInput input;
    *input.mutable_header() = header;
    stream->Write(input);
    stream->WritesDone();
    v1::GenerateOutput output;
    while (stream->Read(&output)) {
    }
    return stream->Finish();
  };
  for (const std::vector<int>& key_rows : {std::vector<int>{rows / 2, rows - rows / 2},
                                           std::vector<int>{rows + 1}, std::vector<int>{}}) {
    EXPECT_EQ(call(key_rows, /*on_request=*/true).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << key_rows.size();
  }
  // The right key, but no features although they were not asked for: refused, not hung.
  EXPECT_EQ(call({rows}, /*on_request=*/false).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(gateway->pipeline().Run(chat, Greedy(), {}, nullptr).ok());
  EXPECT_EQ(decoder->runner->num_used_blocks(), 0);
}

// A gateway for decoder workers from before image keys sends every feature, as it always did.
TEST_F(ServedSkipTest, WithoutImageKeysEveryTurnSendsItsFeatures) {
  std::unique_ptr<DecoderWorker> decoder = DecoderWorker::Start(dir_);
  ASSERT_NE(decoder, nullptr);
  std::unique_ptr<DistributedStack> old_style = Gateway(*decoder, /*image_keys=*/false);
  ASSERT_NE(old_style, nullptr);
  ChatCompletionRequest chat;
  chat.messages.push_back(UserMessage{std::vector<ContentChunk>{
      ImageChunk{VariantJpeg("", 64, 3)}, TextChunk{"What is in this picture?"}}});
  absl::StatusOr<ChatResult> first = old_style->pipeline().Run(chat, Greedy(), {}, nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<ChatResult> again = old_style->pipeline().Run(chat, Greedy(), {}, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(counting_->calls, 2);
  EXPECT_EQ(again->token_ids, first->token_ids);
  EXPECT_EQ(decoder->runner->num_used_blocks(), 0);
}

}  // namespace
}  // namespace pixtral
