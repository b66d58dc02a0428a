// What a public client may see of an error. Statuses about the request itself (invalid
// argument, too large, not allowed, unauthenticated...) keep their message: they tell the
// client what to fix. Statuses about the system (a worker unreachable, an internal failure, gRPC
// or OpenSSL text, worker addresses) are replaced by a fixed sentence and the request id; the
// original goes to the log under that id, so an operator can find it and a client learns
// nothing about the cluster's insides.
//
//   const std::string id = RequestIdOf(*context);  // logging.h: the call's one request id
//   absl::Status status = pipeline.Run(...);
//   return PublicStatus(status, id);        // logs the detail when it hides it
#ifndef PIXTRAL_SERVICES_COMMON_PUBLIC_STATUS_H_
#define PIXTRAL_SERVICES_COMMON_PUBLIC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace pixtral {

// `status` as a public client may see it (see above), logging the original when it hides it; OK
// stays OK. The HTTP front maps the result's code to its HTTP status.
absl::Status PublicError(const absl::Status& status, absl::string_view request_id);

// PublicError as a grpc::Status.
grpc::Status PublicStatus(const absl::Status& status, absl::string_view request_id);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_PUBLIC_STATUS_H_
