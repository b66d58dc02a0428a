// Runs a gRPC server the way every Pixtral service does: health checking (grpc.health.v1),
// server reflection, message-size limits set on purpose, and a graceful shutdown that stops
// accepting calls, reports NOT_SERVING, and gives in-flight calls a grace period before
// cancelling them.
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

  // What health checks report for "" and every name in `health_names` (Start sets SERVING).
  void SetServing(bool serving);

  // Reports NOT_SERVING to health checks, stops accepting calls, waits up to the grace period
  // for in-flight calls and then cancels what remains. Idempotent.
  void Shutdown();

 private:
  RunningServer() = default;

  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> health_names_;
  int port_ = 0;
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
