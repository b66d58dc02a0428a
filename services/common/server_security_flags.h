// The security flags every Pixtral server shares (defined once here, read by serve.cc):
//   --tls_cert, --tls_key      the server's certificate chain and key (PEM; reloaded when they
//                              change on disk, checked every --tls_reload_interval)
//   --tls_client_ca            require client certificates signed by this CA (mTLS)
//   --enable_reflection        serve grpc.reflection (off: it lists every method to anyone)
//   --health_port              plaintext grpc.health.v1 only, for probes that cannot do TLS
#ifndef PIXTRAL_SERVICES_COMMON_SERVER_SECURITY_FLAGS_H_
#define PIXTRAL_SERVICES_COMMON_SERVER_SECURITY_FLAGS_H_

#include <string>

#include "services/common/tls_credentials.h"

namespace pixtral {

ServerTlsFiles ServerTlsFilesFromFlags();
bool ReflectionEnabledByFlag();
// "0.0.0.0:PORT" for --health_port, or empty.
std::string HealthAddressFromFlag();

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_SERVER_SECURITY_FLAGS_H_
