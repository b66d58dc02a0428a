// gRPC credentials from PEM files: TLS (and mTLS) for every Pixtral server, and for the gateway's
// channels to its workers. Files are watched: a certificate and key replaced on disk (for
// example by cert-manager rotating a Kubernetes Secret) are picked up within `reload_interval`
// without a restart. Replace them atomically (write elsewhere, then rename, or swap a symlinked
// folder as Kubernetes does), since the watcher reads whatever is there when it looks.
//
//   absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> server = MakeServerCredentials(
//       {.cert_file = "/tls/tls.crt", .key_file = "/tls/tls.key", .client_ca_file =
//       "/tls/ca.crt"});
//   absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> channel = MakeChannelCredentials(
//       {.ca_file = "/tls/ca.crt", .cert_file = "/tls/tls.crt", .key_file = "/tls/tls.key"});
//
// Empty file names mean plaintext, which stays the default for development on loopback.
#ifndef PIXTRAL_SERVICES_COMMON_TLS_CREDENTIALS_H_
#define PIXTRAL_SERVICES_COMMON_TLS_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace pixtral {

struct ServerTlsFiles {
  // The server's certificate chain and private key (PEM). Both or neither.
  std::string cert_file;
  std::string key_file;
  // When set, clients must present a certificate signed by one of these CAs (mTLS); a client
  // without one fails the handshake. Needs cert_file.
  std::string client_ca_file;
  absl::Duration reload_interval = absl::Minutes(1);

  bool tls() const { return !cert_file.empty() || !key_file.empty(); }
};

struct ChannelTlsFiles {
  // The CA that signed the server's certificate (PEM). Empty with use_tls: the system's roots.
  std::string ca_file;
  // This client's certificate and key, for servers that require one (mTLS). Both or neither.
  std::string cert_file;
  std::string key_file;
  // TLS with the system's roots even without ca_file (a public gateway behind a real CA).
  bool use_tls = false;
  absl::Duration reload_interval = absl::Minutes(1);

  bool tls() const {
    return use_tls || !ca_file.empty() || !cert_file.empty() || !key_file.empty();
  }
};

// Insecure credentials when `files` names nothing. InvalidArgument for half a pair (a cert
// without its key), a client CA without a server certificate, or a file that cannot be read or
// holds no PEM block of the expected kind: a server that would fail every handshake refuses to
// start instead.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsFiles& files);

// Insecure credentials when `files` names nothing. Servers are verified against the CA and the
// host name the channel targets (their certificate must name it). Same errors as above.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelTlsFiles& files);

// True for addresses only this machine can reach: "localhost", 127.0.0.0/8 and [::1], with a
// port. "0.0.0.0:8000" and "[::]:8000" listen on every interface and are not loopback.
bool IsLoopbackAddress(const std::string& address);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_TLS_CREDENTIALS_H_
