// What crosses the vision -> decoder path for one 1024x1024 image (4096 patches), and how long it
// takes over loopback gRPC in each representation the design could choose:
//   - the encoder output before the adapter, 1024 wide, f32 (what the system sends),
//   - the adapted features, 5120 wide (the decoder's width), bf16 or f32.
// Each representation is served by a VisionEncoder server streaming FeatureChunks of about 2 MB
// (under gRPC's default 4 MB message limit); the client times a whole call, including the
// server's conversion to the wire dtype and the client's conversion back to f32.
//
//   bazel run -c opt //tools:feature_wire_benchmark
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/vision_worker.grpc.pb.h"
#include "services/common/server_runner.h"
#include "services/common/tensor_proto.h"

namespace pixtral {
namespace {

constexpr int64_t kPatches = 4096;  // a 1024x1024 image in 16x16 patches
constexpr int64_t kChunkBytes = 2 << 20;
constexpr int kRepetitions = 10;

struct Representation {
  std::string name;
  int64_t width;
  v1::Tensor::DType dtype;
  int64_t bytes_per_value;
};

// Streams one image's worth of features of one representation, whatever the request holds.
class FeatureServer final : public v1::VisionEncoder::Service {
 public:
  explicit FeatureServer(const Representation& representation)
      : representation_(representation), features_(kPatches * representation.width) {
    for (size_t i = 0; i < features_.size(); ++i) features_[i] = static_cast<float>(i % 977) / 97;
  }

  grpc::Status Encode(grpc::ServerContext*, const v1::EncodeRequest*,
                      grpc::ServerWriter<v1::FeatureChunk>* writer) override {
    const int64_t width = representation_.width;
    const int64_t rows_per_chunk = kChunkBytes / (width * representation_.bytes_per_value);
    const absl::Span<const float> all(features_);
    for (int64_t first = 0; first < kPatches; first += rows_per_chunk) {
      const int64_t rows = std::min(rows_per_chunk, kPatches - first);
      v1::FeatureChunk chunk;
      chunk.set_first_patch(static_cast<int32_t>(first));
      *chunk.mutable_features() = MatrixToTensor(all.subspan(first * width, rows * width), rows,
                                                 width, representation_.dtype);
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

 private:
  const Representation representation_;
  std::vector<float> features_;
};

int Main() {
  const std::vector<Representation> representations = {
      {"encoder output, 1024 wide, f32", 1024, v1::Tensor::DTYPE_F32, 4},
      {"adapted, 5120 wide, bf16", 5120, v1::Tensor::DTYPE_BF16, 2},
      {"adapted, 5120 wide, f32", 5120, v1::Tensor::DTYPE_F32, 4},
  };
  std::cout << absl::StrFormat("%-32s %14s %14s %12s\n", "representation", "payload bytes",
                               "wire bytes", "median ms");
  for (const Representation& representation : representations) {
    FeatureServer service(representation);
    auto server = RunningServer::Start({&service}, {.address = "127.0.0.1:0"});
    if (!server.ok()) {
      std::cerr << server.status() << "\n";
      return 1;
    }
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(64 << 20);
    auto stub = v1::VisionEncoder::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                  grpc::InsecureChannelCredentials(), arguments));
    std::vector<double> milliseconds;
    int64_t wire_bytes = 0;
    for (int repetition = 0; repetition <= kRepetitions; ++repetition) {
      grpc::ClientContext context;
      const absl::Time start = absl::Now();
      auto reader = stub->Encode(&context, v1::EncodeRequest());
      std::vector<float> received;
      received.reserve(kPatches * representation.width);
      v1::FeatureChunk chunk;
      wire_bytes = 0;
      while (reader->Read(&chunk)) {
        wire_bytes += static_cast<int64_t>(chunk.ByteSizeLong());
        if (!AppendMatrix(chunk.features(), representation.width, kPatches, &received).ok()) {
          std::cerr << "bad chunk\n";
          return 1;
        }
      }
      if (!reader->Finish().ok() ||
          static_cast<int64_t>(received.size()) != kPatches * representation.width) {
        std::cerr << "call failed\n";
        return 1;
      }
      // The first call sets up the connection: not counted.
      if (repetition > 0) milliseconds.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    }
    std::sort(milliseconds.begin(), milliseconds.end());
    std::cout << absl::StrFormat("%-32s %14d %14d %12.1f\n", representation.name,
                                 kPatches * representation.width * representation.bytes_per_value,
                                 wire_bytes, milliseconds[milliseconds.size() / 2]);
  }
  return 0;
}

}  // namespace
}  // namespace pixtral

int main() { return pixtral::Main(); }
