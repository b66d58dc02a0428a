// Drives a gateway with a workload (bench/load_workload.h) over the public gRPC API and measures
// what each user sees: time to first token, the gaps between tokens, end-to-end latency.
//
// Closed loop: `concurrency` users, each running one session after another. Open loop: sessions
// start at Poisson arrivals of `rate` per second, however long the earlier ones take. A session's
// turns run in order, each sending the whole conversation so far.
//
//   LoadResult result = RunLoad(*client, sessions, spec, {.concurrency = 16});
//   std::cout << LoadReportJson(result).dump(2);
#ifndef PIXTRAL_BENCH_LOAD_RUNNER_H_
#define PIXTRAL_BENCH_LOAD_RUNNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/load_workload.h"
#include "nlohmann/json.hpp"
#include "services/client/gateway_client.h"

namespace pixtral {

struct LoadRunOptions {
  int concurrency = 8;  // closed loop, when rate is 0
  double rate = 0;      // sessions per second (open loop)
  uint64_t seed = 1;    // arrival times
};

struct TurnRecord {
  int session = 0;
  int turn = 0;
  ChatCompletionRequest request;
  ChatParams params;
  absl::Status status;
  bool cancelled = false;
  bool has_image = false;
  int prompt_tokens = 0;
  std::vector<int32_t> tokens;  // as streamed
  double start_s = 0;           // from the start of the run
  double ttft_s = 0;            // start to first token
  double e2e_s = 0;             // start to the end of the call
  std::vector<double> itl_s;    // gap before each token after the first
};

struct LoadResult {
  std::vector<TurnRecord> turns;  // by session, then turn
  double wall_s = 0;
};

LoadResult RunLoad(const GatewayClient& client, const std::vector<LoadSession>& sessions,
                   const LoadSpec& spec, const LoadRunOptions& options);

// requests/s, output tokens/s, TTFT / inter-token / end-to-end latency at p50, p90, p99 (ms), and
// counts, as JSON.
nlohmann::json LoadReportJson(const LoadResult& result);

}  // namespace pixtral

#endif  // PIXTRAL_BENCH_LOAD_RUNNER_H_
