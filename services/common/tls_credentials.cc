#include "services/common/tls_credentials.h"

#include <arpa/inet.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace pixtral {
namespace {

using grpc::experimental::FileWatcherCertificateProvider;

// A file that must hold a PEM block containing `marker` ("CERTIFICATE", "PRIVATE KEY"). Checked
// up front because gRPC's watcher only logs unreadable files and then fails every handshake.
absl::Status CheckPemFile(const std::string& flag, const std::string& path,
                          absl::string_view marker) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream contents;
  contents << in.rdbuf();
  const std::string text = contents.str();
  if (!absl::StrContains(text, "-----BEGIN ") || !absl::StrContains(text, marker)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM ", absl::AsciiStrToLower(marker)));
  }
  return absl::OkStatus();
}

absl::Status CheckPair(const std::string& what, const std::string& cert_file,
                       const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": a certificate needs its private key and a key its certificate"));
  }
  if (cert_file.empty()) return absl::OkStatus();
  PIXTRAL_RETURN_IF_ERROR(CheckPemFile(what + " certificate", cert_file, "CERTIFICATE"));
  return CheckPemFile(what + " key", key_file, "PRIVATE KEY");
}

unsigned int RefreshSeconds(absl::Duration interval) {
  return static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(interval)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsFiles& files) {
  if (!files.tls()) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "a client CA (mTLS) needs the server's own certificate and key");
    }
    return grpc::InsecureServerCredentials();
  }
  PIXTRAL_RETURN_IF_ERROR(CheckPair("server", files.cert_file, files.key_file));
  const bool mutual = !files.client_ca_file.empty();
  if (mutual) {
    PIXTRAL_RETURN_IF_ERROR(CheckPemFile("client CA", files.client_ca_file, "CERTIFICATE"));
  }
  auto provider = std::make_shared<FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.client_ca_file, RefreshSeconds(files.reload_interval));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (mutual) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelTlsFiles& files) {
  if (!files.tls()) return grpc::InsecureChannelCredentials();
  PIXTRAL_RETURN_IF_ERROR(CheckPair("client", files.cert_file, files.key_file));
  if (!files.ca_file.empty()) {
    PIXTRAL_RETURN_IF_ERROR(CheckPemFile("CA", files.ca_file, "CERTIFICATE"));
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (!files.ca_file.empty() || !files.cert_file.empty()) {
    options.set_certificate_provider(std::make_shared<FileWatcherCertificateProvider>(
        files.key_file, files.cert_file, files.ca_file, RefreshSeconds(files.reload_interval)));
    // Without a CA of its own the channel trusts the system's roots.
    if (!files.ca_file.empty()) options.watch_root_certs();
    if (!files.cert_file.empty()) options.watch_identity_key_cert_pairs();
  }
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::experimental::TlsCredentials(options);
  if (credentials == nullptr) return absl::InvalidArgumentError("cannot make TLS credentials");
  return credentials;
}

bool IsLoopbackAddress(const std::string& address) {
  absl::string_view host = address;
  if (absl::StartsWith(host, "[")) {
    host = host.substr(1, host.find(']') == absl::string_view::npos ? 0 : host.find(']') - 1);
  } else if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost") return true;
  const std::string literal(host);
  in_addr v4;
  if (inet_pton(AF_INET, literal.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, literal.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

}  // namespace pixtral
