// The part of main() every Pixtral server shares: the listening flags (--port, --port_file,
// --shutdown_grace, --max_message_bytes; TLS, mTLS and reflection from server_security_flags.h),
// then serving until SIGTERM or SIGINT, then a graceful
// shutdown that gives in-flight calls --shutdown_grace before cancelling them.
//
//   absl::Status Run() {
//     ... load the model, build the service ...
//     return pixtral::ServeUntilTerminated("vision_worker", {&service});
//   }
//   int main(int argc, char** argv) { return pixtral::ServerMain(argc, argv, "vision_worker", Run);
//   }
//
// Start the server only once the model is loaded: health checks then report SERVING exactly
// when the process can do its work.
#ifndef PIXTRAL_SERVICES_COMMON_SERVE_H_
#define PIXTRAL_SERVICES_COMMON_SERVE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/impl/service_type.h"

namespace pixtral {

// Starts `services` on the flags' address, writes the bound port to --port_file if set (so tests
// and scripts can use --port=0), blocks until SIGTERM or SIGINT, then shuts down gracefully.
// UNAVAILABLE if the port cannot be bound; the port file's error if it cannot be written.
// `on_signal` (may be empty) runs as soon as the signal arrives, before the graceful shutdown:
// a second front (the gateway's HTTP API) starts draining with the gRPC server.
absl::Status ServeUntilTerminated(const std::string& name,
                                  const std::vector<grpc::Service*>& services,
                                  const std::function<void()>& on_signal = nullptr);

// A server's whole main(): blocks SIGTERM and SIGINT before any thread starts (so only
// ServeUntilTerminated receives them), parses the flags, calls `run`, and exits 0, or 1 with
// `run`'s error on stderr.
int ServerMain(int argc, char** argv, const std::string& name, absl::Status (*run)());

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_SERVE_H_
