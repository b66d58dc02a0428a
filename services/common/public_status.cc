#include "services/common/public_status.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace pixtral {
namespace {

// Text that only the transport or the libraries under it write: never the gateway's own words.
bool NamesInternals(absl::string_view message) {
  const std::string lower = absl::AsciiStrToLower(message);
  for (absl::string_view marker :
       {"message larger than max", "ipv4:", "ipv6:", "unix:", "OpenSSL", "SSL_", "Socket closed",
        "Connection reset", "failed to connect", "Cancelling all calls", "Stream removed",
        "connections to all backends failing", "DNS resolution", "upstream"}) {
    if (absl::StrContains(lower, absl::AsciiStrToLower(marker))) return true;
  }
  return false;
}

// The fixed sentence that replaces a hidden message.
absl::string_view PublicMessage(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
      return "the service is temporarily unavailable; retry later";
    case absl::StatusCode::kDeadlineExceeded:
      return "the deadline passed before the request was complete";
    case absl::StatusCode::kCancelled:
      return "the request was cancelled";
    case absl::StatusCode::kResourceExhausted:
      return "the request is too large for this service";
    default:
      return "internal error";
  }
}

}  // namespace

grpc::Status PublicStatus(const absl::Status& status, absl::string_view request_id) {
  const absl::Status public_error = PublicError(status, request_id);
  if (public_error.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(public_error.code()),
                      std::string(public_error.message()));
}

absl::Status PublicError(const absl::Status& status, absl::string_view request_id) {
  if (status.ok()) return absl::OkStatus();
  const absl::StatusCode code = status.code();
  bool hide;
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kResourceExhausted:
      hide = NamesInternals(status.message());
      break;
    default:
      hide = true;
  }
  if (!hide) return status;
  LOG(WARNING) << "request " << request_id << ": " << status;
  return absl::Status(code, absl::StrCat(PublicMessage(code), " (request id ", request_id, ")"));
}

}  // namespace pixtral
