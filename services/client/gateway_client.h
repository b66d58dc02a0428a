// A C++ client of the public Gateway API (proto/gateway.proto), in the library's own types: a
// service builds the same ChatCompletionRequest it would hand to the embedded pipeline, and gets
// a ChatResult back, whole or as deltas while the gateway generates. The release notes' Python
// example, in C++:
//
//   std::unique_ptr<GatewayClient> client = GatewayClient::Create("gateway.internal:8000");
//   ChatCompletionRequest request;
//   request.messages.push_back(UserMessage{std::vector<ContentChunk>{
//       ImageURLChunk{"https://picsum.photos/id/237/200/300"}, TextChunk{"Describe the image."}}});
//   absl::StatusOr<ChatResult> result =
//       client->Complete(request, {.max_tokens = 256, .temperature = 0.35f});
//
//   // The same, printed as it is generated:
//   client->Stream(request, {.max_tokens = 256}, [](const ChatDelta& delta) {
//     std::cout << delta.text << std::flush;
//     return true;  // false cancels the completion
//   });
//
// Over TLS, with a client certificate (gateways with mTLS) and a bearer token (gateways with
// --auth_token_file):
//
//   absl::StatusOr<std::unique_ptr<GatewayClient>> client = GatewayClient::Connect(
//       "gateway.example.com:443",
//       {.tls = {.ca_file = "ca.crt", .cert_file = "me.crt", .key_file = "me.key"},
//        .token = "s3cret"});
//
// Errors keep the gateway's status code and message (INVALID_ARGUMENT for a bad request,
// RESOURCE_EXHAUSTED when the gateway is full, UNAVAILABLE when it cannot be reached...).
#ifndef PIXTRAL_SERVICES_CLIENT_GATEWAY_CLIENT_H_
#define PIXTRAL_SERVICES_CLIENT_GATEWAY_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/chat.h"
#include "grpcpp/channel.h"
#include "proto/gateway.grpc.pb.h"
#include "services/common/tls_credentials.h"
#include "services/gateway/chat_types.h"

namespace pixtral {

struct GatewayClientOptions {
  // Deadline of each call, from its start; infinite: none.
  absl::Duration timeout = absl::InfiniteDuration();
  // Requests carry images inline (ImageChunk), so both directions allow more than gRPC's 4 MB.
  int max_message_bytes = 64 << 20;
  // TLS to the gateway: its CA (or .use_tls for the system's roots), and a client certificate
  // where the gateway requires one. Nothing set: plaintext.
  ChannelTlsFiles tls;
  // Sent as "authorization: Bearer <token>" on every call; empty: none.
  std::string token;
};

class GatewayClient {
 public:
  // A client of the gateway at `address` (host:port), over TLS when options.tls names anything.
  // Connects lazily: an unreachable gateway shows as UNAVAILABLE on the first call.
  // InvalidArgument when the TLS files cannot be used (TLS's own checks, tls_credentials.h).
  static absl::StatusOr<std::unique_ptr<GatewayClient>> Connect(
      const std::string& address, const GatewayClientOptions& options = {});
  // Connect for callers that prefer a client in every case: one whose TLS files are unusable
  // answers every call with that error (it never falls back to plaintext).
  static std::unique_ptr<GatewayClient> Create(const std::string& address,
                                               const GatewayClientOptions& options = {});

  GatewayClient(std::shared_ptr<grpc::Channel> channel, const GatewayClientOptions& options);

  // Thread-safe: calls may run concurrently from several threads.

  // The whole completion (CreateChatCompletion).
  absl::StatusOr<ChatResult> Complete(const ChatCompletionRequest& request,
                                      const ChatParams& params) const;

  // StreamChatCompletion: `on_delta` gets each chunk of text (whole UTF-8 characters) and its
  // token ids as they arrive; returning false cancels the call (CANCELLED). The result is the
  // same as Complete's: the deltas joined, with the finish reason and usage. `timing`, when not
  // null, gets the call's x-pixtral-timing trailer (services/common/request_timings.h; "" when
  // the gateway sent none), for benchmarks.
  absl::StatusOr<ChatResult> Stream(const ChatCompletionRequest& request, const ChatParams& params,
                                    const std::function<bool(const ChatDelta&)>& on_delta,
                                    std::string* timing = nullptr) const;

  // The prompt ids the model would see for `request`, image tokens included.
  absl::StatusOr<std::vector<int>> Tokenize(const ChatCompletionRequest& request) const;
  // Raw tekken ids of `text`, without BOS or EOS.
  absl::StatusOr<std::vector<int>> Tokenize(absl::string_view text) const;

  absl::StatusOr<v1::ModelInfo> GetModelInfo() const;

 private:
  // A context carrying the call deadline.
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  absl::StatusOr<std::vector<int>> Tokenize(const v1::TokenizeRequest& request) const;

  std::unique_ptr<v1::Gateway::Stub> stub_;
  const GatewayClientOptions options_;
  // Why there is no channel (Create with unusable TLS files); OK otherwise.
  absl::Status unusable_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_CLIENT_GATEWAY_CLIENT_H_
