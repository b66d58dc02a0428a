// The gateway: serves the public pixtral.v1.Gateway API. Distributed, it sends images to vision
// workers and prompts to decoder workers (several of each, round-robin with failover); with
// --embedded it runs both stages in this process instead.
//
//   gateway_server --model_dir=/models/Pixtral-12B-2409 --port=8000
//       --vision_workers=vision-0:9001,vision-1:9001 --decoder_workers=decoder-0:9002
//   gateway_server --model_dir=/models/Pixtral-12B-2409 --embedded --backend=cuda
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "services/common/auth.h"
#include "services/common/serve.h"
#include "services/common/server_runner.h"
#include "services/common/server_security_flags.h"
#include "services/common/tls_credentials.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/distributed_stack.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/http_server.h"

ABSL_FLAG(std::string, model_dir, "",
          "Model folder: params.json and tekken.json (and the weights with --embedded).");
ABSL_FLAG(std::vector<std::string>, vision_workers, {},
          "Vision workers, host:port,... (distributed mode).");
ABSL_FLAG(std::vector<std::string>, decoder_workers, {},
          "Decoder workers, host:port,... (distributed mode).");
ABSL_FLAG(std::string, vision_pixels, "rgb8",
          "How images go to the vision workers: rgb8 (the decoded 8-bit RGB, resized and "
          "normalized by the worker, where smaller than the floats) | f32 (normalized floats, "
          "for workers that predate rgb8).");
ABSL_FLAG(bool, image_keys, true,
          "Send images to the decoder workers as content keys and only the features they ask for "
          "(an image a worker's prefix cache holds is not encoded again); false sends every "
          "feature, for decoder workers that predate image keys.");
ABSL_FLAG(bool, embedded, false, "Run the vision encoder and the decoder in this process.");
ABSL_FLAG(std::string, backend, "cpu", "Compute backend with --embedded: cpu | cuda.");
ABSL_FLAG(int, tp, 1,
          "With --embedded: tensor-parallel ranks of the decoder (cuda: GPUs 0..tp-1, NCCL).");
