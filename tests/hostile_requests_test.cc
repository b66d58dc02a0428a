// Requests a hostile client sends, against real gateways on loopback (embedded mode, a
// random-weight toy model): each is answered with a clear status, promptly, and bounded in the
// CPU and memory it costs. The images are the review's: a progressive JPEG of 499 scans over
// 5600 x 5600 pixels (18 s of CPU when decoded) and GIFs of a few hundred bytes with huge screens.
#include <gif_lib.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "opencv2/imgcodecs.hpp"
#include "tests/gateway_calls.h"
#include "tests/server_process.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr char kGateway[] = "services/gateway/gateway_server";

int AppendGifBytes(GifFileType* gif, const GifByteType* bytes, int length) {
  static_cast<std::string*>(gif->UserData)->append(reinterpret_cast<const char*>(bytes), length);
  return length;
}

// A one-pixel frame on a `width` x `height` logical screen: a few hundred bytes.
std::string GifWithScreen(int width, int height) {
  std::string out;
  int error = 0;
  GifFileType* gif = EGifOpen(&out, AppendGifBytes, &error);
  GifColorType palette[2] = {{0, 0, 0}, {255, 0, 0}};
  ColorMapObject* colors = GifMakeMapObject(2, palette);
  EGifPutScreenDesc(gif, width, height, 1, 0, colors);
  EGifPutImageDesc(gif, 0, 0, 1, 1, false, nullptr);
  GifPixelType pixel = 1;
  EGifPutLine(gif, &pixel, 1);
  EGifCloseFile(gif, &error);
  GifFreeMapObject(colors);
  return out;
}

// A small progressive JPEG whose frame header claims 5600 x 5600 pixels, with scans up to 499.
std::string ManyScanJpeg() {
  cv::Mat image(8, 8, CV_8UC3, cv::Scalar(10, 200, 30));
  std::vector<uint8_t> bytes;
  cv::imencode(".jpg", image, bytes, {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  std::string jpeg(bytes.begin(), bytes.end());
  jpeg.replace(jpeg.find("\xFF\xC2") + 5, 4, "\x15\xE0\x15\xE0");
  int scans = 0;
  for (size_t at = jpeg.find("\xFF\xDA"); at != std::string::npos;
       at = jpeg.find("\xFF\xDA", at + 2)) {
    ++scans;
  }
  std::string more;
  for (; scans < 499; ++scans) more += std::string("\xFF\xDA\x00\x02", 4);
  jpeg.insert(jpeg.find("\xFF\xDA") + 2, more);
  return jpeg;
}

class HostileRequestsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/model";
    ASSERT_TRUE(
        WriteRandomModel(dir, ToyConfig(), /*seed=*/9, "tests/data/generated/tekken.json").ok());
    const std::string model = "--model_dir=" + dir;
    // One completion or tokenization at a time.
    auto narrow = ServerProcess::Start(
        kGateway, {model, "--embedded", "--max_concurrent_requests=1"}, "narrow");
    ASSERT_TRUE(narrow.ok()) << narrow.status();
    narrow_ = narrow->release();
    // Room for two 4000 x 40 images being decoded at once (PeakImageBytes: 19 bytes a pixel and
    // 16 MiB for the result).
    auto tight = ServerProcess::Start(
        kGateway,
        {model, "--embedded",
         absl::StrCat("--max_image_memory_bytes=", 2 * (160000 * 19 + (16 << 20)))},
        "tight");
    ASSERT_TRUE(tight.ok()) << tight.status();
    tight_ = tight->release();
  }

  static void TearDownTestSuite() {
    delete narrow_;
    delete tight_;
  }

  void SetUp() override {
    ASSERT_NE(narrow_, nullptr);
    ASSERT_NE(tight_, nullptr);
  }

  static ServerProcess* narrow_;
  static ServerProcess* tight_;
};

ServerProcess* HostileRequestsTest::narrow_ = nullptr;
ServerProcess* HostileRequestsTest::tight_ = nullptr;

TEST_F(HostileRequestsTest, ManyScanJpegIsRefusedWithoutDecodingIt) {
  auto stub = GatewayStub(tight_->address());
  const absl::Time start = absl::Now();
  const CallResult result = Unary(*stub, GreedyChat("What is this?", {ManyScanJpeg()}));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << result.status.error_message();
  EXPECT_THAT(result.status.error_message(), HasSubstr("499 scans"));
}

TEST_F(HostileRequestsTest, HugeGifScreenBeyondTheMemoryBudgetIsRefused) {
  // The review's 5792 x 5792 screen: 640 MB at the peak, more than this gateway's whole budget.
  const std::string gif = GifWithScreen(5792, 5792);
  ASSERT_LT(gif.size(), 1000u);
  auto stub = GatewayStub(tight_->address());
  const CallResult result = Unary(*stub, GreedyChat("What is this?", {gif}));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << result.status.error_message();
}

