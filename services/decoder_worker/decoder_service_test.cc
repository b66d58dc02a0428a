// The decoder worker's service on a real gRPC server on loopback, over the scripted model.
#include "services/decoder_worker/decoder_service.h"

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "decoder/generate.h"
#include "engine/testing/fake_runner.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "services/common/server_runner.h"
#include "services/common/tensor_proto.h"

namespace pixtral {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr int kImageToken = kFakeImageToken;
constexpr int kWidth = 4;

v1::GenerateHeader Header(std::vector<int32_t> prompt, int max_tokens, int rows = 0) {
  v1::GenerateHeader header;
  for (int32_t t : prompt) header.add_prompt_token_ids(t);
  header.mutable_sampling()->set_max_tokens(max_tokens);
  header.set_image_feature_rows(rows);
  return header;
}

class DecoderServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scheduler_ = std::make_unique<Scheduler>(model_, Scheduler::Options{.max_batch_size = 8});
    scheduler_->Start();
    service_ = std::make_unique<DecoderService>(*scheduler_,
                                                DecoderServiceOptions{.vocab_size = kFakeVocab,
                                                                      .feature_width = kWidth,
                                                                      .image_token_id = kImageToken,
                                                                      .max_context_tokens = 1 << 22,
                                                                      .default_max_tokens = 5});
    auto server = RunningServer::Start({service_.get()}, {.address = "127.0.0.1:0"});
    ASSERT_TRUE(server.ok());
    server_ = *std::move(server);
    stub_ = v1::Decoder::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                     grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    server_->Shutdown();
    scheduler_->Stop();
  }

  // Runs one call: the header, then `chunks`; returns the status and the streamed outputs.
  grpc::Status Call(const v1::GenerateHeader& header, const std::vector<v1::Tensor>& chunks,
                    std::vector<v1::GenerateOutput>* outputs,
                    std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    auto stream = stub_->Generate(&context);
    v1::GenerateInput input;
    *input.mutable_header() = header;
    stream->Write(input);
    for (const v1::Tensor& chunk : chunks) {
      *input.mutable_image_features() = chunk;
      stream->Write(input);
    }
    stream->WritesDone();
    v1::GenerateOutput output;
    while (stream->Read(&output)) outputs->push_back(output);
    return stream->Finish();
  }

  static std::vector<int32_t> Tokens(const std::vector<v1::GenerateOutput>& outputs) {
    std::vector<int32_t> tokens;
    for (const auto& o : outputs)
      tokens.insert(tokens.end(), o.token_ids().begin(), o.token_ids().end());
    return tokens;
  }

  static std::vector<int32_t> Alone(std::vector<int32_t> prompt, int max_tokens) {
    FakeRunner model;
    GenerationRequest request;
    request.prompt.tokens = std::move(prompt);
    request.max_tokens = max_tokens;
    return (*Generate(model, {request}, {}))[0].tokens;
  }

  // Cache is free once the scheduler has nothing left (then its thread does not touch the model).
  bool CacheFreed() {
    for (int i = 0; i < 500 && scheduler_->HasWork(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return !scheduler_->HasWork() && model_.live.empty() && model_.num_used_blocks() == 0;
  }

  // A features_on_request call: the header, the decoder's FeatureRequest, then the rows of
  // `image_rows[i]` for each image i it asked for (all of them when `send_all`).
  grpc::Status CallOnRequest(const v1::GenerateHeader& header,
                             const std::vector<std::vector<float>>& image_rows,
                             std::vector<v1::GenerateOutput>* outputs, int* first_image,
                             bool send_all = false) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stream = stub_->Generate(&context);
    v1::GenerateInput input;
    *input.mutable_header() = header;
    stream->Write(input);
    v1::GenerateOutput output;
    if (stream->Read(&output)) {
      *first_image = output.has_feature_request() ? output.feature_request().first_image() : -1;
      for (size_t i = send_all ? 0 : std::max(*first_image, 0); i < image_rows.size(); ++i) {
        const int64_t rows = std::ssize(image_rows[i]) / kWidth;
        *input.mutable_image_features() = MatrixToTensor(image_rows[i], rows, kWidth);
        stream->Write(input);
      }
      stream->WritesDone();
      while (stream->Read(&output)) outputs->push_back(output);
    }
    return stream->Finish();
  }

  // `prompt` with one key per image (`rows` each, content `seed`), features on request.
  static v1::GenerateHeader KeyedHeader(std::vector<int32_t> prompt, int max_tokens,
                                        const std::vector<std::pair<int, uint64_t>>& images) {
    int rows = 0;
    for (const auto& [n, seed] : images) rows += n;
    v1::GenerateHeader header = Header(std::move(prompt), max_tokens, rows);
    for (const auto& [n, seed] : images) {
      v1::ImageKey* key = header.add_image_keys();
      key->set_hi(seed);
      key->set_lo(~seed);
      key->set_rows(n);
    }
    header.set_features_on_request(true);
    return header;
  }

  FakeRunner model_{/*block_size=*/4, /*num_blocks=*/1 << 18};  // room for 1M-token streams
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<DecoderService> service_;
  std::unique_ptr<RunningServer> server_;
  std::unique_ptr<v1::Decoder::Stub> stub_;
};

