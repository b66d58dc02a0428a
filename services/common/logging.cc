#include "services/common/logging.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "services/common/metrics.h"
#include "services/common/metrics_catalog.h"

namespace pixtral {
namespace {

using grpc::experimental::InterceptionHookPoints;

constexpr size_t kMaxRequestIdBytes = 128;

// The summary fields services add, by call, between the interceptor's first and last hook.
class Summaries {
 public:
  static Summaries& Get() {
    static Summaries* summaries = new Summaries();
    return *summaries;
  }
  void Open(const void* call) {
    absl::MutexLock lock(&mutex_);
    fields_[call];
  }
  void Append(const void* call, std::string_view fields) {
    absl::MutexLock lock(&mutex_);
    auto it = fields_.find(call);
    if (it != fields_.end()) it->second.append(" ").append(fields);
  }
  std::string Close(const void* call) {
    absl::MutexLock lock(&mutex_);
    auto it = fields_.find(call);
    if (it == fields_.end()) return "";
    std::string fields = std::move(it->second);
    fields_.erase(it);
    return fields;
  }

 private:
  absl::Mutex mutex_;
  absl::flat_hash_map<const void*, std::string> fields_ ABSL_GUARDED_BY(mutex_);
};

// Calls take from a millisecond (health, tokenize) to minutes (a long stream).
const std::vector<double>& DurationBuckets() {
  static const std::vector<double>* buckets =
      new std::vector<double>(metrics::ExponentialBuckets(0.001, 2, 19));  // 1 ms .. 262 s
  return *buckets;
}

class RequestLogInterceptor final : public grpc::experimental::Interceptor {
 public:
  RequestLogInterceptor(grpc::experimental::ServerRpcInfo* info,
                        const std::vector<std::pair<std::string, std::string>>& response_metadata)
      : response_metadata_(response_metadata),
        context_(info->server_context()),
        method_(info->method()),
        start_(std::chrono::steady_clock::now()) {}

  ~RequestLogInterceptor() override {
    if (!finished_) Summaries::Get().Close(context_);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      AssignRequestId(methods->GetRecvInitialMetadata());
      Summaries::Get().Open(context_);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      std::multimap<std::string, std::string>* metadata = methods->GetSendInitialMetadata();
      metadata->emplace(kRequestIdKey, request_id_);
      for (const auto& [key, value] : response_metadata_) metadata->emplace(key, value);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  // Takes the caller's id if it is sane, else makes one, and leaves exactly that id in the
  // call's client metadata, where the service reads it (RequestIdOf). The map holds views:
  // request_id_ lives as long as the call.
  void AssignRequestId(std::multimap<grpc::string_ref, grpc::string_ref>* metadata) {
    auto it = metadata->find(kRequestIdKey);
    if (it != metadata->end()) {
      const std::string_view given(it->second.data(), it->second.size());
      if (IsValidRequestId(given)) request_id_ = std::string(given);
    }
    if (request_id_.empty()) request_id_ = NewRequestId();
    metadata->erase(kRequestIdKey);
    metadata->emplace(grpc::string_ref(kRequestIdKey), grpc::string_ref(request_id_));
  }

  void Finish(const grpc::Status& status) {
    finished_ = true;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const std::string code = CodeName(status.error_code());
    // A method no service has is named by the caller: one "unknown" series, and in the log only
    // escaped and cut short.
    const bool unknown = status.error_code() == grpc::StatusCode::UNIMPLEMENTED;
    const std::string method =
        unknown ? absl::StrCat("unknown(", absl::CHexEscape(method_.substr(0, 64)), ")") : method_;
    metrics::Registry& registry = metrics::Registry::Default();
    registry
        .GetCounter("pixtral_requests_total", "RPCs served, by method and status code.",
                    {{"method", unknown ? "unknown" : method_}, {"code", code}})
        .Increment();
    registry
        .GetHistogram("pixtral_request_duration_seconds",
                      "Time from a call's arrival to its status, by method.", DurationBuckets(),
                      {{"method", unknown ? "unknown" : method_}})
        .Observe(seconds);
    // Health probes arrive every few seconds from every kubelet: counted, not logged.
    if (method_.starts_with("/grpc.health.v1.") || method_.starts_with("/grpc.reflection.")) {
      Summaries::Get().Close(context_);
      return;
    }
    std::string line = absl::StrFormat("request id=%s method=%s code=%s seconds=%.3f peer=%s",
                                       request_id_, method, code, seconds, context_->peer());
    absl::StrAppend(&line, Summaries::Get().Close(context_));
    if (status.ok()) {
      LOG(INFO) << line;
    } else {
      // The message may quote request content: bounded, on one line.
      std::string message = status.error_message().substr(0, 300);
      std::replace(message.begin(), message.end(), '\n', ' ');
      LOG(WARNING) << line << " error=\"" << message << "\"";
    }
  }

  static std::string CodeName(grpc::StatusCode code) {
    static constexpr const char* kNames[] = {"OK",
                                             "CANCELLED",
                                             "UNKNOWN",
                                             "INVALID_ARGUMENT",
                                             "DEADLINE_EXCEEDED",
                                             "NOT_FOUND",
                                             "ALREADY_EXISTS",
                                             "PERMISSION_DENIED",
                                             "RESOURCE_EXHAUSTED",
                                             "FAILED_PRECONDITION",
                                             "ABORTED",
                                             "OUT_OF_RANGE",
                                             "UNIMPLEMENTED",
                                             "INTERNAL",
                                             "UNAVAILABLE",
                                             "DATA_LOSS",
                                             "UNAUTHENTICATED"};
    const int index = static_cast<int>(code);
    return index >= 0 && index < 17 ? kNames[index] : absl::StrCat(index);
  }

  const std::vector<std::pair<std::string, std::string>>& response_metadata_;
  grpc::ServerContextBase* const context_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
  std::string request_id_;
  bool finished_ = false;
};

class RequestLogInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RequestLogInterceptorFactory(
      std::vector<std::pair<std::string, std::string>> response_metadata)
      : response_metadata_(std::move(response_metadata)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RequestLogInterceptor(info, response_metadata_);
  }

