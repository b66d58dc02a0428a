#include "services/common/server_security_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, tls_cert, "",
          "Server certificate chain (PEM). With --tls_key the server speaks only TLS; empty: "
          "plaintext (development on loopback).");
ABSL_FLAG(std::string, tls_key, "", "Private key of --tls_cert (PEM).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "CA bundle (PEM): clients must present a certificate it signed (mTLS).");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Minutes(1),
          "How often the TLS files are checked for changes (rotated certificates are picked up "
          "without a restart).");
ABSL_FLAG(int, health_port, -1,
          "If >= 0, also serve grpc.health.v1 (only) in plaintext on this port, for probes that "
          "cannot speak TLS (Kubernetes' gRPC probes); 0 picks a free port. -1: none.");
ABSL_FLAG(bool, enable_reflection, false,
          "Serve gRPC server reflection (lists every service and message to any caller).");

namespace pixtral {

ServerTlsFiles ServerTlsFilesFromFlags() {
  return {.cert_file = absl::GetFlag(FLAGS_tls_cert),
          .key_file = absl::GetFlag(FLAGS_tls_key),
          .client_ca_file = absl::GetFlag(FLAGS_tls_client_ca),
          .reload_interval = absl::GetFlag(FLAGS_tls_reload_interval)};
}

bool ReflectionEnabledByFlag() { return absl::GetFlag(FLAGS_enable_reflection); }

std::string HealthAddressFromFlag() {
  const int port = absl::GetFlag(FLAGS_health_port);
  return port < 0 ? "" : absl::StrCat("0.0.0.0:", port);
}

}  // namespace pixtral
