#include "services/gateway/http_server.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "services/common/logging.h"
#include "services/common/public_status.h"
#include "services/gateway/openai_json.h"

namespace pixtral {
namespace {

using json = nlohmann::json;

// While a streamed completion produces nothing (images, prefill) the connection gets an SSE
// comment this often: clients and proxies see it is alive, and a client that left is noticed.
constexpr absl::Duration kStreamHeartbeat = absl::Seconds(1);

// JSON as the API writes it: compact, invalid UTF-8 replaced rather than thrown on.
std::string JsonText(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

void Reply(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(JsonText(body), "application/json");
}

// `close`: the connection is closed after the answer, for answers sent while bytes of the
// request are left unread (or when it could not be parsed): they must not be read as the next
// request. cpp-httplib 0.11 keeps a connection open whatever the Connection header says; it
// closes one whose content provider fails, so this provider writes the whole body and then
// reports failure.
void ReplyError(httplib::Response& response, const HttpError& error, bool close = false) {
  if (!close) return Reply(response, error.http_status, error.body);
  response.status = error.http_status;
  response.set_header("Connection", "close");
  auto body = std::make_shared<std::string>(JsonText(error.body));
  response.set_content_provider(body->size(), "application/json",
                                [body](size_t offset, size_t length, httplib::DataSink& sink) {
                                  sink.write(body->data() + offset, length);
                                  return false;
                                });
}

// 401 with the challenge for a bearer token; `close`: the request left bytes unread.
void ReplyUnauthorized(httplib::Response& response, const absl::Status& why, bool close) {
  response.set_header("WWW-Authenticate", "Bearer");
  ReplyError(response, MakeHttpError(401, why.message(), "invalid_api_key"), close);
}

// How far past the body limit a refused body is still read (and dropped) to its end, so that
// the connection can carry its 413 or 401: a close with unread bytes sends a reset, which can
// destroy the answer before the client reads it. Beyond this the body is not read at all.
constexpr uint64_t kBodyDrainBytes = uint64_t{4} << 20;

// `status` as a public client may see it (PublicError logs what it hides under `request_id`).
HttpError PublicHttpError(const absl::Status& status, const std::string& request_id) {
  return HttpErrorOf(PublicError(status, request_id));
}

std::string SseEvent(const json& data) { return absl::StrCat("data: ", JsonText(data), "\n\n"); }

// Counts one completion in `running` for as long as it lives (moved into a stream's worker).
class Running {
 public:
  explicit Running(std::atomic<int>* running) : running_(running) { running_->fetch_add(1); }
  Running(Running&& other) noexcept : running_(other.running_) { other.running_ = nullptr; }
  Running& operator=(Running&&) = delete;
  ~Running() {
    if (running_ != nullptr) running_->fetch_sub(1);
  }

 private:
  std::atomic<int>* running_;
};

}  // namespace

// A streamed completion: the pipeline runs on `worker`, handing deltas to the connection's
// thread, which writes them. `client_gone` travels the other way.
struct HttpServer::Stream {
  absl::Mutex mu;
  std::deque<ChatDelta> deltas ABSL_GUARDED_BY(mu);
  std::optional<absl::StatusOr<ChatResult>> result ABSL_GUARDED_BY(mu);
  std::atomic<bool> client_gone{false};
  std::thread worker;

  bool HasNews() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !deltas.empty() || result.has_value(); }

