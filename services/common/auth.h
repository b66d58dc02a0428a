// Bearer-token authentication for the public APIs (the gateway's gRPC API and its HTTP front).
// The tokens come from a file, one a line (several, so one can be rotated while the others stay
// valid); a caller sends one as `authorization: Bearer <token>` (gRPC metadata or HTTP header).
//
//   absl::StatusOr<std::shared_ptr<const BearerTokens>> tokens =
//       BearerTokens::FromFile("/secrets/gateway-tokens");
//   absl::Status allowed = (*tokens)->Check(authorization_header_value);  // UNAUTHENTICATED
//
// A token file is re-read when it changes (checked at most every `reload_interval`), so tokens
// rotate without a restart: add the new token, move clients over, remove the old one. A file
// that stops parsing keeps the last good tokens (and logs why).
//
// The check itself knows nothing of gRPC or HTTP: the gRPC shell is `CheckCallToken`
// (grpc_auth.h); an HTTP server passes its `Authorization` header's value to Check() and answers
// 401 with `WWW-Authenticate: Bearer` when it fails.
#ifndef PIXTRAL_SERVICES_COMMON_AUTH_H_
#define PIXTRAL_SERVICES_COMMON_AUTH_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pixtral {

class BearerTokens {
 public:
  // Reads `path`: one token a line; surrounding whitespace and blank lines are ignored.
  // InvalidArgument for an unreadable file, a file with no token (it would refuse everyone), or
  // a token with whitespace or control characters inside (it could never be sent intact).
  static absl::StatusOr<std::shared_ptr<const BearerTokens>> FromFile(
      const std::string& path, absl::Duration reload_interval = absl::Seconds(10));
  static absl::StatusOr<std::shared_ptr<const BearerTokens>> FromText(absl::string_view text);

  // OK when `authorization` is "Bearer <one of the tokens>" (the scheme's case is free, as
  // RFC 6750 allows). UNAUTHENTICATED otherwise, with a message that says what was wrong
  // (missing, not a bearer token, unknown token) but never echoes what was sent. Comparisons take
  // the same time wherever a token differs, so timing does not reveal a token's prefix.
  absl::Status Check(absl::string_view authorization) const;

  size_t size() const;

 private:
  BearerTokens() = default;
  static absl::StatusOr<std::vector<std::string>> Parse(absl::string_view text);
  // Re-reads the file if it is time to look and it changed.
  void MaybeReload() const;

  std::string path_;  // empty: FromText, never reloaded
  absl::Duration reload_interval_;
  mutable absl::Mutex mutex_;
  mutable std::vector<std::string> tokens_ ABSL_GUARDED_BY(mutex_);
  mutable absl::Time next_look_ ABSL_GUARDED_BY(mutex_);
  mutable std::string file_stamp_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_AUTH_H_
