// How every Pixtral server logs: glog lines on stderr (time, level, thread, file:line), and one
// summary line per RPC carrying a request id, the method, the status code, the peer and the
// time taken, plus whatever the service adds (tokens, time to first token).
//
// The request id comes from the caller's `x-request-id` metadata when it is a sane token
// (letters, digits, `-_.:`, at most 128 bytes), or is made here; it is returned to the caller in
// the response's initial metadata (`x-request-id`), and the gateway passes it on to the workers,
// so one id follows a request through every log.
//
//   InitServerLogging("gateway");                               // in main, before any log
//   builder.experimental().SetInterceptorCreators({NewRequestLogInterceptorFactory(), ...});
//   ...
//   grpc::Status Service::Method(grpc::ServerContext* context, ...) {
//     const std::string id = RequestIdOf(*context);             // for the workers' metadata
//     AddToRequestSummary(*context, "prompt_tokens=578 completion_tokens=64");
//   }
//
// The interceptor also counts the calls for /metrics: pixtral_requests_total{method,code} and
// pixtral_request_duration_seconds{method} (end-to-end latency as the server sees it).
#ifndef PIXTRAL_SERVICES_COMMON_LOGGING_H_
#define PIXTRAL_SERVICES_COMMON_LOGGING_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_interceptor.h"

namespace pixtral {

inline constexpr char kRequestIdKey[] = "x-request-id";

// glog to stderr only (containers collect stderr), with `name` as the program name.
void InitServerLogging(const std::string& name);

// Whether `id` may be logged and forwarded as it is.
bool IsValidRequestId(std::string_view id);
// A new random id (16 hex digits).
std::string NewRequestId();
// `id` (a client's x-request-id header or metadata) when valid, else a new one. The gRPC
// interceptor does this for every call; the HTTP front calls it with its header's value.
std::string RequestIdOrNew(std::string_view id);

// The call's request id: the interceptor's (always present on a server built by RunningServer),
// else the caller's valid x-request-id, else "".
std::string RequestIdOf(const grpc::ServerContextBase& context);

// Appends ` fields` to the call's summary line; ignored for calls the interceptor does not see.
void AddToRequestSummary(const grpc::ServerContextBase& context, std::string_view fields);

// `response_metadata` goes into every response's initial metadata besides the request id (a
// worker's model fingerprint).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewRequestLogInterceptorFactory(
    std::vector<std::pair<std::string, std::string>> response_metadata = {});

// Logs a model load: what is loaded (the folder's weight files and their bytes) at the start, a
// line every 10 s while it runs, and the time and rate at the end (Done); also sets
// pixtral_model_loaded and pixtral_model_load_seconds.
//
//   ModelLoadLog load("vision_worker", dir);
//   ... load ...
//   load.Done();
class ModelLoadLog {
 public:
  ModelLoadLog(const std::string& name, const std::string& dir);
  ~ModelLoadLog();  // stops the progress lines, also on a failed load

  void Done();

 private:
  void StopTicker();

  const std::string name_;
  const std::chrono::steady_clock::time_point start_;
  int64_t bytes_ = 0;
  absl::Mutex mutex_;
  bool stopped_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread ticker_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_LOGGING_H_
