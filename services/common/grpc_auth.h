// The gRPC shell of BearerTokens (auth.h): checks a call's `authorization` metadata.
//
//   grpc::Status Gateway::Tokenize(grpc::ServerContext* context, ...) {
//     if (grpc::Status denied = CheckCallToken(tokens_.get(), *context); !denied.ok()) {
//       return denied;
//     }
//     ...
#ifndef PIXTRAL_SERVICES_COMMON_GRPC_AUTH_H_
#define PIXTRAL_SERVICES_COMMON_GRPC_AUTH_H_

#include <string>

#include "grpcpp/server_context.h"
#include "services/common/auth.h"
#include "services/common/grpc_status.h"

namespace pixtral {

// OK when `tokens` is null (no --auth_token_file: authentication off) or the call carries exactly
// one valid `authorization: Bearer <token>`; UNAUTHENTICATED otherwise.
inline grpc::Status CheckCallToken(const BearerTokens* tokens, const grpc::ServerContext& context) {
  if (tokens == nullptr) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  if (metadata.count("authorization") > 1) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "send one authorization, not several");
  }
  const auto found = metadata.find("authorization");
  const std::string value =
      found == metadata.end() ? "" : std::string(found->second.data(), found->second.size());
  return ToGrpcStatus(tokens->Check(value));
}

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_GRPC_AUTH_H_
