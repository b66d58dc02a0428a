#include "services/vision_worker/vision_service.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"
#include "services/common/metrics_catalog.h"
#include "services/common/request_timings.h"
#include "services/common/tensor_proto.h"
#include "services/vision_worker/pixel_input.h"

namespace pixtral {

grpc::Status VisionService::Encode(grpc::ServerContext* context, const v1::EncodeRequest* request,
                                   grpc::ServerWriter<v1::FeatureChunk>* writer) {
  const absl::Time handler_start = absl::Now();
  absl::StatusOr<ReceivedImages> received =
      ReadImages(*request, {.num_channels = options_.num_channels,
                            .patch_size = options_.patch_size,
                            .max_image_size = options_.max_image_size,
                            .max_images_per_request = options_.max_images_per_request});
  if (!received.ok()) return ToGrpcStatus(received.status());
  if (received->rgb8_images > 0) {
    metrics::VisionNormalizeLatency().Observe(absl::ToDoubleSeconds(received->normalize_time));
  }
  const std::vector<Image>& images = received->views;
  const int64_t total_patches = received->total_patches;
  int64_t encoded_images = 0;
  // "encode" splits into the cache's hashing, the batcher's queue, its encoder run with the copy
  // to host memory, its split of the batch, and what is left: the cache's copies (one image
  // alone: none).
  absl::Duration hash_time, encoder_time;
  EncodeBatcher::Times batcher_times;
  const absl::Time encode_start = absl::Now();
  // Each image's rows as the cache holds them (shared, not copied into one buffer).
  absl::StatusOr<std::vector<Features>> features = EncodeEachWithCache(
      cache_, images, options_.patch_size,
      [&](absl::Span<const Image> misses) {
        // Only the cache's misses run through the encoder.
        metrics::ImagesEncoded().Increment(static_cast<double>(misses.size()));
        encoded_images += std::ssize(misses);
        const absl::Time encoder_start = absl::Now();
        absl::StatusOr<std::vector<float>> out = batcher_.Encode(misses, &batcher_times);
        encoder_time += absl::Now() - encoder_start;
        return out;
      },
      &hash_time);
  if (!features.ok()) return ToGrpcStatus(features.status());
  const absl::Duration encode_time = absl::Now() - encode_start;
  metrics::VisionLatency().Observe(absl::ToDoubleSeconds(encode_time));
  AddToRequestSummary(*context, absl::StrCat("images=", images.size(), " patches=", total_patches,
                                             " rgb8=", received->rgb8_images));

  absl::Duration serialize_time, write_time;
  for (int i = 0; i < static_cast<int>(images.size()); ++i) {
    const int64_t rows = images[i].height / options_.patch_size;
    const int64_t cols = images[i].width / options_.patch_size;
    const absl::Span<const float> image_rows(*(*features)[i]);
    const int64_t width = std::ssize(image_rows) / (rows * cols);
    for (int64_t first = 0; first < rows * cols; first += options_.rows_per_chunk) {
      if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      const int64_t count = std::min<int64_t>(options_.rows_per_chunk, rows * cols - first);
      v1::FeatureChunk chunk;
      chunk.set_image_index(i);
      chunk.set_first_patch(static_cast<int32_t>(first));
      if (first == 0) {
        chunk.set_grid_rows(static_cast<int32_t>(rows));
        chunk.set_grid_cols(static_cast<int32_t>(cols));
      }
      const absl::Time serialize_start = absl::Now();
      *chunk.mutable_features() = MatrixToTensor(image_rows.subspan(first * width, count * width),
                                                 count, width, options_.feature_dtype);
      const absl::Time write_start = absl::Now();
      serialize_time += write_start - serialize_start;
      if (!writer->Write(chunk)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
      write_time += absl::Now() - write_start;
    }
  }
  RequestTimings timings;
  timings.Add("normalize", received->normalize_time);
  timings.Add("encode", encode_time);
  timings.Add("hash", hash_time);
  timings.Add("encoder", encoder_time);
  timings.Add("encoder_queued", batcher_times.queued);
  timings.Add("encoder_run", batcher_times.encoder);
  timings.Add("encoder_split", batcher_times.split);
  timings.Add("cache_copies", encode_time - hash_time - encoder_time);
  timings.Add("serialize", serialize_time);
  timings.Add("write", write_time);
  timings.Add("images", static_cast<double>(images.size()));
  timings.Add("cache_hits", static_cast<double>(std::ssize(images) - encoded_images));
  timings.Add("handler", absl::Now() - handler_start);
  context->AddTrailingMetadata(kTimingKey, timings.ToHeader());
  return grpc::Status::OK;
}

}  // namespace pixtral
