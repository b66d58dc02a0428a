#include "services/common/server_runner.h"

#include <signal.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "grpcpp/ext/health_check_service_server_builder_option.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "proto/health.grpc.pb.h"
#include "services/common/health_mirror.h"
#include "services/common/logging.h"
#include "services/common/parse_error_interceptor.h"
#include "services/common/tls_credentials.h"

namespace pixtral {
namespace {

sigset_t TerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

// Sets whether one server has reflection. Linking gRPC's reflection library registers its plugin
// for every server the process builds (a static initializer), so the option removes it, then
// adds it back only where asked.
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enabled) : enabled_(enabled) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    auto reflection = std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>();
    const std::string name = reflection->name();
    std::erase_if(*plugins, [&](const auto& plugin) { return plugin->name() == name; });
    if (enabled_) plugins->push_back(std::move(reflection));
  }

 private:
  bool enabled_;
};

// The health service of a server that has no other (the one that holds the port while a model
// loads): NOT_SERVING for "" and every name. gRPC's default health service cannot stand alone: a
// server with no synchronous method fails to build ("At least one of the completion queues must
// be frequently polled"), and with reflection off there is none.
class NotServingHealth final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* response) override {
    response->set_status(grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    return grpc::Status::OK;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<RunningServer>> RunningServer::Start(
    const std::vector<grpc::Service*>& services, const ServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);

  std::unique_ptr<RunningServer> running(new RunningServer());
  running->shutdown_grace_ = options.shutdown_grace;
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials = options.credentials;
  if (credentials == nullptr) {
    credentials = grpc::InsecureServerCredentials();
    if (!IsLoopbackAddress(options.address)) {
      LOG(WARNING) << "serving plaintext on " << options.address
                   << ", which is not a loopback address: anyone who can reach it can call it and "
                      "read its traffic; give --tls_cert and --tls_key (and --tls_client_ca for "
                      "mTLS)";
    }
  }
  builder.AddListeningPort(options.address, credentials, &running->port_);
  builder.SetOption(std::make_unique<ReflectionOption>(options.reflection));
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options.max_send_message_bytes);
  // A second server on a busy port must fail to start, not share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options.max_connection_age != absl::InfiniteDuration()) {
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_MS,
        static_cast<int>(absl::ToInt64Milliseconds(options.max_connection_age)));
  }
  for (grpc::Service* service : services) builder.RegisterService(service);
  if (services.empty()) {
    running->not_serving_ = std::make_unique<NotServingHealth>();
    builder.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
    builder.RegisterService(running->not_serving_.get());
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // Sending hooks run in this order: the request log sees the status the parse-error rewrite left.
  interceptors.push_back(NewParseErrorInterceptorFactory());
  interceptors.push_back(NewRequestLogInterceptorFactory(options.response_metadata));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  running->server_ = builder.BuildAndStart();
  if (running->server_ == nullptr || running->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.address));
  }
  running->health_names_ = options.health_names;
  running->SetServing(true);
  if (!options.health_address.empty()) {
    running->health_mirror_ = std::make_unique<HealthMirror>(
        running->server_->InProcessChannel(grpc::ChannelArguments()));
    grpc::ServerBuilder health;
    health.AddListeningPort(options.health_address, grpc::InsecureServerCredentials(),
                            &running->health_port_);
    // Only the mirror: not the default health service, not reflection.
    health.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
    health.SetOption(std::make_unique<ReflectionOption>(false));
    health.RegisterService(running->health_mirror_.get());
    running->health_server_ = health.BuildAndStart();
    if (running->health_server_ == nullptr || running->health_port_ == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", options.health_address));
    }
  }
  return running;
}

RunningServer::~RunningServer() { Shutdown(); }

void RunningServer::SetServing(bool serving) {
  if (shut_down_) return;  // after Shutdown() the health service answers NOT_SERVING for good
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;  // no services: NotServingHealth
  health->SetServingStatus(serving);
  for (const std::string& name : health_names_) health->SetServingStatus(name, serving);
}

void RunningServer::Shutdown() {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  // Load balancers polling health stop sending work before the listener closes.
  if (server_->GetHealthCheckService() != nullptr) server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(shutdown_grace_));
  server_->Wait();
  if (health_server_ != nullptr) {
    health_server_->Shutdown(std::chrono::system_clock::now());
    health_server_->Wait();
  }
}

void BlockTerminationSignals() {
  sigset_t signals = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t signals = TerminationSignals();
  int signal = 0;
  while (sigwait(&signals, &signal) != 0) {
  }
  return signal;
}

}  // namespace pixtral
