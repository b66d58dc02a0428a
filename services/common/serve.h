// The part of main() every Pixtral server shares: the listening flags (--host, --port,
// --port_file, --shutdown_grace, --max_message_bytes, --max_connection_age, --metrics_port; TLS,
// mTLS, reflection and --health_port from server_security_flags.h), glog on stderr with a summary
// line per call (services/common/logging.h), Prometheus metrics at /metrics from before the model
// loads, then serving until SIGTERM or SIGINT, then a graceful shutdown that gives in-flight calls
// --shutdown_grace before cancelling them.
//
//   absl::Status Run() {
//     ... load the model, build the service ...
//     return pixtral::ServeUntilTerminated("vision_worker", {&service});
//   }
//   int main(int argc, char** argv) { return pixtral::ServerMain(argc, argv, "vision_worker", Run);
//   }
//
// ServerMain listens on --port from the start with only the health service, NOT_SERVING (for
// "" and any name) while `run` loads the model; ServeUntilTerminated then takes the port over
// with the real services, SERVING. SIGTERM during the load takes effect once serving starts.
#ifndef PIXTRAL_SERVICES_COMMON_SERVE_H_
#define PIXTRAL_SERVICES_COMMON_SERVE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/impl/service_type.h"

namespace pixtral {

// Starts `services` on the flags' address, writes the bound port to --port_file if set (so tests
// and scripts can use --port=0), blocks until SIGTERM or SIGINT, then shuts down gracefully.
// UNAVAILABLE if the port cannot be bound; the port file's error if it cannot be written.
struct ServeOptions {
  // Health names answered besides "" (Kubernetes probes may ask for "pixtral.v1.Gateway").
  std::vector<std::string> health_names;
  // Polled every second while serving: health reports NOT_SERVING while it returns false (a
  // gateway with no reachable worker of some kind). Empty: always ready.
  std::function<bool()> ready;
  // Added to every response's initial metadata (workers: their model fingerprint).
  std::vector<std::pair<std::string, std::string>> response_metadata;
  // Runs as soon as the signal arrives, before the graceful shutdown: a second front (the
  // gateway's HTTP API) starts draining with the gRPC server. Empty: nothing.
  std::function<void()> on_signal;
};
absl::Status ServeUntilTerminated(const std::string& name,
                                  const std::vector<grpc::Service*>& services,
                                  const ServeOptions& serve = {});

// A server's whole main(): blocks SIGTERM and SIGINT before any thread starts (so only
// ServeUntilTerminated receives them), parses the flags, calls `run`, and exits 0, or 1 with
// `run`'s error on stderr.
int ServerMain(int argc, char** argv, const std::string& name, absl::Status (*run)());

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_SERVE_H_