ABSL_FLAG(int, cache_tokens, 32768, "KV cache capacity in tokens with --embedded.");
ABSL_FLAG(int, max_batch_size, 32, "Sequences decoded together with --embedded.");
ABSL_FLAG(int, max_concurrent_requests, 64,
          "Completions running at once; beyond this calls are RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_images_per_request, 8, "Images in one chat at most.");
ABSL_FLAG(int64_t, max_image_bytes, int64_t{20} << 20,
          "Encoded bytes of one image at most (inline, data: URI or downloaded).");
ABSL_FLAG(int64_t, max_image_pixels, int64_t{1} << 25, "Decoded pixels of one image at most.");
ABSL_FLAG(int64_t, max_image_memory_bytes, int64_t{2} << 30,
          "Memory all images being decoded at once may hold (19 bytes a pixel at the peak); an "
          "image that does not fit beside the others is RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_prompt_tokens, 0,
          "Prompt tokens (images included) at most; 0: the model's context.");
ABSL_FLAG(int, default_max_tokens, 256, "max_tokens for requests that leave it 0.");
ABSL_FLAG(bool, allow_private_addresses, false,
          "Let image URLs reach loopback, private and link-local addresses (trusted setups only).");
ABSL_FLAG(bool, allow_local_files, false,
          "Let image URLs read local files (file://); never on a public gateway.");
ABSL_FLAG(std::string, auth_token_file, "",
          "Bearer tokens, one a line: every call must send \"authorization: Bearer <token>\" "
          "(UNAUTHENTICATED otherwise; on the HTTP port \"Authorization: Bearer <token>\", 401 "
          "otherwise, /health exempt). Empty: no authentication (development).");
ABSL_FLAG(std::string, worker_tls_ca, "",
          "CA (PEM) that signed the workers' certificates: the worker channels use TLS.");
ABSL_FLAG(std::string, worker_tls_cert, "",
          "The gateway's client certificate (PEM) for workers that require mTLS.");
ABSL_FLAG(std::string, worker_tls_key, "", "Private key of --worker_tls_cert (PEM).");

ABSL_DECLARE_FLAG(absl::Duration, shutdown_grace);  // services/common/serve.cc

ABSL_FLAG(int, http_port, -1,
          "Also serve the OpenAI-compatible HTTP API on this port (0: a free port; HTTPS with "
          "--tls_cert and --tls_key, client certificates with --tls_client_ca); -1: off.");
ABSL_FLAG(std::string, http_port_file, "", "Write the bound HTTP port here once serving.");
ABSL_FLAG(int64_t, http_max_body_bytes, int64_t{64} << 20,
          "Largest HTTP request body (images travel inside it as data URIs); beyond it 413.");

namespace pixtral {
namespace {

// Written to a temporary name and renamed, so a reader never sees a partial number.
absl::Status WritePortFile(const std::string& path, int port) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << port << "\n";
    if (!out.good()) return absl::InternalError("cannot write " + temporary);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::InternalError("cannot rename " + temporary + " to " + path);
  }
  return absl::OkStatus();
}

// The HTTP front over the same pipeline and completion limit as the gRPC service, or null when
// --http_port is -1.
absl::StatusOr<std::unique_ptr<HttpServer>> StartHttp(ChatPipeline& pipeline,
                                                      const TekkenTokenizer& tokenizer,
                                                      GatewayService& service,
                                                      const GatewayOptions& options) {
  const int port = absl::GetFlag(FLAGS_http_port);
  if (port < 0) return nullptr;
  // The gRPC port's certificate and client CA serve HTTPS too.
  const ServerTlsFiles tls = ServerTlsFilesFromFlags();
  PIXTRAL_ASSIGN_OR_RETURN(
      std::unique_ptr<HttpServer> http,
      HttpServer::Start(pipeline, tokenizer, service.slots(),
                        {.port = port,
                         .max_body_bytes = absl::GetFlag(FLAGS_http_max_body_bytes),
                         .threads = options.max_concurrent_requests + 32,
                         .model_name = options.model_info.model_name(),
                         .max_context_tokens = options.model_info.max_context_tokens(),
                         .request_limits = options.request_limits,
                         .tokens = options.tokens,
                         .tls_cert_file = tls.cert_file,
                         .tls_key_file = tls.key_file,
                         .tls_client_ca_file = tls.client_ca_file}));
  std::cerr << "gateway: serving " << (tls.tls() ? "HTTPS" : "HTTP") << " on port " << http->port()
            << std::endl;
  if (const std::string path = absl::GetFlag(FLAGS_http_port_file); !path.empty()) {
    PIXTRAL_RETURN_IF_ERROR(WritePortFile(path, http->port()));
  }
  return http;
}

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
  decode_limits.memory_budget =
      std::make_shared<ImageMemoryBudget>(absl::GetFlag(FLAGS_max_image_memory_bytes));
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
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    PIXTRAL_ASSIGN_OR_RETURN(options.tokens, BearerTokens::FromFile(path));
  }
  if (absl::GetFlag(FLAGS_embedded)) {
    PIXTRAL_ASSIGN_OR_RETURN(
        embedded, EmbeddedStack::Create({.model_dir = model_dir,
                                         .backend = absl::GetFlag(FLAGS_backend),
                                         .tp = absl::GetFlag(FLAGS_tp),
                                         .cache_tokens = absl::GetFlag(FLAGS_cache_tokens),
                                         .max_batch_size = absl::GetFlag(FLAGS_max_batch_size),
                                         .front_end = front_end}));
    pipeline = &embedded->pipeline();
    tokenizer = &embedded->tokenizer();
    options.model_info = embedded->model_info();
  } else {
    const std::string pixels = absl::GetFlag(FLAGS_vision_pixels);
    if (pixels != "rgb8" && pixels != "f32") {
      return absl::InvalidArgumentError("--vision_pixels must be rgb8 or f32, got " + pixels);
    }
    ChannelOptions channel;
    PIXTRAL_ASSIGN_OR_RETURN(
        channel.credentials,
        MakeChannelCredentials({.ca_file = absl::GetFlag(FLAGS_worker_tls_ca),
                                .cert_file = absl::GetFlag(FLAGS_worker_tls_cert),
                                .key_file = absl::GetFlag(FLAGS_worker_tls_key)}));
    PIXTRAL_ASSIGN_OR_RETURN(
        distributed,
        DistributedStack::Create(
            {.model_dir = model_dir,
             .vision_workers = absl::GetFlag(FLAGS_vision_workers),
             .decoder_workers = absl::GetFlag(FLAGS_decoder_workers),
             .channel = channel,
             .front_end = front_end,
             .vision_pixels = pixels == "rgb8" ? PixelForm::kRgb8IfSmaller : PixelForm::kF32,
             .image_keys = absl::GetFlag(FLAGS_image_keys)}));
    pipeline = &distributed->pipeline();
    tokenizer = &distributed->tokenizer();
    options.model_info = distributed->model_info();
  }
  GatewayService service(*pipeline, tokenizer->tekken(), options);
  PIXTRAL_ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> http,
                           StartHttp(*pipeline, tokenizer->tekken(), service, options));
  ServeOptions serve{.health_names = {v1::Gateway::service_full_name()}};
  if (distributed != nullptr) serve.ready = [&] { return distributed->WorkersReachable(); };
  // On SIGTERM the HTTP front drains with the gRPC server; its completions run on through the
  // grace period, and what remains is cancelled after it.
  absl::Time signalled = absl::InfiniteFuture();
  serve.on_signal = [&http, &signalled] {
    signalled = absl::Now();
    if (http != nullptr) http->Drain();
  };
  absl::Status served = ServeUntilTerminated("gateway", {&service}, serve);
  if (http != nullptr) {
    http->WaitForCompletions(signalled + absl::GetFlag(FLAGS_shutdown_grace));
    http->Stop();
  }
  return served;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) { return pixtral::ServerMain(argc, argv, "gateway", pixtral::Run); }