  void Join() {
    client_gone = true;
    if (worker.joinable()) worker.join();
  }
};

HttpServer::HttpServer(ChatPipeline& pipeline, const TekkenTokenizer& tokenizer,
                       CompletionSlots& slots, const HttpServerOptions& options)
    : pipeline_(pipeline),
      tokenizer_(tokenizer),
      slots_(slots),
      options_(options),
      started_(absl::ToUnixSeconds(absl::Now())) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(ChatPipeline& pipeline,
                                                              const TekkenTokenizer& tokenizer,
                                                              CompletionSlots& slots,
                                                              const HttpServerOptions& options) {
  std::unique_ptr<HttpServer> http(new HttpServer(pipeline, tokenizer, slots, options));
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate and its key");
  }
  if (!options.tls_cert_file.empty()) {
    auto tls = std::make_unique<httplib::SSLServer>(
        options.tls_cert_file.c_str(), options.tls_key_file.c_str(),
        options.tls_client_ca_file.empty() ? nullptr : options.tls_client_ca_file.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot serve HTTPS with ", options.tls_cert_file, " and ", options.tls_key_file,
          options.tls_client_ca_file.empty() ? "" : " and " + options.tls_client_ca_file));
    }
    http->server_ = std::move(tls);
  } else {
    http->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& server = *http->server_;
  HttpServer* self = http.get();
  const int threads = options.threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // cpp-httplib refuses (and reads to its end, however long) a Content-Length over this; ReadBody
  // refuses those itself first, unread.
  const uint64_t body_limit = static_cast<uint64_t>(options.max_body_bytes);
  server.set_payload_max_length(static_cast<size_t>(body_limit + kBodyDrainBytes));
  server.set_read_timeout(
      std::chrono::microseconds(absl::ToInt64Microseconds(options.read_timeout)));
  server.set_write_timeout(
      std::chrono::microseconds(absl::ToInt64Microseconds(options.write_timeout)));
  server.set_keep_alive_timeout(absl::ToInt64Seconds(options.keep_alive_timeout));
  server.set_keep_alive_max_count(options.keep_alive_max_requests);

  using PostHandler =
      void (HttpServer::*)(const std::string&, const std::string&, httplib::Response&);
  const std::pair<const char*, PostHandler> post_routes[] = {
      {"/v1/chat/completions", &HttpServer::ChatCompletions},
      {"/tokenize", &HttpServer::Tokenize},
      {"/detokenize", &HttpServer::Detokenize}};
  absl::flat_hash_set<std::string> post_paths;
  for (const auto& [path, handle] : post_routes) post_paths.insert(path);

  // The token is checked before routing, so a caller without one gets 401 and learns nothing,
  // not even which paths exist. The POST routes check it in their handlers instead, after
  // reading the body (dropped) as far as a refused body is read, so that the 401 is not lost to
  // the reset of a close with unread bytes. /health stays open for probes and load balancers (it
  // tells nothing but whether the server is serving).
  server.set_pre_routing_handler([self, post_paths = std::move(post_paths)](
                                     const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/health" || (req.method == "POST" && post_paths.contains(req.path))) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    const absl::Status allowed = self->CheckToken(req);
    if (allowed.ok()) return httplib::Server::HandlerResponse::Unhandled;
    ReplyUnauthorized(res, allowed, /*close=*/true);
    return httplib::Server::HandlerResponse::Handled;
  });

  // Bodies are read through a content reader so that the size limit also holds for chunked
  // bodies, which cpp-httplib 0.11 would otherwise collect without bound.
  for (const auto& [path, handle] : post_routes) {
    server.Post(path, [self, handle](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& reader) {
      const std::string request_id = RequestIdOrNew(req.get_header_value("X-Request-Id"));
      res.set_header("X-Request-Id", request_id);
      const absl::Status allowed = self->CheckToken(req);
      std::string body;
      bool unread = false;
      const absl::Status read =
          self->ReadBody(req, reader, allowed.ok() ? &body : nullptr, &unread);
      if (!allowed.ok()) return ReplyUnauthorized(res, allowed, unread);
      if (!read.ok()) {
        return ReplyError(res, PublicHttpError(read, request_id), unread);
      }
      (self->*handle)(request_id, body, res);
    });
  }
  server.Get("/v1/models",
             [self](const httplib::Request&, httplib::Response& res) { self->Models(res); });
  server.Get("/health", [self](const httplib::Request&, httplib::Response& res) {
    res.status = self->draining_ || self->stopping_ ? 503 : 200;
  });
  // cpp-httplib's own refusals (unknown path, 413 for a body over the limit, malformed HTTP)
  // have no body: give them OpenAI's error object. Handlers' errors already have one (a body, or
  // ReplyError's closing provider, which sets the Content-Type). After a malformed request or an
  // unread body the connection is closed.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty() || res.has_header("Content-Type")) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        std::string message = absl::StrCat("HTTP ", res.status);
        if (res.status == 400) message = "malformed HTTP request";
        if (res.status == 404) message = absl::StrCat("no route for ", req.method, " ", req.path);
        if (res.status == 405) message = absl::StrCat(req.method, " is not allowed here");
        if (res.status == 413) message = "the request body is larger than the server accepts";
        // A 404 or 405 came after the whole request; the others (400, 413) leave bytes unread.
        const bool close = res.status != 404 && res.status != 405;
        ReplyError(res,
                   MakeHttpError(res.status, message, res.status == 413 ? "request_too_large" : ""),
                   close);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        ReplyError(res, MakeHttpError(500, "internal error", "internal_error"));
      });

  const int port = options.port == 0
                       ? server.bind_to_any_port(options.host)
                       : (server.bind_to_port(options.host, options.port) ? options.port : -1);
  if (port < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", options.host, ":", options.port));
  }
  http->port_ = port;
  http->listener_ = std::thread([self] { self->server_->listen_after_bind(); });
  return http;
}