 private:
  const std::vector<std::pair<std::string, std::string>> response_metadata_;  // outlives calls
};

}  // namespace

void InitServerLogging(const std::string& name) {
  static const std::string* program = new std::string(name);  // glog keeps the pointer
  FLAGS_logtostderr = true;
  if (!google::IsGoogleLoggingInitialized()) google::InitGoogleLogging(program->c_str());
}

bool IsValidRequestId(std::string_view id) {
  return !id.empty() && id.size() <= kMaxRequestIdBytes &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
         });
}

std::string NewRequestId() {
  static absl::Mutex mutex(absl::kConstInit);
  static absl::BitGen* generator = new absl::BitGen();
  absl::MutexLock lock(&mutex);
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(*generator));
}

std::string RequestIdOrNew(std::string_view id) {
  return IsValidRequestId(id) ? std::string(id) : NewRequestId();
}

std::string RequestIdOf(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kRequestIdKey);
  if (it == metadata.end()) return "";
  std::string id(it->second.data(), it->second.size());
  return IsValidRequestId(id) ? id : "";
}

void AddToRequestSummary(const grpc::ServerContextBase& context, std::string_view fields) {
  Summaries::Get().Append(&context, fields);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewRequestLogInterceptorFactory(
    std::vector<std::pair<std::string, std::string>> response_metadata) {
  return std::make_unique<RequestLogInterceptorFactory>(std::move(response_metadata));
}

ModelLoadLog::ModelLoadLog(const std::string& name, const std::string& dir)
    : name_(name), start_(std::chrono::steady_clock::now()) {
  std::string files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.path().extension() != ".safetensors") continue;
    const uintmax_t size = entry.file_size(error);
    if (error) continue;
    bytes_ += static_cast<int64_t>(size);
    absl::StrAppend(&files, files.empty() ? "" : ", ", entry.path().filename().string());
  }
  metrics::ModelLoaded().Set(0);
  LOG(INFO) << name_ << ": loading the model from " << dir << " (" << files << ": "
            << absl::StrFormat("%.2f GB", bytes_ / 1e9) << ")";
  ticker_ = std::thread([this] {
    absl::MutexLock lock(&mutex_);
    for (int tick = 1;; ++tick) {
      if (mutex_.AwaitWithTimeout(absl::Condition(&stopped_), absl::Seconds(10))) return;
      LOG(INFO) << name_ << ": still loading the model after " << tick * 10 << " s";
    }
  });
}

ModelLoadLog::~ModelLoadLog() { StopTicker(); }

void ModelLoadLog::StopTicker() {
  {
    absl::MutexLock lock(&mutex_);
    stopped_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
}

void ModelLoadLog::Done() {
  StopTicker();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  metrics::ModelLoadSeconds().Set(seconds);
  metrics::ModelLoaded().Set(1);
  LOG(INFO) << name_ << ": model loaded in " << absl::StrFormat("%.2f", seconds) << " s ("
            << absl::StrFormat("%.2f GB/s", seconds > 0 ? bytes_ / 1e9 / seconds : 0) << ")";
}

}  // namespace pixtral