TEST_F(DecoderServiceTest, StreamsTheGreedyCompletion) {
  std::vector<v1::GenerateOutput> outputs;
  grpc::Status status = Call(Header({1, 2}, 6), {}, &outputs);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(Tokens(outputs), ElementsAreArray(Alone({1, 2}, 6)));
  const v1::GenerateOutput& last = outputs.back();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.usage().prompt_tokens(), 2);
  EXPECT_EQ(last.usage().completion_tokens(), 6);
}

TEST_F(DecoderServiceTest, DefaultMaxTokensApplies) {
  std::vector<v1::GenerateOutput> outputs;
  ASSERT_TRUE(Call(Header({3}, 0), {}, &outputs).ok());
  EXPECT_EQ(Tokens(outputs).size(), 5u);
}

TEST_F(DecoderServiceTest, ImageFeaturesArriveInChunks) {
  const std::vector<float> rows(3 * kWidth, 0.5f);
  std::vector<v1::GenerateOutput> outputs;
  grpc::Status status = Call(
      Header({1, kImageToken, kImageToken, 12, kImageToken, 2}, 3, /*rows=*/3),
      {MatrixToTensor(absl::MakeSpan(rows).subspan(0, 2 * kWidth), 2, kWidth),
       MatrixToTensor(absl::MakeSpan(rows).subspan(2 * kWidth), 1, kWidth, v1::Tensor::DTYPE_BF16)},
      &outputs);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Tokens(outputs).size(), 3u);
}

TEST_F(DecoderServiceTest, BadRequestsAreInvalidArgumentAndServingGoesOn) {
  const std::vector<float> row(kWidth, 1.0f);
  v1::Tensor short_bytes = MatrixToTensor(row, 1, kWidth);
  short_bytes.mutable_data()->resize(3);
  v1::Tensor wrong_width = MatrixToTensor(row, 2, kWidth / 2);
  struct Case {
    const char* what;
    v1::GenerateHeader header;
    std::vector<v1::Tensor> chunks;
    const char* message;
  } cases[] = {
      {"empty prompt", Header({}, 3), {}, "empty prompt"},
      {"id out of range", Header({1, kFakeVocab}, 3), {}, "outside the vocabulary"},
      {"negative id", Header({-1}, 3), {}, "outside the vocabulary"},
      {"rows vs [IMG]", Header({1, kImageToken}, 3, 0), {}, "image tokens"},
      {"missing rows", Header({1, kImageToken}, 3, 1), {}, "more image feature rows"},
      {"truncated tensor", Header({1, kImageToken}, 3, 1), {short_bytes}, "bytes"},
      {"wrong width", Header({1, kImageToken, kImageToken}, 3, 2), {wrong_width}, "columns"},
      {"too many rows", Header({1}, 3, 5), {}, "between 0 and the prompt length"},
      {"negative max_tokens", Header({1}, -4), {}, "max_tokens"},
      {"past the context", Header({1}, (1 << 22)), {}, "exceeds the context"},
  };
  for (const Case& c : cases) {
    std::vector<v1::GenerateOutput> outputs;
    grpc::Status status = Call(c.header, c.chunks, &outputs);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.what;
  }
  std::vector<v1::GenerateOutput> outputs;
  EXPECT_TRUE(Call(Header({1, 2}, 2), {}, &outputs).ok());
  EXPECT_TRUE(CacheFreed());
}

// Two images at positions 1-2 and 5-6: the first two blocks of four hold both.
const std::vector<int32_t> kTwoImages = {1,           kImageToken, kImageToken, 3, 4,
                                         kImageToken, kImageToken, 2,           5};

// The two images' features (two rows each) that kTwoImages' [IMG] tokens take.
std::vector<std::vector<float>> TwoImagesFeatures() {
  return {std::vector<float>(2 * kWidth, 0.5f), std::vector<float>(2 * kWidth, 0.25f)};
}

