// The decoder worker: loads the decoder (and the vision-language adapter it applies to received
// encoder features) from a model folder, runs the continuous-batching scheduler and serves
// pixtral.v1.Decoder.
//
//   decoder_worker --model_dir=/models/Pixtral-12B-2409 --backend=cuda --port=9002
//       --cache_tokens=262144 --max_batch_size=64
//
// With --tp=N the decoder is split over N ranks (decoder/tp_decoder.h): on --backend=cuda GPUs
// 0..N-1 of the host with NCCL between them, on --backend=cpu N CPU backends (for tests).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "common/tekken.h"
#include "decoder/pixtral_model.h"
#include "decoder/tp_groups.h"
#include "engine/pixtral_runner.h"
#include "engine/scheduler.h"
#include "glog/logging.h"
#include "kernels/create_backend.h"
#include "services/common/logging.h"
#include "services/common/metrics_catalog.h"
#include "services/common/metrics_gpu_memory.h"
#include "services/common/model_fingerprint.h"
#include "services/common/serve.h"
#include "services/common/server_runner.h"
#include "services/decoder_worker/decoder_service.h"

ABSL_FLAG(std::string, model_dir, "",
          "Model folder (params.json, the safetensors weights, tekken.json for the EOS id).");
ABSL_FLAG(std::string, backend, "cpu", "Compute backend: cpu | cuda.");
ABSL_FLAG(int, tp, 1,
          "Tensor-parallel ranks the decoder is split over (cuda: GPUs 0..tp-1 of this host, "
          "NCCL between them); must divide the model's attention heads.");
ABSL_FLAG(int, cache_tokens, 32768,
          "KV cache capacity in tokens, shared by all running requests; also bounds one "
          "request's prompt plus max_tokens.");
ABSL_FLAG(int, cache_block_size, 16, "Positions per KV cache block.");
ABSL_FLAG(int, max_batch_size, 32, "Sequences running (decoding or prefilling) at once.");
ABSL_FLAG(int, step_token_budget, 2048,
          "Tokens in one model step: every running sequence's decode row plus chunks of the "
          "prompts being prefilled, so a long prompt delays running streams by one chunk at most.");
ABSL_FLAG(int, mixed_step_token_budget, 0,
          "Tokens in a step that has decode rows, if smaller than --step_token_budget (0: the "
          "same): prompts that arrive under load then prefill in chunks small enough to ride "
          "along with the decode rows. Must exceed --max_batch_size.");
ABSL_FLAG(bool, prefix_cache, true,
          "Share full KV blocks across requests with the same prefix (tokens and image features).");
ABSL_FLAG(int, max_waiting, 256,
          "Requests waiting to join the batch; beyond this calls are RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, default_max_tokens, 256, "max_tokens for requests that leave it 0.");

namespace pixtral {
namespace {

// The scheduler's view after a step, for /metrics (runs on the stepping thread).
void RecordStep(const Scheduler::StepStats& step) {
  metrics::WaitingRequests().Set(step.waiting);
  metrics::RunningRequests().Set(step.running);
  if (step.rows > 0) metrics::BatchSize().Observe(step.rows);
  for (double seconds : step.queue_seconds) metrics::QueueTime().Observe(seconds);
  metrics::KvCacheBlocksUsed().Set(step.kv_blocks_used);
}

// Pixtral-12B-2409 was trained with a 128k-token context.
constexpr int kModelContextTokens = 131072;

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  const int cache_tokens = absl::GetFlag(FLAGS_cache_tokens);
  const int block_size = absl::GetFlag(FLAGS_cache_block_size);
  if (cache_tokens <= 0 || block_size <= 0) {
    return absl::InvalidArgumentError("--cache_tokens and --cache_block_size must be positive");
  }
  // The scheduler's flags, before the load: a usage error should not wait for the weights.
  if (absl::GetFlag(FLAGS_step_token_budget) <= 0 || absl::GetFlag(FLAGS_max_batch_size) <= 0) {
    return absl::InvalidArgumentError("--step_token_budget and --max_batch_size must be positive");
  }
  const int mixed_budget = absl::GetFlag(FLAGS_mixed_step_token_budget);
  if (mixed_budget != 0 && mixed_budget <= absl::GetFlag(FLAGS_max_batch_size)) {
    return absl::InvalidArgumentError(
        "--mixed_step_token_budget must be 0 or larger than --max_batch_size");
  }
  // Checked before any device starts: a bad --tp is a usage error, not a failed load.
  PIXTRAL_ASSIGN_OR_RETURN(
      TensorParallelOptions tp,
      TensorParallelGroup(absl::GetFlag(FLAGS_backend), absl::GetFlag(FLAGS_tp)));
  PIXTRAL_ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend,
                           kernels::CreateBackend(absl::GetFlag(FLAGS_backend)));
  if (absl::GetFlag(FLAGS_backend) == "cuda")
    metrics::ExportGpuMemory(metrics::Registry::Default());
  const int num_blocks = (cache_tokens + block_size - 1) / block_size;
  ModelLoadLog load("decoder_worker", dir);
  PIXTRAL_ASSIGN_OR_RETURN(
      std::unique_ptr<PixtralModel> model,
      PixtralModel::Load(dir, backend.get(), {.block_size = block_size, .num_blocks = num_blocks},
                         // Features arrive encoded: the adapter applies them (on rank 0),
                         // the vision transformer stays out.
                         {.vision_encoder = false, .tensor_parallel = std::move(tp)}));
  load.Done();
  if (absl::GetFlag(FLAGS_tp) > 1) {
    LOG(INFO) << "decoder_worker: the decoder is split over " << absl::GetFlag(FLAGS_tp) << " "
              << absl::GetFlag(FLAGS_backend) << " ranks";
  }
  if (!model->config().vision.has_value()) {
    return absl::FailedPreconditionError("the model has no vision encoder");
  }
  PIXTRAL_ASSIGN_OR_RETURN(std::unique_ptr<TekkenTokenizer> tekken,
                           TekkenTokenizer::FromFile(dir + "/tekken.json"));
  PixtralRunner runner(*model);
  Scheduler scheduler(runner, {.eos_id = tekken->eos_id(),
                               .max_batch_size = absl::GetFlag(FLAGS_max_batch_size),
                               .max_waiting = absl::GetFlag(FLAGS_max_waiting),
                               .step_token_budget = absl::GetFlag(FLAGS_step_token_budget),
                               .mixed_step_token_budget = mixed_budget,
                               .prefix_cache = absl::GetFlag(FLAGS_prefix_cache),
                               .on_step = RecordStep});
  metrics::KvCacheBlocksTotal().Set(runner.num_blocks());
  RecordStep({.kv_blocks_used = runner.num_used_blocks()});
  scheduler.Start();
  DecoderService service(scheduler,
                         {.vocab_size = model->config().decoder.vocab_size,
                          .feature_width = model->config().vision->hidden_size,
                          .image_token_id = model->config().vision->image_token_id,
                          .max_context_tokens = std::min(kModelContextTokens, cache_tokens),
                          .default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens)});
  PIXTRAL_ASSIGN_OR_RETURN(const std::string fingerprint, ModelFingerprint(dir));
  LOG(INFO) << "decoder_worker: model fingerprint " << fingerprint;
  absl::Status served =
      ServeUntilTerminated("decoder_worker", {&service},
                           {.health_names = {v1::Decoder::service_full_name()},
                            .response_metadata = {{kModelFingerprintKey, fingerprint}}});
  scheduler.Stop();
  return served;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  return pixtral::ServerMain(argc, argv, "decoder_worker", pixtral::Run);
}
