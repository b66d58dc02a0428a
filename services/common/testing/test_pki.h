// Certificates for tests, made with the openssl command line (tools/setup.sh installs it): a CA,
// and leaf certificates it signs, valid for both server and client use. Real keys and real
// X.509, so tests exercise the TLS stack exactly as a deployment does.
//
//   absl::StatusOr<TestCa> ca = TestCa::Create(dir, "cluster-ca");
//   absl::StatusOr<TestCert> server = ca->Issue("gateway", {"DNS:localhost", "IP:127.0.0.1"});
//   ... MakeServerCredentials({.cert_file = server->cert_file, .key_file = server->key_file}) ...
#ifndef PIXTRAL_SERVICES_COMMON_TESTING_TEST_PKI_H_
#define PIXTRAL_SERVICES_COMMON_TESTING_TEST_PKI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pixtral {

struct TestCert {
  std::string cert_file;  // PEM certificate
  std::string key_file;   // PEM private key
};

class TestCa {
 public:
  // A self-signed CA named `name`, its files in `dir` (created if missing).
  static absl::StatusOr<TestCa> Create(const std::string& dir, const std::string& name);

  // A leaf certificate for `name` with these subjectAltNames ("DNS:localhost", "IP:127.0.0.1"),
  // signed by this CA. Files are `dir/name.crt` and `dir/name.key`.
  absl::StatusOr<TestCert> Issue(const std::string& name,
                                 const std::vector<std::string>& alt_names = {
                                     "DNS:localhost", "IP:127.0.0.1"}) const;

  const std::string& cert_file() const { return ca_.cert_file; }

 private:
  std::string dir_;
  TestCert ca_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_TESTING_TEST_PKI_H_
