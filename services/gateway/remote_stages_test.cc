// RemoteVisionStage against a real gRPC vision service on loopback whose message limit is small:
// images that would not fit one message go in several calls, and the features come back in the
// images' order.
#include "services/gateway/remote_stages.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/vision_worker.grpc.pb.h"
#include "services/common/server_runner.h"
#include "services/common/tensor_proto.h"

namespace pixtral {
namespace {

constexpr int kPatch = 16;
constexpr int kWidth = 8;

// Returns, for every patch of an image, kWidth copies of that image's first pixel value.
class FakeVisionService final : public v1::VisionEncoder::Service {
 public:
  grpc::Status Encode(grpc::ServerContext*, const v1::EncodeRequest* request,
                      grpc::ServerWriter<v1::FeatureChunk>* writer) override {
    largest_call_ = std::max(largest_call_.load(), request->images_size());
    ++calls_;
    for (int i = 0; i < request->images_size(); ++i) {
      const v1::Tensor& image = request->images(i);
      const int64_t patches = image.shape(1) / kPatch * (image.shape(2) / kPatch);
      float first;
      std::memcpy(&first, image.data().data(), sizeof(float));
      std::vector<float> rows(patches * kWidth, first);
      v1::FeatureChunk chunk;
      chunk.set_image_index(i);
      *chunk.mutable_features() = MatrixToTensor(rows, patches, kWidth);
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  std::atomic<int> largest_call_{0};
  std::atomic<int> calls_{0};
};

PreprocessedImage Image(int side, float value) {
  PreprocessedImage image{.height = side, .width = side, .grid = {side / kPatch, side / kPatch}};
  image.pixels.assign(3 * side * side, value);
  return image;
}

class RemoteVisionStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // 4 MiB: one 512x512 image (3 MiB of float32) fits a message, two do not.
    auto server = RunningServer::Start(
        {&service_}, {.address = "127.0.0.1:0", .max_receive_message_bytes = 4 << 20});
    ASSERT_TRUE(server.ok());
    server_ = *std::move(server);
    auto pool = ReplicaPool::Create({absl::StrCat("127.0.0.1:", server_->port())}, {});
    ASSERT_TRUE(pool.ok());
    pool_ = *std::move(pool);
  }

  FakeVisionService service_;
  std::unique_ptr<RunningServer> server_;
  std::unique_ptr<ReplicaPool> pool_;
};

TEST_F(RemoteVisionStageTest, ImagesThatDoNotFitOneMessageGoInSeveralCalls) {
  RemoteVisionStage stage(*pool_, kWidth, /*model_fingerprint=*/"",
                          /*max_bytes_per_call=*/int64_t{7} << 19);  // 3.5 MiB
  const std::vector<PreprocessedImage> images = {Image(512, 1), Image(512, 2), Image(32, 3),
                                                 Image(512, 4)};
  absl::StatusOr<FeatureRows> features = stage.Encode(images, {});
  ASSERT_TRUE(features.ok()) << features.status();
  EXPECT_FALSE(features->bf16());
  EXPECT_EQ(service_.largest_call_, 2);  // the small image shares a call
  EXPECT_EQ(service_.calls_, 3);
  // 1024 patches each for the large images, 4 for the small one, in order.
  std::vector<float> expected;
  for (const auto& [patches, value] :
       std::vector<std::pair<int, float>>{{1024, 1}, {1024, 2}, {4, 3}, {1024, 4}}) {
    expected.insert(expected.end(), patches * kWidth, value);
  }
  EXPECT_EQ(std::move(*features).ToF32(), expected);
}

TEST_F(RemoteVisionStageTest, OneCallForAllWouldNotFit) {
  // The same images in one call exceed the server's limit: what the split avoids.
  RemoteVisionStage stage(*pool_, kWidth, /*model_fingerprint=*/"",
                          /*max_bytes_per_call=*/int64_t{1} << 30);
  const std::vector<PreprocessedImage> images = {Image(512, 1), Image(512, 2)};
  EXPECT_EQ(stage.Encode(images, {}).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(RemoteVisionStageLimitTest, EveryAllowedRequestFitsTheDefaultMessageLimit) {
  // Eight 1024x1024 images (the gateway's default maximum) in calls of at most two.
  const int64_t image_bytes = int64_t{3} * 1024 * 1024 * sizeof(float);
  EXPECT_GE(kMaxPixelBytesPerEncodeCall, 2 * image_bytes);
  EXPECT_LT(kMaxPixelBytesPerEncodeCall + (1 << 20), int64_t{64} << 20);
}

}  // namespace
}  // namespace pixtral