TEST_F(DecoderServiceTest, AKeyedTurnTwoNeedsNoFeatures) {
  const std::vector<std::vector<float>> images = TwoImagesFeatures();
  std::vector<v1::GenerateOutput> first_turn;
  int first_image = -1;
  ASSERT_TRUE(
      CallOnRequest(KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 8}}), images, &first_turn, &first_image)
          .ok());
  EXPECT_EQ(first_image, 0);  // nothing cached yet

  std::vector<int32_t> turn_two = kTwoImages;
  turn_two.insert(turn_two.end(), {6, 7, 8});
  std::vector<v1::GenerateOutput> outputs;
  grpc::Status status =
      CallOnRequest(KeyedHeader(turn_two, 4, {{2, 7}, {2, 8}}), images, &outputs, &first_image);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(first_image, 2);  // both images are cached: no features
  EXPECT_THAT(Tokens(outputs), ElementsAreArray(Alone(turn_two, 4)));
  EXPECT_TRUE(CacheFreed());
}

TEST_F(DecoderServiceTest, AnotherImageKeyIsNotMatched) {
  const std::vector<std::vector<float>> images = TwoImagesFeatures();
  std::vector<v1::GenerateOutput> outputs;
  int first_image = -1;
  ASSERT_TRUE(
      CallOnRequest(KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 8}}), images, &outputs, &first_image)
          .ok());
  outputs.clear();
  // Same first image, another second one: only the second is asked for.
  ASSERT_TRUE(
      CallOnRequest(KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 9}}), images, &outputs, &first_image)
          .ok());
  EXPECT_EQ(first_image, 1);
  EXPECT_TRUE(CacheFreed());
}

TEST_F(DecoderServiceTest, BadKeyedRequestsAreInvalidArgumentAndFreeTheirPins) {
  const std::vector<std::vector<float>> images = TwoImagesFeatures();
  std::vector<v1::GenerateOutput> outputs;
  int first_image = -1;
  ASSERT_TRUE(
      CallOnRequest(KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 8}}), images, &outputs, &first_image)
          .ok());
  struct Case {
    const char* what;
    v1::GenerateHeader header;
    bool send_all;
    const char* message;
  } cases[] = {
      {"rows vs [IMG]", KeyedHeader(kTwoImages, 3, {{2, 7}, {1, 8}}), false, "image tokens"},
      {"a key with no rows", KeyedHeader(kTwoImages, 3, {{4, 7}, {0, 8}}), false, "no rows"},
      {"features of cached images", KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 8}}), true,
       "more than the 0 requested"},
      {"a cached image's features before the asked one's",
       KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 9}}), true, "more than the 2 requested"},
  };
  for (const Case& c : cases) {
    outputs.clear();
    grpc::Status status = CallOnRequest(c.header, images, &outputs, &first_image, c.send_all);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.what;
  }
  v1::GenerateHeader no_keys = Header(kTwoImages, 3, 4);
  no_keys.set_features_on_request(true);
  outputs.clear();
  EXPECT_EQ(Call(no_keys, {}, &outputs).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(CacheFreed());
}

TEST_F(DecoderServiceTest, KeysWithAllFeaturesKeyTheCacheWithoutAsking) {
  const std::vector<float> rows(4 * kWidth, 0.5f);
  v1::GenerateHeader header = KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 8}});
  header.set_features_on_request(false);
  std::vector<v1::GenerateOutput> outputs;
  grpc::Status status = Call(header, {MatrixToTensor(rows, 4, kWidth)}, &outputs);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(outputs.front().has_feature_request());
  EXPECT_THAT(Tokens(outputs), ElementsAreArray(Alone(kTwoImages, 3)));
  // The next turn matches both images by their keys alone.
  outputs.clear();
  int first_image = -1;
  ASSERT_TRUE(
      CallOnRequest(KeyedHeader(kTwoImages, 3, {{2, 7}, {2, 8}}), {}, &outputs, &first_image).ok());
  EXPECT_EQ(first_image, 2);
  EXPECT_TRUE(CacheFreed());
}

TEST_F(DecoderServiceTest, ABf16TensorOfTheWrongSizeIsRejected) {
  const std::vector<float> row(kWidth, 1.0f);
  v1::Tensor bf16 = MatrixToTensor(row, 1, kWidth, v1::Tensor::DTYPE_BF16);
  bf16.mutable_data()->append("xx");
  std::vector<v1::GenerateOutput> outputs;
  grpc::Status status = Call(Header({1, kImageToken}, 3, 1), {bf16}, &outputs);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("bytes"));
}