TEST_F(HostileRequestsTest, ConcurrentLargeImagesShareTheMemoryBudget) {
  // 4000 x 40: wide enough to weigh on the budget, thin enough to encode in a moment.
  const std::string gif = GifWithScreen(4000, 40);
  std::vector<CallResult> results(8);
  std::vector<std::thread> threads;
  for (CallResult& result : results) {
    threads.emplace_back([&] {
      auto stub = GatewayStub(tight_->address());
      result = Unary(*stub, GreedyChat("What is this?", {gif}, /*max_tokens=*/1));
    });
  }
  for (std::thread& thread : threads) thread.join();
  int ok = 0;
  for (const CallResult& result : results) {
    EXPECT_THAT(result.status.error_code(),
                AnyOf(grpc::StatusCode::OK, grpc::StatusCode::RESOURCE_EXHAUSTED))
        << result.status.error_message();
    ok += result.status.ok();
  }
  EXPECT_GE(ok, 1);
  // Nothing stays reserved: alone, the image goes through.
  auto stub = GatewayStub(tight_->address());
  const CallResult alone = Unary(*stub, GreedyChat("What is this?", {gif}, /*max_tokens=*/1));
  EXPECT_TRUE(alone.status.ok()) << alone.status.error_message();
}

TEST_F(HostileRequestsTest, TokenizeCountsAgainstTheConcurrencyLimit) {
  auto stub = GatewayStub(narrow_->address());
  grpc::ClientContext streaming;
  streaming.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->StreamChatCompletion(&streaming, GreedyChat("Tell a long story.", {}, 20000));
  v1::ChatCompletionChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk)) << reader->Finish().error_message();  // the one slot is taken
  v1::TokenizeRequest request;
  request.set_text("hello");
  {
    grpc::ClientContext context;
    v1::TokenizeResponse response;
    EXPECT_EQ(stub->Tokenize(&context, request, &response).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  streaming.TryCancel();
  while (reader->Read(&chunk)) {
  }
  reader->Finish();
  // The slot comes back once the stream is gone.
  grpc::Status status;
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext context;
    v1::TokenizeResponse response;
    status = stub->Tokenize(&context, request, &response);
    if (status.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(HostileRequestsTest, RepeatedFieldsHaveLimits) {
  auto stub = GatewayStub(tight_->address());
  v1::ChatCompletionRequest request = GreedyChat("Hi", {}, 1);
  for (int i = 0; i < 64; ++i) request.mutable_sampling()->add_stop_token_ids(1000 + i);
  EXPECT_TRUE(Unary(*stub, request).status.ok());
  // The review sent ten million; one past the limit is enough to be refused.
  request.mutable_sampling()->add_stop_token_ids(2000);
  CallResult result = Unary(*stub, request);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(), HasSubstr("stop token ids"));

  v1::ChatCompletionRequest chunks = GreedyChat("Hi", {}, 1);
  for (int i = 0; i < 300; ++i) chunks.mutable_messages(0)->add_content()->set_text("x");
  result = Unary(*stub, chunks);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(), HasSubstr("chunks"));

  v1::ChatCompletionRequest text = GreedyChat(std::string(5 << 20, 'a'), {}, 1);
  result = Unary(*stub, text);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(), HasSubstr("bytes of text"));
}

TEST_F(HostileRequestsTest, GarbageBytesAreAMalformedRequest) {
  grpc::GenericStub stub(
      grpc::CreateChannel(tight_->address(), grpc::InsecureChannelCredentials()));
  // Field 1 (messages), length-delimited, claiming 100 bytes that never come.
  const char garbage[] = {0x0a, 0x64, 0x01, 0x02};
  grpc::Slice slice(garbage, sizeof(garbage));
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/pixtral.v1.Gateway/CreateChatCompletion", {}, &request, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("malformed"));
}

TEST_F(HostileRequestsTest, RequestLargerThanTheMessageLimitIsRefusedClearly) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(256 << 20);
  auto stub = v1::Gateway::NewStub(
      grpc::CreateCustomChannel(tight_->address(), grpc::InsecureChannelCredentials(), arguments));
  const CallResult result = Unary(*stub, GreedyChat(std::string(70 << 20, 'a'), {}, 1));
  // gRPC's own check refuses it before any server code (or interceptor) runs, so the message is
  // gRPC's: "Received message larger than max (N vs. M)", about the request's size only.
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(result.status.error_message(), HasSubstr("larger than max"));
}

}  // namespace
}  // namespace pixtral
