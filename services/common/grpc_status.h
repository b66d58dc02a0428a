// absl::Status <-> grpc::Status. The two share canonical codes, so the conversion keeps the code
// and the message; every service returns library errors through here.
#ifndef PIXTRAL_SERVICES_COMMON_GRPC_STATUS_H_
#define PIXTRAL_SERVICES_COMMON_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace pixtral {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

inline absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_GRPC_STATUS_H_
