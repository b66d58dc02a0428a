// Small helpers for tests that talk to a running gateway over gRPC with the generated stubs:
// building chat requests and running unary and streaming completions to the end.
#ifndef PIXTRAL_TESTS_GATEWAY_CALLS_H_
#define PIXTRAL_TESTS_GATEWAY_CALLS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "proto/gateway.grpc.pb.h"

namespace pixtral {

// A user message of `text` after `images` (encoded image bytes).
v1::ChatMessage UserMessage(const std::string& text, const std::vector<std::string>& images = {});
v1::ChatMessage AssistantMessage(const std::string& text);

// One user message; greedy sampling of exactly `max_tokens` tokens (EOS ignored), so runs are
// comparable token for token.
v1::ChatCompletionRequest GreedyChat(const std::string& text,
                                     const std::vector<std::string>& images = {},
                                     int max_tokens = 8);

std::unique_ptr<v1::Gateway::Stub> GatewayStub(const std::string& address);

// A finished call: its status and what came back (for a stream, the chunks joined).
struct CallResult {
  grpc::Status status;
  std::string text;
  std::vector<int> token_ids;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
  int chunks = 0;
};

CallResult Unary(v1::Gateway::Stub& stub, const v1::ChatCompletionRequest& request,
                 absl::Duration timeout = absl::Seconds(60));
CallResult Streamed(v1::Gateway::Stub& stub, const v1::ChatCompletionRequest& request,
                    absl::Duration timeout = absl::Seconds(60));

// grpc.health.v1 status of the whole server: true when SERVING.
bool IsServing(const std::string& address);

}  // namespace pixtral

#endif  // PIXTRAL_TESTS_GATEWAY_CALLS_H_
