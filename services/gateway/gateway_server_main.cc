// The gateway: serves the public pixtral.v1.Gateway API. Distributed, it sends images to vision
// workers and prompts to decoder workers (several of each, round-robin with failover); with
// --embedded it runs both stages in this process instead.
//
//   gateway_server --model_dir=/models/Pixtral-12B-2409 --port=8000
//       --vision_workers=vision-0:9001,vision-1:9001 --decoder_workers=decoder-0:9002
//   gateway_server --model_dir=/models/Pixtral-12B-2409 --embedded --backend=cuda
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "services/common/serve.h"
#include "services/common/server_runner.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/distributed_stack.h"
#include "services/gateway/gateway_service.h"

ABSL_FLAG(std::string, model_dir, "",
          "Model folder: params.json and tekken.json (and the weights with --embedded).");
ABSL_FLAG(std::vector<std::string>, vision_workers, {},
          "Vision workers, host:port,... (distributed mode).");
ABSL_FLAG(std::vector<std::string>, decoder_workers, {},
          "Decoder workers, host:port,... (distributed mode).");
ABSL_FLAG(bool, embedded, false, "Run the vision encoder and the decoder in this process.");
ABSL_FLAG(std::string, backend, "cpu", "Compute backend with --embedded: cpu | cuda.");
ABSL_FLAG(int, cache_tokens, 32768, "KV cache capacity in tokens with --embedded.");
ABSL_FLAG(int, max_batch_size, 32, "Sequences decoded together with --embedded.");
ABSL_FLAG(int, max_concurrent_requests, 64,
          "Completions running at once; beyond this calls are RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_images_per_request, 8, "Images in one chat at most.");
ABSL_FLAG(int64_t, max_image_bytes, int64_t{20} << 20,
          "Encoded bytes of one image at most (inline, data: URI or downloaded).");
ABSL_FLAG(int64_t, max_image_pixels, int64_t{1} << 25, "Decoded pixels of one image at most.");
ABSL_FLAG(int, max_prompt_tokens, 0,
          "Prompt tokens (images included) at most; 0: the model's context.");
ABSL_FLAG(int, default_max_tokens, 256, "max_tokens for requests that leave it 0.");
ABSL_FLAG(bool, allow_private_addresses, false,
          "Let image URLs reach loopback, private and link-local addresses (trusted setups only).");
ABSL_FLAG(bool, allow_local_files, false,
          "Let image URLs read local files (file://); never on a public gateway.");

namespace pixtral {
namespace {

absl::Status Run() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  const int max_images = absl::GetFlag(FLAGS_max_images_per_request);
  const int64_t max_image_bytes = absl::GetFlag(FLAGS_max_image_bytes);
  ImageFetcher::Options fetch;
  fetch.max_bytes = max_image_bytes;
  fetch.allow_private_addresses = absl::GetFlag(FLAGS_allow_private_addresses);
  fetch.allow_local_files = absl::GetFlag(FLAGS_allow_local_files);
  ImageDecodeLimits decode_limits;
  decode_limits.max_encoded_bytes = max_image_bytes;
  decode_limits.max_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  const FrontEndOptions front_end{.max_images_per_request = max_images,
                                  .max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens),
                                  .default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens),
                                  .fetch = fetch,
                                  .decode_limits = decode_limits};

  std::unique_ptr<EmbeddedStack> embedded;
  std::unique_ptr<DistributedStack> distributed;
  ChatPipeline* pipeline;
  const MistralTokenizer* tokenizer;
  GatewayOptions options{.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests),
                         .request_limits = {.max_image_bytes = max_image_bytes}};
  if (absl::GetFlag(FLAGS_embedded)) {
    PIXTRAL_ASSIGN_OR_RETURN(
        embedded, EmbeddedStack::Create({.model_dir = model_dir,
                                         .backend = absl::GetFlag(FLAGS_backend),
                                         .cache_tokens = absl::GetFlag(FLAGS_cache_tokens),
                                         .max_batch_size = absl::GetFlag(FLAGS_max_batch_size),
                                         .front_end = front_end}));
    pipeline = &embedded->pipeline();
    tokenizer = &embedded->tokenizer();
    options.model_info = embedded->model_info();
  } else {
    PIXTRAL_ASSIGN_OR_RETURN(
        distributed,
        DistributedStack::Create({.model_dir = model_dir,
                                  .vision_workers = absl::GetFlag(FLAGS_vision_workers),
                                  .decoder_workers = absl::GetFlag(FLAGS_decoder_workers),
                                  .front_end = front_end}));
    pipeline = &distributed->pipeline();
    tokenizer = &distributed->tokenizer();
    options.model_info = distributed->model_info();
  }
  GatewayService service(*pipeline, tokenizer->tekken(), options);
  ServeOptions serve{.health_names = {v1::Gateway::service_full_name()}};
  if (distributed != nullptr) serve.ready = [&] { return distributed->WorkersReachable(); };
  return ServeUntilTerminated("gateway", {&service}, serve);
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) { return pixtral::ServerMain(argc, argv, "gateway", pixtral::Run); }
