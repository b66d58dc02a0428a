#include "services/common/testing/test_pki.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pixtral {
namespace {

absl::Status Run(const std::string& command) {
  const std::string quiet = command + " >/dev/null 2>&1";
  if (std::system(quiet.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("failed: ", command));
  }
  return absl::OkStatus();
}

// P-256 keys: quick to make, and what cert-manager issues by default for ECDSA.
constexpr char kNewKey[] = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

}  // namespace

absl::StatusOr<TestCa> TestCa::Create(const std::string& dir, const std::string& name) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  TestCa ca;
  ca.dir_ = dir;
  ca.ca_ = {.cert_file = absl::StrCat(dir, "/", name, ".crt"),
            .key_file = absl::StrCat(dir, "/", name, ".key")};
  if (absl::Status status =
          Run(absl::StrCat(kNewKey, " -x509 -days 2 -subj /CN=", name, " -keyout ", ca.ca_.key_file,
                           " -out ", ca.ca_.cert_file, " -addext basicConstraints=critical,CA:TRUE",
                           " -addext keyUsage=critical,keyCertSign,cRLSign"));
      !status.ok()) {
    return status;
  }
  return ca;
}

absl::StatusOr<TestCert> TestCa::Issue(const std::string& name,
                                       const std::vector<std::string>& alt_names) const {
  const std::string base = absl::StrCat(dir_, "/", name);
  TestCert cert{.cert_file = base + ".crt", .key_file = base + ".key"};
  {
    std::ofstream extensions(base + ".ext");
    extensions << "basicConstraints=CA:FALSE\n"
               << "keyUsage=critical,digitalSignature,keyEncipherment\n"
               << "extendedKeyUsage=serverAuth,clientAuth\n";
    if (!alt_names.empty())
      extensions << "subjectAltName=" << absl::StrJoin(alt_names, ",") << "\n";
  }
  if (absl::Status status = Run(absl::StrCat(kNewKey, " -subj /CN=", name, " -keyout ",
                                             cert.key_file, " -out ", base, ".csr"));
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          Run(absl::StrCat("openssl x509 -req -days 2 -in ", base, ".csr -CA ", ca_.cert_file,
                           " -CAkey ", ca_.key_file, " -set_serial ", std::rand() % 1000000 + 1,
                           " -extfile ", base, ".ext -out ", cert.cert_file));
      !status.ok()) {
    return status;
  }
  return cert;
}

}  // namespace pixtral
