// The vision worker's service on loopback gRPC over the pixtral-tiny encoder (CPU backend):
// images sent as 8-bit RGB give exactly the features of the same images sent as the gateway's
// normalized floats, bad sizes are INVALID_ARGUMENT naming the image, and the trailing metadata
// says where the time went and which images the feature cache answered.
#include "services/vision_worker/vision_service.h"

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/image_processing.h"
#include "common/testing/files.h"
#include "common/testing/pixtral_tiny.h"
#include "decoder/pixtral_model.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "proto/vision_worker.grpc.pb.h"
#include "services/common/replica_pool.h"
#include "services/common/request_timings.h"
#include "services/common/server_runner.h"
#include "services/common/tensor_proto.h"
#include "services/gateway/remote_stages.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

constexpr ImageEncoderConfig kConfig{.patch_size = 16, .max_image_size = 1024};

PreprocessedImage Load(const std::string& name, PixelForm form) {
  absl::StatusOr<PreprocessedImage> image =
      PreprocessImage(ReadFileOrFail("tests/data/images/" + name), kConfig, {}, form);
  EXPECT_TRUE(image.ok()) << image.status();
  return image.ok() ? *std::move(image) : PreprocessedImage{};
}

struct Reply {
  grpc::Status status;
  std::vector<float> features;
  std::map<std::string, double> timings;
};

class VisionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = PixtralModel::Load(kPixtralTinyDir, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    batcher_ = std::make_unique<EncodeBatcher>(*model_->vision_encoder(), *backend_,
                                               EncodeBatcher::Options{});
    service_ = std::make_unique<VisionService>(*batcher_, VisionServiceOptions{}, &cache_);
    auto server = RunningServer::Start({service_.get()}, {.address = "127.0.0.1:0"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::VisionEncoder::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }

  Reply Call(const v1::EncodeRequest& request) {
    Reply reply;
    grpc::ClientContext context;
    auto reader = stub_->Encode(&context, request);
    v1::FeatureChunk chunk;
    while (reader->Read(&chunk)) {
      const std::string& data = chunk.features().data();
      const size_t at = reply.features.size();
      reply.features.resize(at + data.size() / sizeof(float));
      std::memcpy(reply.features.data() + at, data.data(), data.size());
    }
    reply.status = reader->Finish();
    auto it = context.GetServerTrailingMetadata().find(kTimingKey);
    if (it != context.GetServerTrailingMetadata().end()) {
      reply.timings = ParseTimingHeader(std::string(it->second.data(), it->second.size()));
    }
    return reply;
  }

  // A request of one 8-bit RGB image with these sizes and `bytes` of data.
  static v1::EncodeRequest Rgb(int height, int width, size_t bytes, int target_height,
                               int target_width) {
    v1::EncodeRequest request;
    v1::RgbImage* rgb = request.add_inputs()->mutable_rgb8();
    rgb->set_height(height);
    rgb->set_width(width);
    rgb->set_data(std::string(bytes, '\x7f'));
    rgb->set_target_height(target_height);
    rgb->set_target_width(target_width);
    return request;
  }

  void ExpectInvalid(const v1::EncodeRequest& request, const std::string& message) {
    const Reply reply = Call(request);
    EXPECT_EQ(reply.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(reply.status.error_message(), HasSubstr(message));
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> model_;
  std::unique_ptr<EncodeBatcher> batcher_;
  ImageFeatureCache cache_{int64_t{1} << 26};
  std::unique_ptr<VisionService> service_;
  std::unique_ptr<RunningServer> server_;
  std::unique_ptr<v1::VisionEncoder::Stub> stub_;
};

TEST_F(VisionServiceTest, Rgb8GivesTheFeaturesOfTheNormalizedFloats) {
  // chelsea.png is resized (451x300 to 464x304), astronaut.png (512x512) is not.
  const std::vector<PreprocessedImage> floats = {Load("chelsea.png", PixelForm::kF32),
                                                 Load("astronaut.png", PixelForm::kF32)};
  const std::vector<PreprocessedImage> bytes = {Load("chelsea.png", PixelForm::kRgb8IfSmaller),
                                                Load("astronaut.png", PixelForm::kRgb8IfSmaller)};
  ASSERT_FALSE(bytes[0].normalized());
  ASSERT_FALSE(bytes[1].normalized());
  const v1::EncodeRequest float_request = ToEncodeRequest(floats);
  const v1::EncodeRequest rgb_request = ToEncodeRequest(bytes);
  EXPECT_EQ(float_request.images_size(), 2);  // the field older workers read
  EXPECT_EQ(rgb_request.inputs_size(), 2);
  EXPECT_LT(rgb_request.ByteSizeLong() * 3, float_request.ByteSizeLong());

  const Reply from_floats = Call(float_request);  // encoded, and kept in the cache
  ASSERT_TRUE(from_floats.status.ok()) << from_floats.status.error_message();
  const Reply from_bytes = Call(rgb_request);  // same pixels: the cache answers both images
  ASSERT_TRUE(from_bytes.status.ok()) << from_bytes.status.error_message();
  EXPECT_EQ(from_bytes.features, from_floats.features);
  EXPECT_EQ(from_floats.timings.at("cache_hits"), 0);
  EXPECT_EQ(from_bytes.timings.at("cache_hits"), 2);
  EXPECT_EQ(from_bytes.timings.at("images"), 2);
  EXPECT_GT(from_bytes.timings.at("normalize"), 0);
  EXPECT_EQ(from_floats.timings.at("normalize"), 0);
  EXPECT_GT(from_floats.timings.at("encode"), 0);
  EXPECT_GE(from_floats.timings.at("handler"), from_floats.timings.at("encode"));
  // "encode" is split: the encoder ran for the floats, the bytes were all cache hits.
  EXPECT_GT(from_floats.timings.at("encoder"), 0);
  EXPECT_EQ(from_bytes.timings.at("encoder"), 0);
  EXPECT_GE(from_floats.timings.at("encode"),
            from_floats.timings.at("encoder") + from_floats.timings.at("hash"));
  EXPECT_GT(from_floats.timings.at("encoder_run"), 0);
  EXPECT_LE(from_floats.timings.at("encoder_run") + from_floats.timings.at("encoder_queued"),
            from_floats.timings.at("encoder"));
  EXPECT_GT(from_bytes.timings.at("hash"), 0);
  EXPECT_GT(from_bytes.timings.at("serialize"), 0);
  EXPECT_GE(from_bytes.timings.at("write"), 0);
}

TEST_F(VisionServiceTest, Bf16FeaturesAreTheRoundedF32OnesAndTheGatewayRelaysThemAsBf16) {
  VisionService bf16_service(*batcher_, {.feature_dtype = v1::Tensor::DTYPE_BF16}, &cache_);
  auto server = RunningServer::Start({&bf16_service}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto f32_pool = ReplicaPool::Create({"127.0.0.1:" + std::to_string(server_->port())}, {});
  auto bf16_pool = ReplicaPool::Create({"127.0.0.1:" + std::to_string((*server)->port())}, {});
  ASSERT_TRUE(f32_pool.ok() && bf16_pool.ok());
  const int width = model_->config().vision->hidden_size;
  RemoteVisionStage f32_stage(**f32_pool, width), bf16_stage(**bf16_pool, width);
  const std::vector<PreprocessedImage> images = {Load("astronaut.png", PixelForm::kF32)};
  absl::StatusOr<FeatureRows> f32_rows = f32_stage.Encode(images, {});
  absl::StatusOr<FeatureRows> bf16_rows = bf16_stage.Encode(images, {});
  ASSERT_TRUE(f32_rows.ok() && bf16_rows.ok());
  EXPECT_FALSE(f32_rows->bf16());
  EXPECT_TRUE(bf16_rows->bf16());  // kept as the bytes that came
  const int64_t rows = f32_rows->size() / width;
  // What the gateway sends on to the decoder: bf16 as the worker's bytes, f32 stays f32.
  const v1::Tensor relayed = bf16_rows->ToTensor(0, rows, width);
  EXPECT_EQ(relayed.dtype(), v1::Tensor::DTYPE_BF16);
  EXPECT_EQ(f32_rows->ToTensor(0, rows, width).dtype(), v1::Tensor::DTYPE_F32);
  std::string worker_bytes;
  {
    auto stub = v1::VisionEncoder::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    auto reader = stub->Encode(&context, ToEncodeRequest(images));
    v1::FeatureChunk chunk;
    while (reader->Read(&chunk)) worker_bytes += chunk.features().data();
    ASSERT_TRUE(reader->Finish().ok());
  }
  EXPECT_EQ(relayed.data(), worker_bytes);
  const std::vector<float> f32 = std::move(*f32_rows).ToF32();
  const std::vector<float> bf16 = std::move(*bf16_rows).ToF32();
  ASSERT_EQ(f32.size(), bf16.size());
  for (size_t i = 0; i < f32.size(); ++i) {
    ASSERT_EQ(bf16[i], Bf16ToFloat(FloatToBf16(f32[i]))) << i;
  }
  (*server)->Shutdown();
}

TEST_F(VisionServiceTest, Rgb8FeaturesEqualTheEncoderOnTheFloats) {
  // Not through the cache: the encoder itself on the gateway's floats.
  const PreprocessedImage floats = Load("chelsea.png", PixelForm::kF32);
  absl::StatusOr<kernels::Tensor> encoded =
      model_->vision_encoder()->Encode({Image{floats.height, floats.width, floats.pixels}});
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  const Reply reply = Call(ToEncodeRequest({Load("chelsea.png", PixelForm::kRgb8IfSmaller)}));
  ASSERT_TRUE(reply.status.ok()) << reply.status.error_message();
  EXPECT_EQ(reply.features, kernels::ToHost(*backend_, *encoded));
  EXPECT_EQ(reply.timings.at("cache_hits"), 0);
}

TEST_F(VisionServiceTest, BadRgbSizesAreInvalidArgument) {
  ExpectInvalid(Rgb(32, 32, 32 * 32 * 3 - 1, 32, 32), "image 0: a 32x32 RGB image needs 3072");
  ExpectInvalid(Rgb(32, 32, 32 * 32 * 3 + 1, 32, 32), "needs 3072 bytes, got 3073");
  ExpectInvalid(Rgb(0, 32, 0, 32, 32), "the RGB image is 32x0");
  ExpectInvalid(Rgb(-5, 32, 0, 32, 32), "the RGB image is 32x-5");
  ExpectInvalid(Rgb(32, 32, 3072, 30, 32), "target H and W must be positive multiples of 16");
  ExpectInvalid(Rgb(32, 32, 3072, 0, 32), "target H and W");
  ExpectInvalid(Rgb(32, 32, 3072, 1040, 32), "up to 1024");
  // More than four source pixels per target pixel: the work a request may ask for is bounded.
  ExpectInvalid(Rgb(65, 64, 65 * 64 * 3, 16, 64), "more than 4 times the pixels");
  // Sides whose product would overflow 32 bits are refused before any byte count is trusted.
  ExpectInvalid(Rgb(1 << 30, 1 << 30, 3, 16, 16), "more than 4 times the pixels");
}

TEST_F(VisionServiceTest, MalformedRequestsAreInvalidArgument) {
  ExpectInvalid(v1::EncodeRequest(), "no images");
  v1::EncodeRequest both = Rgb(16, 16, 768, 16, 16);
  v1::Tensor* tensor = both.add_images();
  tensor->set_dtype(v1::Tensor::DTYPE_F32);
  ExpectInvalid(both, "images or inputs, not both");
  v1::EncodeRequest empty;
  empty.add_inputs();
  ExpectInvalid(empty, "image 0: no pixels");
  v1::EncodeRequest bad_float;
  bad_float.add_inputs()->mutable_normalized()->set_dtype(v1::Tensor::DTYPE_BF16);
  ExpectInvalid(bad_float, "image 0: pixels must be F32");
  v1::EncodeRequest many;
  for (int i = 0; i < 17; ++i) *many.add_inputs() = Rgb(16, 16, 768, 16, 16).inputs(0);
  ExpectInvalid(many, "at most 16 images per request, got 17");
  // The second image is the bad one, and the message says so.
  v1::EncodeRequest second = Rgb(16, 16, 768, 16, 16);
  *second.add_inputs() = Rgb(16, 16, 700, 16, 16).inputs(0);
  ExpectInvalid(second, "image 1: a 16x16 RGB image needs 768 bytes, got 700");
}

TEST_F(VisionServiceTest, ValidSmallRgbImageEncodes) {
  const Reply reply = Call(Rgb(20, 40, 20 * 40 * 3, 32, 48));  // resized up on the worker
  ASSERT_TRUE(reply.status.ok()) << reply.status.error_message();
  EXPECT_EQ(reply.features.size(), size_t{2 * 3 * 64});  // 2x3 patches of the 64-wide encoder
}

}  // namespace
}  // namespace pixtral
