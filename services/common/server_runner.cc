#include "services/common/server_runner.h"

#include <signal.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "services/common/logging.h"
#include "services/common/parse_error_interceptor.h"

namespace pixtral {
namespace {

sigset_t TerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunningServer>> RunningServer::Start(
    const std::vector<grpc::Service*>& services, const ServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<RunningServer> running(new RunningServer());
  running->shutdown_grace_ = options.shutdown_grace;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &running->port_);
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
  return running;
}

RunningServer::~RunningServer() { Shutdown(); }

void RunningServer::SetServing(bool serving) {
  if (shut_down_) return;  // after Shutdown() the health service answers NOT_SERVING for good
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(serving);
  for (const std::string& name : health_names_) health->SetServingStatus(name, serving);
}

void RunningServer::Shutdown() {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  // Load balancers polling health stop sending work before the listener closes.
  server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(shutdown_grace_));
  server_->Wait();
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
