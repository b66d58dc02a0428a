// RemoteDecoderStage's side of features on request, against a scripted decoder service on
// loopback: only the images the decoder asks for are computed and sent, a decoder that does not
// answer as the protocol says is an error, and a vision error reaches the caller as it is.
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/decoder_worker.grpc.pb.h"
#include "services/common/server_runner.h"
#include "services/common/tensor_proto.h"
#include "services/gateway/remote_stages.h"

namespace pixtral {
namespace {

constexpr int kWidth = 4;

// Answers the header with `first_image` (negative: no FeatureRequest), counts the feature rows
// that follow, and generates one token.
class ScriptedDecoder final : public v1::Decoder::Service {
 public:
  grpc::Status Generate(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::GenerateOutput, v1::GenerateInput>* stream) override {
    v1::GenerateInput input;
    if (!stream->Read(&input)) return grpc::Status::CANCELLED;
    header = input.header();
    v1::GenerateOutput output;
    if (first_image >= 0) output.mutable_feature_request()->set_first_image(first_image);
    stream->Write(output);
    while (stream->Read(&input)) {
      if (input.image_features().dtype() == v1::Tensor::DTYPE_BF16) {
        bf16_bytes += input.image_features().data();
      }
      std::vector<float> values;
      if (AppendMatrix(input.image_features(), kWidth, 1 << 20, &values).ok()) {
        rows += std::ssize(values) / kWidth;
        if (!values.empty()) first_value = values[0];
      }
    }
    v1::GenerateOutput last;
    last.add_token_ids(5);
    last.set_finish_reason(v1::FINISH_REASON_LENGTH);
    stream->Write(last);
    return grpc::Status::OK;
  }

  std::atomic<int> first_image{0};
  std::atomic<int64_t> rows{0};
  std::atomic<float> first_value{0};
  v1::GenerateHeader header;
  std::string bf16_bytes;  // of the BF16 feature tensors received, in order
};

class RemoteDecoderStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RunningServer::Start({&service_}, {.address = "127.0.0.1:0"});
    ASSERT_TRUE(server.ok());
    server_ = *std::move(server);
    auto pool = ReplicaPool::Create({absl::StrCat("127.0.0.1:", server_->port())}, {});
    ASSERT_TRUE(pool.ok());
    pool_ = *std::move(pool);
  }

  // Two images of 2 and 3 rows, image i's features all i + 1; `asked` records the calls.
  PromptImages Images(std::vector<int>* asked) {
    PromptImages images;
    images.keys = {{.key = {1, 2}, .rows = 2}, {.key = {3, 4}, .rows = 3}};
    images.features = [asked](int first) -> absl::StatusOr<FeatureRows> {
      asked->push_back(first);
      std::vector<float> rows;
      if (first <= 0) rows.insert(rows.end(), 2 * kWidth, 1.0f);
      if (first <= 1) rows.insert(rows.end(), 3 * kWidth, 2.0f);
      return FeatureRows(std::move(rows));
    };
    return images;
  }

  absl::StatusOr<Completion> Run(const PromptImages& images) {
    RemoteDecoderStage stage(*pool_, kWidth);
    GenerationRequest request;
    request.prompt.tokens = {1, 10, 10, 13, 10, 10, 10, 13, 4};
    request.max_tokens = 1;
    return stage.GenerateWithImages(request, images,
                                    [](absl::Span<const SampledToken>) { return true; }, {});
  }

  ScriptedDecoder service_;
  std::unique_ptr<RunningServer> server_;
  std::unique_ptr<ReplicaPool> pool_;
};

TEST_F(RemoteDecoderStageTest, SendsTheKeysAndOnlyTheFeaturesAskedFor) {
  service_.first_image = 1;
  std::vector<int> asked;
  absl::StatusOr<Completion> completion = Run(Images(&asked));
  ASSERT_TRUE(completion.ok()) << completion.status();
  EXPECT_EQ(completion->tokens, std::vector<int32_t>{5});
  EXPECT_EQ(asked, std::vector<int>{1});
  EXPECT_EQ(service_.rows, 3);
  EXPECT_EQ(service_.first_value, 2.0f);
  ASSERT_EQ(service_.header.image_keys_size(), 2);
  EXPECT_EQ(service_.header.image_keys(1).hi(), 3u);
  EXPECT_EQ(service_.header.image_keys(1).rows(), 3);
  EXPECT_EQ(service_.header.image_feature_rows(), 5);
  EXPECT_TRUE(service_.header.features_on_request());
}

TEST_F(RemoteDecoderStageTest, AllImagesCachedSendsNoFeatures) {
  service_.first_image = 2;
  std::vector<int> asked;
  ASSERT_TRUE(Run(Images(&asked)).ok());
  EXPECT_EQ(asked, std::vector<int>{2});  // the pipeline's lambda answers 2 with nothing
  EXPECT_EQ(service_.rows, 0);
}

TEST_F(RemoteDecoderStageTest, ADecoderThatDoesNotAskIsAnError) {
  for (int bad : {-1, 3}) {
    service_.first_image = bad;
    std::vector<int> asked;
    EXPECT_EQ(Run(Images(&asked)).status().code(), absl::StatusCode::kInternal) << bad;
    EXPECT_TRUE(asked.empty());
  }
}

TEST_F(RemoteDecoderStageTest, AVisionErrorReachesTheCallerAsItIs) {
  PromptImages images;
  images.keys = {{.key = {1, 2}, .rows = 2}, {.key = {3, 4}, .rows = 3}};
  images.features = [](int) -> absl::StatusOr<FeatureRows> {
    return absl::ResourceExhaustedError("vision busy");
  };
  absl::StatusOr<Completion> completion = Run(images);
  EXPECT_EQ(completion.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(completion.status().message(), "vision busy");
}

TEST_F(RemoteDecoderStageTest, Bf16FeaturesReachTheDecoderAsTheBytesTheVisionWorkerSent) {
  // Twenty bf16 bit patterns spread over the 16 bits (a NaN with a payload first), one tensor
  // as a vision worker sends it: the prompt's five rows.
  std::string sent;
  for (int bits = 0; bits < 5 * kWidth; ++bits) {
    const uint16_t value = static_cast<uint16_t>(bits * 3277 + 0x7f81);  // spread over 16 bits
    sent.append(reinterpret_cast<const char*>(&value), 2);
  }
  v1::Tensor tensor;
  tensor.set_dtype(v1::Tensor::DTYPE_BF16);
  tensor.add_shape(5);
  tensor.add_shape(kWidth);
  tensor.set_data(sent);
  PromptImages images;
  images.keys = {{.key = {1, 2}, .rows = 2}, {.key = {3, 4}, .rows = 3}};
  images.features = [&tensor](int) -> absl::StatusOr<FeatureRows> {
    FeatureRows rows;
    if (absl::StatusOr<int64_t> added = rows.Append(tensor, kWidth, 5); !added.ok()) {
      return added.status();
    }
    return rows;
  };
  ASSERT_TRUE(Run(images).ok());
  EXPECT_EQ(service_.rows, 5);
  EXPECT_EQ(service_.bf16_bytes, sent);
}

}  // namespace
}  // namespace pixtral
