// Runs a gRPC server the way every Pixtral service does: health checking (grpc.health.v1),
// TLS or mTLS when given credentials, server reflection only when asked for, message-size limits
// set on purpose, and a graceful shutdown that stops accepting calls, reports NOT_SERVING, and
// gives in-flight calls a grace period before cancelling them.
//
//   GatewayService service(...);
//   absl::StatusOr<std::unique_ptr<RunningServer>> server =
//       RunningServer::Start({&service}, {.address = "0.0.0.0:8000"});
//   if (!server.ok()) return server.status();
//   WaitForTerminationSignal();           // SIGTERM from Kubernetes, or Ctrl-C
//   (*server)->Shutdown();
#ifndef PIXTRAL_SERVICES_COMMON_SERVER_RUNNER_H_
#define PIXTRAL_SERVICES_COMMON_SERVER_RUNNER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"

namespace pixtral {

struct ServerOptions {
  // host:port; port 0 picks a free port (tests), reported by RunningServer::port().
  std::string address = "0.0.0.0:0";
  // Upper bound for one received message. The default covers a request with several
  // full-size images (a 1024x1024 image is 12 MB of float32 pixels).
  int max_receive_message_bytes = 64 << 20;
  int max_send_message_bytes = 64 << 20;
  // How long in-flight calls may run on after Shutdown() before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // TLS or mTLS (tls_credentials.h); null: plaintext, with a warning at start unless the
  // address is loopback.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // grpc.reflection.v1alpha lets anyone list the services and their messages: off by default.
  bool reflection = false;
  // host:port of a second, plaintext listener serving only grpc.health.v1, mirroring the main
  // server's (health_mirror.h), for probes that cannot speak TLS. Empty: none.
  std::string health_address;
  // Each client connection is closed (GOAWAY) after this long; calls on it finish first. The
  // client then reconnects and re-resolves, so pods that joined a headless Service get traffic.
  // Infinite keeps connections for ever.
  absl::Duration max_connection_age = absl::InfiniteDuration();
  // Service names health checks answer for besides "" (e.g. "pixtral.v1.Gateway").
  std::vector<std::string> health_names;
  // Added to every response's initial metadata (a worker's x-model-fingerprint).
  std::vector<std::pair<std::string, std::string>> response_metadata;
};

class RunningServer {
 public:
  static absl::StatusOr<std::unique_ptr<RunningServer>> Start(
      const std::vector<grpc::Service*>& services, const ServerOptions& options);

  ~RunningServer();  // shuts down if Shutdown() was not called

  int port() const { return port_; }
  // The health listener's port; 0 without one.
  int health_port() const { return health_port_; }

  // What health checks report for "" and every name in `health_names` (Start sets SERVING). A
  // server started with no services answers NOT_SERVING for every name, and this does nothing.
  void SetServing(bool serving);

  // Reports NOT_SERVING to health checks, stops accepting calls, waits up to the grace period
  // for in-flight calls and then cancels what remains. Idempotent.
  void Shutdown();

 private:
  RunningServer() = default;

  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> health_names_;
  int port_ = 0;
  std::unique_ptr<grpc::Service> not_serving_;  // the health service of a server with no other
  std::unique_ptr<grpc::Service> health_mirror_;
  std::unique_ptr<grpc::Server> health_server_;
  int health_port_ = 0;
  absl::Duration shutdown_grace_;
  bool shut_down_ = false;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards, so they
// are only ever delivered to WaitForTerminationSignal. Call at the top of main().
void BlockTerminationSignals();

// Waits for SIGTERM or SIGINT (blocked beforehand by BlockTerminationSignals) and returns it.
int WaitForTerminationSignal();

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_SERVER_RUNNER_H_
