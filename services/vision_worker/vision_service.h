// The vision worker's gRPC service: a thin shell over EncodeBatcher. Checks every received
// image (pixel_input.h: normalized floats, or 8-bit RGB it resizes and normalizes), encodes the
// request's images (batched with concurrent requests; an image whose pixels the feature cache holds
// skips the encoder) and streams the encoder output back in chunks of rows.
//
// What crosses the wire is the encoder's output before the vision-language adapter, as f32 (or
// bf16: VisionServiceOptions::feature_dtype): for
// Pixtral-12B that is 1024 values per patch, a fifth of the 5120-wide adapted features, and the
// decoder applies the adapter (see services/README.md for the measured sizes).
#ifndef PIXTRAL_SERVICES_VISION_WORKER_VISION_SERVICE_H_
#define PIXTRAL_SERVICES_VISION_WORKER_VISION_SERVICE_H_

#include "engine/image_feature_cache.h"
#include "proto/vision_worker.grpc.pb.h"
#include "vision_encoder/encode_batcher.h"

namespace pixtral {

struct VisionServiceOptions {
  int num_channels = 3;
  int patch_size = 16;
  // Largest image side in pixels (params.json's vision_encoder.image_size).
  int max_image_size = 1024;
  int max_images_per_request = 16;
  // Rows per FeatureChunk: 512 rows of 1024 f32 are 2 MB, under gRPC's default 4 MB.
  int rows_per_chunk = 512;
  // How the features travel. BF16 halves the bytes (and the gateway relays them as BF16) and
  // changes nothing for a CUDA decoder, whose adapter rounds its input to bf16 for every product
  // of more than one row (kernels/backend.h MatMulInputDType); F32 keeps the CPU reference exact.
  v1::Tensor::DType feature_dtype = v1::Tensor::DTYPE_F32;
};

class VisionService final : public v1::VisionEncoder::Service {
 public:
  // `batcher` and `cache` (null: no cache) must outlive the service. Images found in the cache
  // skip the encoder.
  VisionService(EncodeBatcher& batcher, const VisionServiceOptions& options,
                ImageFeatureCache* cache = nullptr)
      : batcher_(batcher), options_(options), cache_(cache) {}

  grpc::Status Encode(grpc::ServerContext* context, const v1::EncodeRequest* request,
                      grpc::ServerWriter<v1::FeatureChunk>* writer) override;

 private:
  EncodeBatcher& batcher_;
  const VisionServiceOptions options_;
  ImageFeatureCache* cache_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_VISION_WORKER_VISION_SERVICE_H_
