#include "services/vision_worker/vision_service.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"
#include "services/common/metrics_catalog.h"
#include "services/common/tensor_proto.h"

namespace pixtral {
namespace {

grpc::Status Invalid(int index, absl::string_view what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("image ", index, ": ", what));
}

}  // namespace

grpc::Status VisionService::Encode(grpc::ServerContext* context, const v1::EncodeRequest* request,
                                   grpc::ServerWriter<v1::FeatureChunk>* writer) {
  if (request->images_size() == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no images");
  }
  if (request->images_size() > options_.max_images_per_request) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("at most ", options_.max_images_per_request,
                                     " images per request, got ", request->images_size()));
  }
  // Views of the request's pixels: every field is checked before one is made.
  std::vector<Image> images;
  int64_t total_patches = 0;
  for (int i = 0; i < request->images_size(); ++i) {
    const v1::Tensor& t = request->images(i);
    if (t.dtype() != v1::Tensor::DTYPE_F32) return Invalid(i, "pixels must be F32");
    if (t.shape_size() != 3 || t.shape(0) != options_.num_channels) {
      return Invalid(i, absl::StrCat("shape must be [", options_.num_channels, ", H, W]"));
    }
    const int64_t height = t.shape(1), width = t.shape(2);
    if (height <= 0 || width <= 0 || height > options_.max_image_size ||
        width > options_.max_image_size || height % options_.patch_size != 0 ||
        width % options_.patch_size != 0) {
      return Invalid(i, absl::StrCat("H and W must be positive multiples of ", options_.patch_size,
                                     " up to ", options_.max_image_size));
    }
    const size_t count = static_cast<size_t>(options_.num_channels * height * width);
    if (t.data().size() != count * sizeof(float)) {
      return Invalid(i, "data size does not match the shape");
    }
    if (reinterpret_cast<uintptr_t>(t.data().data()) % alignof(float) != 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "misaligned pixel buffer");
    }
    total_patches += (height / options_.patch_size) * (width / options_.patch_size);
    images.push_back(
        {height, width,
         absl::Span<const float>(reinterpret_cast<const float*>(t.data().data()), count)});
  }
  const absl::Time encode_start = absl::Now();
  absl::StatusOr<std::vector<float>> features =
      EncodeWithCache(cache_, images, options_.patch_size, [this](absl::Span<const Image> misses) {
        // Only the cache's misses run through the encoder.
        metrics::ImagesEncoded().Increment(static_cast<double>(misses.size()));
        return batcher_.Encode(misses);
      });
  if (!features.ok()) return ToGrpcStatus(features.status());
  metrics::VisionLatency().Observe(absl::ToDoubleSeconds(absl::Now() - encode_start));
  AddToRequestSummary(*context, absl::StrCat("images=", images.size(), " patches=", total_patches));

  const int64_t width = static_cast<int64_t>(features->size()) / total_patches;
  const absl::Span<const float> all(*features);
  int64_t row = 0;
  for (int i = 0; i < static_cast<int>(images.size()); ++i) {
    const int64_t rows = images[i].height / options_.patch_size;
    const int64_t cols = images[i].width / options_.patch_size;
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
      *chunk.mutable_features() =
          MatrixToTensor(all.subspan((row + first) * width, count * width), count, width);
      if (!writer->Write(chunk)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
    }
    row += rows * cols;
  }
  return grpc::Status::OK;
}

}  // namespace pixtral
