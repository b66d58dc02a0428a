// The load benchmark: many users chatting with a gateway at once, over the public gRPC API.
//
//   # against running servers (gateway_server + vision/decoder workers, or --embedded):
//   load_bench --gateway=localhost:8000 --sessions=128 --concurrency=64 --out=load.json
//   # or an in-process gateway over the embedded stack on loopback gRPC, which also reports the
//   # engine's cache hit rates and preemptions:
//   load_bench --model_dir=$M --backend=cuda --rate=4 --sessions=256 --out=load.json
//
// Prints the report (bench/load_runner.h) as JSON, and writes it to --out; bench/plot_load.sh
// turns one or more reports into a PNG.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/load_runner.h"
#include "bench/load_workload.h"
#include "common/status_macros.h"
#include "services/client/gateway_client.h"
#include "services/common/server_runner.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/gateway_service.h"

ABSL_FLAG(std::string, gateway, "", "host:port of a running gateway.");
ABSL_FLAG(
    std::string, model_dir, "",
    "Without --gateway: serve this model folder from an in-process gateway (embedded stack).");
ABSL_FLAG(std::string, backend, "cpu", "With --model_dir: cpu | cuda.");
ABSL_FLAG(int, cache_tokens, 65536, "With --model_dir: KV cache tokens.");
ABSL_FLAG(int, max_batch_size, 64, "With --model_dir: running sequences at most.");
ABSL_FLAG(int, step_token_budget, 2048, "With --model_dir: tokens per engine step.");
ABSL_FLAG(int, mixed_step_token_budget, 0,
          "With --model_dir: tokens in an engine step that has decode rows, if smaller (0: the "
          "same).");
ABSL_FLAG(bool, prefix_cache, true, "With --model_dir: share KV blocks across requests.");
ABSL_FLAG(int, sessions, 32, "Chat sessions to run.");
ABSL_FLAG(int, max_turns, 2, "Turns per session: uniform in [1, max_turns].");
ABSL_FLAG(double, image_fraction, 0.5, "Sessions that start with an image.");
ABSL_FLAG(int, distinct_images, 4, "Images are drawn from this many, so some repeat.");
ABSL_FLAG(std::string, image_sides, "256,512", "Square image sides, comma-separated.");
ABSL_FLAG(std::string, prompt_words, "16,128", "Words per user message: min,max.");
ABSL_FLAG(std::string, output_tokens, "16,64", "Answer tokens per turn (EOS ignored): min,max.");
ABSL_FLAG(double, cancel_fraction, 0, "Turns the client cancels halfway.");
ABSL_FLAG(int, concurrency, 8, "Closed loop: users running sessions back to back.");
ABSL_FLAG(double, rate, 0, "Open loop: sessions per second, Poisson arrivals (overrides).");
ABSL_FLAG(uint64_t, seed, 1, "Workload and arrival seed.");
ABSL_FLAG(std::string, out, "", "Write the JSON report here too.");

namespace pixtral {
namespace {

absl::Status ParsePair(const std::string& flag, int& lo, int& hi) {
  std::vector<std::string> parts = absl::StrSplit(flag, ',');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &lo) || !absl::SimpleAtoi(parts[1], &hi) ||
      lo <= 0 || hi < lo) {
    return absl::InvalidArgumentError("expected min,max with 0 < min <= max, got " + flag);
  }
  return absl::OkStatus();
}

absl::Status Run() {
  LoadSpec spec{.sessions = absl::GetFlag(FLAGS_sessions),
                .max_turns = absl::GetFlag(FLAGS_max_turns),
                .image_fraction = absl::GetFlag(FLAGS_image_fraction),
                .distinct_images = absl::GetFlag(FLAGS_distinct_images),
                .cancel_fraction = absl::GetFlag(FLAGS_cancel_fraction),
                .seed = absl::GetFlag(FLAGS_seed)};
  spec.image_sides.clear();
  for (absl::string_view side : absl::StrSplit(absl::GetFlag(FLAGS_image_sides), ',')) {
    int v;
    if (!absl::SimpleAtoi(side, &v) || v <= 0) return absl::InvalidArgumentError("--image_sides");
    spec.image_sides.push_back(v);
  }
  PIXTRAL_RETURN_IF_ERROR(
      ParsePair(absl::GetFlag(FLAGS_prompt_words), spec.min_prompt_words, spec.max_prompt_words));
  PIXTRAL_RETURN_IF_ERROR(ParsePair(absl::GetFlag(FLAGS_output_tokens), spec.min_output_tokens,
                                    spec.max_output_tokens));

  std::string address = absl::GetFlag(FLAGS_gateway);
  std::unique_ptr<EmbeddedStack> stack;
  std::unique_ptr<GatewayService> service;
  std::unique_ptr<RunningServer> server;
  if (address.empty()) {
    if (absl::GetFlag(FLAGS_model_dir).empty()) {
      return absl::InvalidArgumentError("pass --gateway or --model_dir");
    }
    PIXTRAL_ASSIGN_OR_RETURN(
        stack, EmbeddedStack::Create(
                   {.model_dir = absl::GetFlag(FLAGS_model_dir),
                    .backend = absl::GetFlag(FLAGS_backend),
                    .cache_tokens = absl::GetFlag(FLAGS_cache_tokens),
                    .max_batch_size = absl::GetFlag(FLAGS_max_batch_size),
                    .step_token_budget = absl::GetFlag(FLAGS_step_token_budget),
                    .mixed_step_token_budget = absl::GetFlag(FLAGS_mixed_step_token_budget),
                    .prefix_cache = absl::GetFlag(FLAGS_prefix_cache)}));
    service = std::make_unique<GatewayService>(
        stack->pipeline(), stack->tokenizer().tekken(),
        GatewayOptions{.max_concurrent_requests = 1 << 20, .model_info = stack->model_info()});
    PIXTRAL_ASSIGN_OR_RETURN(server,
                             RunningServer::Start({service.get()}, {.address = "127.0.0.1:0"}));
    address = "127.0.0.1:" + std::to_string(server->port());
  }
  std::unique_ptr<GatewayClient> client = GatewayClient::Create(address);
  const std::vector<LoadSession> sessions = MakeSessions(spec);
  const LoadResult result = RunLoad(*client, sessions, spec,
                                    {.concurrency = absl::GetFlag(FLAGS_concurrency),
                                     .rate = absl::GetFlag(FLAGS_rate),
                                     .seed = absl::GetFlag(FLAGS_seed)});
  nlohmann::json report = LoadReportJson(result);
  report["workload"] = {{"sessions", spec.sessions},
                        {"max_turns", spec.max_turns},
                        {"image_fraction", spec.image_fraction},
                        {"distinct_images", spec.distinct_images},
                        {"concurrency", absl::GetFlag(FLAGS_concurrency)},
                        {"rate", absl::GetFlag(FLAGS_rate)}};
  if (stack != nullptr) {
    const EngineStats s = stack->engine_stats();
    report["engine"] = {
        {"steps", s.steps},
        {"mean_step_tokens", s.steps > 0 ? double(s.step_tokens) / s.steps : 0.0},
        {"prefix_cache_hit_rate",
         s.prompt_tokens > 0 ? double(s.cached_prompt_tokens) / s.prompt_tokens : 0.0},
        {"preemptions", s.preemptions},
        {"max_decode_gap_steps", s.max_decode_gap_steps},
        {"kv_blocks_in_use_after", stack->runner().num_used_blocks()}};
  }
  std::cout << report.dump(2) << std::endl;
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    std::ofstream(out) << report.dump(2) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = pixtral::Run();
  if (!status.ok()) {
    std::cerr << "load_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
