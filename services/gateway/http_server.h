// The OpenAI-compatible HTTP API beside the gateway's gRPC one, a thin shell over the same
// ChatPipeline and the same limit on running completions:
//
//   POST /v1/chat/completions   unary JSON, or Server-Sent Events with stream: true
//   GET  /v1/models             the one model served
//   POST /tokenize, /detokenize vLLM's shapes
//   GET  /health                200 while serving, 503 once draining
//
// With `tokens` (the gateway's --auth_token_file) every request but /health needs
// `Authorization: Bearer <token>`: 401 with `WWW-Authenticate: Bearer` otherwise, decided before
// the body is read. Errors reach clients as PublicError makes them (no worker addresses or
// library text; the detail is logged under the request id, the client's `X-Request-Id` or a new
// one, which every POST's response carries back).
//
// Built on cpp-httplib (Debian's libcpp-httplib-dev): HTTP/1.1 keep-alive, a thread pool, body
// size limits (413, chunked bodies included), read and write timeouts. A streamed completion runs
// on its own thread and the connection's thread writes its events; when a write fails (the client
// went away) the completion is cancelled, which frees its KV cache, and the connection's thread
// waits for that before it moves on.
//
//   absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(
//       pipeline, tokenizer, service.slots(), {.port = 8080, .model_name = "Pixtral-12B-2409"});
//   ... (*http)->port() ...
//   (*http)->Stop();
#ifndef PIXTRAL_SERVICES_GATEWAY_HTTP_SERVER_H_
#define PIXTRAL_SERVICES_GATEWAY_HTTP_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tekken.h"
#include "services/common/auth.h"
#include "services/gateway/chat_pipeline.h"
#include "services/gateway/completion_slots.h"
#include "services/gateway/openai_json.h"
#include "services/gateway/proto_convert.h"

namespace httplib {
class ContentReader;
class DataSink;
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace pixtral {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;  // 0 picks a free port, reported by port()
  // Request bodies beyond this are 413, and their connection closed (images travel as data URIs).
  int64_t max_body_bytes = 64 << 20;
  // Connections served at once (each keep-alive connection holds a thread while it is open).
  int threads = 96;
  absl::Duration read_timeout = absl::Seconds(30);
  // A client that reads a stream slower than this per write is dropped (and its completion
  // cancelled).
  absl::Duration write_timeout = absl::Seconds(30);
  // An idle keep-alive connection is closed after this (it also delays Stop() by up to this).
  absl::Duration keep_alive_timeout = absl::Seconds(5);
  int keep_alive_max_requests = 1000;
  std::string model_name;  // what /v1/models lists and `model` must match when given
  int max_context_tokens = 0;
  RequestLimits request_limits;
  // When set, bearer tokens are required (see above); null: no authentication.
  std::shared_ptr<const BearerTokens> tokens;
  // HTTPS with this certificate chain and key (PEM; the gateway's --tls_cert and --tls_key),
  // read once at Start: a rotated certificate needs a restart here, unlike on the gRPC port.
  // Empty: plaintext. With `tls_client_ca_file` clients must present a certificate it signed.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
};

class HttpServer {
 public:
  // Binds and starts serving. `pipeline`, `tokenizer` and `slots` must outlive the server.
  // UNAVAILABLE if the address cannot be bound; INVALID_ARGUMENT if the TLS files cannot be used.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(ChatPipeline& pipeline,
                                                           const TekkenTokenizer& tokenizer,
                                                           CompletionSlots& slots,
                                                           const HttpServerOptions& options);
  ~HttpServer();  // Stop()

  int port() const { return port_; }

  // Starts a graceful shutdown: /health answers 503 and new completions are refused with 503,
  // while running ones go on.
  void Drain() { draining_ = true; }

  // Waits until no completion runs here or `deadline` passes; whether none runs.
  bool WaitForCompletions(absl::Time deadline) const;

  // Cancels running completions, stops listening and waits for the connections' threads.
  // Idempotent.
  void Stop();

 private:
  HttpServer(ChatPipeline& pipeline, const TekkenTokenizer& tokenizer, CompletionSlots& slots,
             const HttpServerOptions& options);

  struct Stream;
  // What every event of one stream repeats or depends on.
  struct EventFormat {
    CompletionIdentity identity;
    std::string request_id;
    bool logprobs = false;
    bool include_usage = false;
  };

  // OK when no token is required or the request carries one; else why not (for the 401).
  absl::Status CheckToken(const httplib::Request& request) const;
  // The body into `body` (null: read and dropped): RESOURCE_EXHAUSTED (413) once it outgrows
  // max_body_bytes, by its Content-Length or as its chunks arrive; INVALID_ARGUMENT if it cannot be
  // read. A body up to 4 MiB past the limit is still read to its end (and dropped), so that its
  // 413 is not lost to the reset a close with unread bytes sends; `*unread` tells whether the
  // refusal left bytes on the connection (then it must be closed).
  absl::Status ReadBody(const httplib::Request& request, const httplib::ContentReader& reader,
                        std::string* body, bool* unread) const;
  // The POST handlers: `request_id` names the call in public errors and the log.
  void ChatCompletions(const std::string& request_id, const std::string& body,
                       httplib::Response& response);
  // Writes `stream`'s events as they come (a heartbeat comment while none do), then the finish,
  // the usage and [DONE]. False once the client is gone.
  bool WriteEvents(Stream& stream, const EventFormat& format, httplib::DataSink& sink) const;
  void Tokenize(const std::string& request_id, const std::string& body,
                httplib::Response& response);
  void Detokenize(const std::string& request_id, const std::string& body,
                  httplib::Response& response);
  void Models(httplib::Response& response);
  // Whether `model` (may be empty) names the served model; a 404 in `response` if not.
  bool CheckModel(const std::string& model, httplib::Response& response);

  ChatPipeline& pipeline_;
  const TekkenTokenizer& tokenizer_;
  CompletionSlots& slots_;
  const HttpServerOptions options_;
  const int64_t started_ = 0;  // unix seconds, /v1/models' `created`
  std::unique_ptr<httplib::Server> server_;
  std::thread listener_;
  int port_ = 0;
  std::atomic<int> running_{0};  // completions in progress
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopping_{false};  // running completions are cancelled
  std::atomic<uint64_t> next_id_{0};
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_HTTP_SERVER_H_