bool HttpServer::WaitForCompletions(absl::Time deadline) const {
  while (running_.load() > 0) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

void HttpServer::Stop() {
  draining_ = true;
  if (stopping_.exchange(true)) return;
  server_->stop();
  if (listener_.joinable()) listener_.join();
}

bool HttpServer::CheckModel(const std::string& model, httplib::Response& response) {
  if (model.empty() || model == options_.model_name) return true;
  ReplyError(response, MakeHttpError(404,
                                     absl::StrCat("The model `", model,
                                                  "` does not exist; this "
                                                  "server serves `",
                                                  options_.model_name, "`"),
                                     "model_not_found"));
  return false;
}

void HttpServer::Models(httplib::Response& response) {
  json model = {{"id", options_.model_name},
                {"object", "model"},
                {"created", started_},
                {"owned_by", "pixtral-serving"},
                {"max_model_len", options_.max_context_tokens}};
  Reply(response, 200, {{"object", "list"}, {"data", json::array({std::move(model)})}});
}

absl::Status HttpServer::CheckToken(const httplib::Request& request) const {
  if (options_.tokens == nullptr) return absl::OkStatus();
  return options_.tokens->Check(request.get_header_value("Authorization"));
}

absl::Status HttpServer::ReadBody(const httplib::Request& request,
                                  const httplib::ContentReader& reader, std::string* body,
                                  bool* unread) const {
  const uint64_t limit = static_cast<uint64_t>(options_.max_body_bytes);
  const uint64_t drain_limit = limit + kBodyDrainBytes;
  const absl::Status too_large = absl::ResourceExhaustedError(
      absl::StrCat("the request body is larger than the server accepts (", limit, " bytes)"));
  uint64_t length = 0;
  if (request.has_header("Content-Length") &&
      absl::SimpleAtoi(request.get_header_value("Content-Length"), &length) &&
      length > drain_limit) {
    *unread = true;
    return too_large;
  }
  uint64_t received = 0;
  const bool read = reader([&](const char* data, size_t size) {
    received += size;
    if (received <= limit && body != nullptr) body->append(data, size);
    return received <= drain_limit;
  });
  // The reader fails once the receiver stops it (past drain_limit) or the body breaks off.
  *unread = !read;
  if (received > limit) return too_large;
  if (!read) return absl::InvalidArgumentError("the request body could not be read");
  return absl::OkStatus();
}

void HttpServer::ChatCompletions(const std::string& request_id, const std::string& body,
                                 httplib::Response& response) {
  absl::StatusOr<OpenAiChatRequest> request =
      ParseChatCompletionRequest(body, options_.request_limits);
  if (!request.ok()) return ReplyError(response, PublicHttpError(request.status(), request_id));
  if (!CheckModel(request->model, response)) return;
  if (draining_) {
    return ReplyError(response,
                      MakeHttpError(503, "the server is shutting down", "service_unavailable"));
  }
  std::optional<CompletionSlots::Slot> slot = slots_.TryAcquire();
  if (!slot.has_value()) {
    return ReplyError(response, MakeHttpError(429,
                                              absl::StrCat("the gateway is running its maximum of ",
                                                           slots_.max(), " requests; retry later"),
                                              "rate_limit_exceeded"));
  }
  const CompletionIdentity identity{
      .id = absl::StrFormat("chatcmpl-%016x%04x", absl::Uniform<uint64_t>(absl::BitGen()),
                            next_id_.fetch_add(1) & 0xffff),
      .created = absl::ToUnixSeconds(absl::Now()),
      .model = options_.model_name};
  const bool logprobs = request->params.logprobs;
  const bool include_usage = request->include_usage;
  Running running(&running_);

  if (!request->stream) {
    CallContext context{.cancelled = [this] { return stopping_.load(); }, .request_id = request_id};
    absl::StatusOr<ChatResult> result =
        pipeline_.Run(request->chat, request->params, context, nullptr);
    if (!result.ok()) return ReplyError(response, PublicHttpError(result.status(), request_id));
    return Reply(response, 200, ChatCompletionJson(identity, *result, tokenizer_, logprobs));
  }

  auto stream = std::make_shared<Stream>();
  stream->worker = std::thread([this, stream, request = *std::move(request), request_id,
                                slot = *std::move(slot), running = std::move(running)]() mutable {
    CallContext context{
        .cancelled = [this, stream] { return stream->client_gone.load() || stopping_.load(); },
        .request_id = request_id};
    absl::StatusOr<ChatResult> result =
        pipeline_.Run(request.chat, request.params, context, [&stream](const ChatDelta& delta) {
          absl::MutexLock lock(&stream->mu);
          stream->deltas.push_back(delta);
          return !stream->client_gone.load();
        });
    absl::MutexLock lock(&stream->mu);
    stream->result = std::move(result);
    // The slot is released here, when the worker leaves: the completion has freed its cache.
  });

  // Errors before anything was generated (a bad image, a prompt over the context) get a proper
  // HTTP status; once the event stream has begun, an error can only be an event in it.
  std::optional<HttpError> early_error;
  {
    absl::MutexLock lock(&stream->mu);
    stream->mu.Await(absl::Condition(stream.get(), &Stream::HasNews));
    if (stream->deltas.empty() && !stream->result->ok()) {
      early_error = PublicHttpError(stream->result->status(), request_id);
    }
  }
  if (early_error.has_value()) {
    stream->Join();
    return ReplyError(response, *early_error);
  }

  response.set_header("Cache-Control", "no-cache");
  response.set_chunked_content_provider(
      "text/event-stream",
      [this, stream, events = EventFormat{identity, request_id, logprobs, include_usage}](
          size_t, httplib::DataSink& sink) { return WriteEvents(*stream, events, sink); },
      [stream](bool) { stream->Join(); });
}

bool HttpServer::WriteEvents(Stream& stream, const EventFormat& format,
                             httplib::DataSink& sink) const {
  const CompletionIdentity& identity = format.identity;
  auto send = [&](const std::string& event) {
    if (sink.write(event.data(), event.size())) return true;
    stream.client_gone = true;  // the worker's next delta cancels the completion
    return false;
  };
  auto chunk = [&](json delta, json logprobs = nullptr, const char* finish = nullptr) {
    return SseEvent(
        ChunkJson(identity, std::move(delta), std::move(logprobs), finish, format.include_usage));
  };
  if (!send(chunk({{"role", "assistant"}, {"content", ""}}))) return false;
  while (true) {
    std::deque<ChatDelta> deltas;
    bool news;
    {
      absl::MutexLock lock(&stream.mu);
      news =
          stream.mu.AwaitWithTimeout(absl::Condition(&stream, &Stream::HasNews), kStreamHeartbeat);
      deltas.swap(stream.deltas);
    }
    if (!news) {
      if (!send(": keep-alive\n\n")) return false;
      continue;
    }
    if (deltas.empty()) break;  // the result is in
    for (const ChatDelta& delta : deltas) {
      if (delta.text.empty() && !format.logprobs) continue;
      json logprobs = format.logprobs ? LogprobsJson(tokenizer_, delta.token_ids, delta.logprobs)
                                      : json(nullptr);
      if (!send(chunk({{"content", delta.text}}, std::move(logprobs)))) return false;
    }
  }
  stream.worker.join();
  const absl::StatusOr<ChatResult>& result = *stream.result;
  if (!result.ok()) {
    // What vLLM sends: the error object as an event; OpenAI's SDK raises it as an APIError.
    if (!send(SseEvent(PublicHttpError(result.status(), format.request_id).body))) return false;
  } else {
    // Calls are sent whole in one delta once parsed (their text never streamed).
    if (!result->tool_calls.empty() &&
        !send(chunk({{"tool_calls", ToolCallsJson(result->tool_calls, /*with_index=*/true)}}))) {
      return false;
    }
    if (!send(chunk(json::object(), nullptr, FinishReasonName(result->finish)))) return false;
    if (format.include_usage && !send(SseEvent(UsageChunkJson(identity, result->usage)))) {
      return false;
    }
  }
  if (!send("data: [DONE]\n\n")) return false;
  sink.done();
  return true;
}

void HttpServer::Tokenize(const std::string& request_id, const std::string& body,
                          httplib::Response& response) {
  absl::StatusOr<TokenizeHttpRequest> request = ParseTokenizeRequest(body, options_.request_limits);
  if (!request.ok()) return ReplyError(response, PublicHttpError(request.status(), request_id));
  if (!CheckModel(request->model, response)) return;
  // A chat with images costs CPU like a completion's front half: it takes a slot as the gRPC
  // Tokenize does, from the same count.
  std::optional<CompletionSlots::Slot> slot = slots_.TryAcquire();
  if (!slot.has_value()) {
    return ReplyError(response, MakeHttpError(429,
                                              absl::StrCat("the gateway is running its maximum of ",
                                                           slots_.max(), " requests; retry later"),
                                              "rate_limit_exceeded"));
  }
  absl::StatusOr<std::vector<int>> tokens =
      request->is_chat ? pipeline_.Tokenize(request->chat)
                       : tokenizer_.Encode(request->prompt, request->add_special_tokens, false);
  if (!tokens.ok()) return ReplyError(response, PublicHttpError(tokens.status(), request_id));
  Reply(response, 200,
        {{"count", tokens->size()},
         {"max_model_len", options_.max_context_tokens},
         {"tokens", *tokens},
         {"token_strs", nullptr}});
}

void HttpServer::Detokenize(const std::string& request_id, const std::string& body,
                            httplib::Response& response) {
  absl::StatusOr<DetokenizeHttpRequest> request = ParseDetokenizeRequest(body);
  if (!request.ok()) return ReplyError(response, PublicHttpError(request.status(), request_id));
  if (!CheckModel(request->model, response)) return;
  // mistral_common's decode drops control tokens by default.
  absl::StatusOr<std::string> text =
      tokenizer_.Decode(request->tokens, SpecialTokenPolicy::kIgnore);
  if (!text.ok()) return ReplyError(response, PublicHttpError(text.status(), request_id));
  Reply(response, 200, {{"prompt", *text}});
}

}  // namespace pixtral
