// The vision-encoder worker: loads only the vision encoder's weights from a model folder and
// serves pixtral.v1.VisionEncoder, batching concurrent requests.
//
//   vision_worker --model_dir=/models/Pixtral-12B-2409 --backend=cuda --port=9001
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "common/model_folder.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "kernels/create_backend.h"
#include "kernels/weights.h"
#include "services/common/logging.h"
#include "services/common/metrics_gpu_memory.h"
#include "services/common/model_fingerprint.h"
#include "services/common/serve.h"
#include "services/common/server_runner.h"
#include "services/vision_worker/vision_service.h"
#include "vision_encoder/encode_batcher.h"
#include "vision_encoder/vision_encoder.h"

ABSL_FLAG(std::string, model_dir, "", "Model folder (params.json and the safetensors weights).");
ABSL_FLAG(std::string, backend, "cpu", "Compute backend: cpu | cuda.");
ABSL_FLAG(int, max_images_per_request, 16, "Images in one Encode call at most.");
ABSL_FLAG(int64_t, image_cache_bytes, int64_t{1} << 30,
          "Host memory for encoder outputs kept by image content (a 1024x1024 image takes 16 MiB); "
          "an image sent again skips the encoder. 0 turns the cache off.");
ABSL_FLAG(std::string, feature_dtype, "auto",
          "How features go to the gateway: f32 | bf16 | auto (bf16 with --backend=cuda, whose "
          "decoder reads the adapter's input as bf16 anyway; f32 otherwise).");
ABSL_FLAG(int64_t, max_batch_patches, 16384,
          "Patches encoded together at most when batching concurrent requests.");

namespace pixtral {
namespace {

absl::Status Run() {
  ModelLoadLog load("vision_worker", absl::GetFlag(FLAGS_model_dir));
  PIXTRAL_ASSIGN_OR_RETURN(ModelFolder opened, OpenModelFolder(absl::GetFlag(FLAGS_model_dir)));
  auto folder = std::make_shared<ModelFolder>(std::move(opened));
  if (!folder->config.vision.has_value()) {
    return absl::FailedPreconditionError("the model has no vision encoder");
  }
  const VisionEncoderConfig& vision = *folder->config.vision;
  PIXTRAL_ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend,
                           kernels::CreateBackend(absl::GetFlag(FLAGS_backend)));
  if (absl::GetFlag(FLAGS_backend) == "cuda")
    metrics::ExportGpuMemory(metrics::Registry::Default());
  kernels::WeightLoader loader(*backend, folder->weights, folder);
  PIXTRAL_ASSIGN_OR_RETURN(
      std::unique_ptr<VisionEncoder> encoder,
      VisionEncoder::Create(backend.get(), vision, folder->config.decoder.dim, loader));
  load.Done();
  EncodeBatcher batcher(*encoder, *backend,
                        {.max_patches_per_batch = absl::GetFlag(FLAGS_max_batch_patches)});
  const std::string dtype = absl::GetFlag(FLAGS_feature_dtype);
  if (dtype != "auto" && dtype != "f32" && dtype != "bf16") {
    return absl::InvalidArgumentError("--feature_dtype must be f32, bf16 or auto");
  }
  const bool bf16 = dtype == "bf16" || (dtype == "auto" && absl::GetFlag(FLAGS_backend) == "cuda");
  const int64_t cache_bytes = absl::GetFlag(FLAGS_image_cache_bytes);
  std::unique_ptr<ImageFeatureCache> cache;
  if (cache_bytes > 0) cache = std::make_unique<ImageFeatureCache>(cache_bytes);
  VisionService service(batcher,
                        {.num_channels = vision.num_channels,
                         .patch_size = vision.patch_size,
                         .max_image_size = vision.image_size,
                         .max_images_per_request = absl::GetFlag(FLAGS_max_images_per_request),
                         .feature_dtype = bf16 ? v1::Tensor::DTYPE_BF16 : v1::Tensor::DTYPE_F32},
                        cache.get());
  PIXTRAL_ASSIGN_OR_RETURN(const std::string fingerprint,
                           ModelFingerprint(absl::GetFlag(FLAGS_model_dir)));
  LOG(INFO) << "vision_worker: model fingerprint " << fingerprint;
  return ServeUntilTerminated("vision_worker", {&service},
                              {.health_names = {v1::VisionEncoder::service_full_name()},
                               .response_metadata = {{kModelFingerprintKey, fingerprint}}});
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  return pixtral::ServerMain(argc, argv, "vision_worker", pixtral::Run);
}