// The race the pin closes: the decoder says it needs no features, then other requests take every
// free block before the features (none) arrive. The held prefix survives, the tokens are right.
TEST(DecoderServicePinTest, ACachedImageSurvivesPressureBetweenTheAnswerAndAdmission) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/8);
  Scheduler scheduler(model, {.max_batch_size = 8});
  scheduler.Start();
  DecoderService service(scheduler, {.vocab_size = kFakeVocab,
                                     .feature_width = kWidth,
                                     .image_token_id = kImageToken,
                                     .max_context_tokens = 32,
                                     .default_max_tokens = 3});
  auto server = RunningServer::Start({&service}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok());
  auto stub = v1::Decoder::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials()));
  auto generate = [&](const v1::GenerateHeader& header, const std::vector<float>& features,
                      const std::function<void()>& after_answer) {
    grpc::ClientContext context;
    auto stream = stub->Generate(&context);
    v1::GenerateInput input;
    *input.mutable_header() = header;
    stream->Write(input);
    v1::GenerateOutput output;
    std::vector<int32_t> tokens;
    if (header.features_on_request() && stream->Read(&output)) {
      EXPECT_TRUE(output.has_feature_request());
      if (after_answer) after_answer();
      if (output.feature_request().first_image() == 0 && !features.empty()) {
        *input.mutable_image_features() =
            MatrixToTensor(features, std::ssize(features) / kWidth, kWidth);
        stream->Write(input);
      }
    }
    stream->WritesDone();
    while (stream->Read(&output)) {
      tokens.insert(tokens.end(), output.token_ids().begin(), output.token_ids().end());
    }
    EXPECT_TRUE(stream->Finish().ok());
    return tokens;
  };
  const std::vector<float> image(2 * kWidth, 0.5f);
  auto keyed = [](std::vector<int32_t> prompt) {
    v1::GenerateHeader header = Header(prompt, 3, 2);
    v1::ImageKey* key = header.add_image_keys();
    key->set_hi(1);
    key->set_rows(2);
    header.set_features_on_request(true);
    return header;
  };
  const std::vector<int32_t> turn1 = {1, kImageToken, kImageToken, 3, 4, 5, 6, 7, 8};
  generate(keyed(turn1), image, nullptr);
  std::vector<int32_t> turn2 = turn1;
  turn2.insert(turn2.end(), {9, 11, 12});
  const std::vector<int32_t> got = generate(keyed(turn2), image, [&] {
    // Two text streams that need every unpinned block, evicting what is not held.
    for (int32_t t : {2, 5}) {
      generate(Header(std::vector<int32_t>(16, t), 4), {}, nullptr);
    }
  });
  EXPECT_GT(model.cache().num_evictions(), 0);
  FakeRunner fresh;
  GenerationRequest want = TextRequest(turn2, 3);
  EXPECT_THAT(got, ElementsAreArray((*Generate(fresh, {want}, {}))[0].tokens));
  (*server)->Shutdown();
  scheduler.Stop();
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST_F(DecoderServiceTest, ClientCancelFreesTheCache) {
  grpc::ClientContext context;
  auto stream = stub_->Generate(&context);
  v1::GenerateInput input;
  *input.mutable_header() = Header({1}, 1000000);
  stream->Write(input);
  v1::GenerateOutput output;
  ASSERT_TRUE(stream->Read(&output));  // generation is under way
  context.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(CacheFreed());
}

TEST_F(DecoderServiceTest, DeadlineExpiryFreesTheCache) {
  std::vector<v1::GenerateOutput> outputs;
  grpc::Status status = Call(Header({1}, 1000000), {}, &outputs, std::chrono::milliseconds(200));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(CacheFreed());
}

TEST_F(DecoderServiceTest, ConcurrentStreamsGetTheirOwnTokens) {
  constexpr int kClients = 32;
  std::vector<std::vector<v1::GenerateOutput>> outputs(kClients);
  std::vector<grpc::Status> statuses(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      statuses[i] = Call(Header({i % 8, 3}, 4 + i % 7), {}, &outputs[i]);
    });
  }
  for (std::thread& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].error_message();
    EXPECT_THAT(Tokens(outputs[i]), ElementsAreArray(Alone({i % 8, 3}, 4 + i % 7))) << i;
  }
  EXPECT_TRUE(CacheFreed());
}

}  // namespace
}  // namespace pixtral
