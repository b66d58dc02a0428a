// Loading the encoded bytes of an image a request names: a `data:image/...;base64,` URI, an
// http(s) URL, or (where the operator enables it) a local file.
//
// URLs come from untrusted clients, so downloads are bounded (bytes, wall time, redirects), must
// answer with an image/* content type, and by default may not reach loopback, private,
// link-local or otherwise non-public addresses (server-side request forgery). The address check
// runs on every socket libcurl opens, after DNS resolution and on every redirect hop, so neither
// a hostname that resolves to 127.0.0.1 nor a redirect to 10.0.0.1 gets through. Proxies from the
// environment are ignored for the same reason.
//
//   ImageFetcher fetcher;  // defaults: 20 MB, 10 s, 3 redirects, public addresses only
//   absl::StatusOr<std::string> bytes = fetcher.Fetch("https://example.com/cat.png");
//   if (!bytes.ok()) return bytes.status();
//   absl::StatusOr<PreprocessedImage> image = PreprocessImage(*bytes, config);
//
// Errors: InvalidArgument (malformed URL or data URI, unsupported scheme, HTTP 4xx, wrong content
// type, too many redirects), PermissionDenied (a refused address; local files not enabled),
// ResourceExhausted (over max_bytes), DeadlineExceeded (over the timeout), NotFound (missing
// local file), Unavailable (DNS, connection or server failure).
#ifndef PIXTRAL_COMMON_IMAGE_FETCHER_H_
#define PIXTRAL_COMMON_IMAGE_FETCHER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pixtral {

class ImageFetcher {
 public:
  struct Options {
    // Largest image accepted from any source, after base64 decoding for data URIs.
    int64_t max_bytes = int64_t{20} << 20;
    // Whole download, connection and redirects included.
    absl::Duration timeout = absl::Seconds(10);
    int max_redirects = 3;
    // Lets http(s) reach loopback, private and link-local addresses: for tests and trusted
    // deployments only.
    bool allow_private_addresses = false;
    // Lets `file://...` URLs and plain paths read the local filesystem (mistral-chat on a
    // workstation; never a public gateway).
    bool allow_local_files = false;
    // Refuse http(s) answers whose Content-Type is not image/*.
    bool require_image_content_type = true;
    std::string user_agent = "pixtral-serving";
  };

  ImageFetcher() : ImageFetcher(Options()) {}
  explicit ImageFetcher(Options options);

  // Thread-safe; each call uses its own connection.
  absl::StatusOr<std::string> Fetch(absl::string_view url) const;

 private:
  absl::StatusOr<std::string> FetchDataUri(absl::string_view uri) const;
  absl::StatusOr<std::string> FetchLocalFile(absl::string_view path) const;
  absl::StatusOr<std::string> FetchHttp(absl::string_view url) const;

  Options options_;
};

// Whether an IPv4 or IPv6 address literal ("93.184.216.34", "2606:2800::1") is a public unicast
// address: not loopback, private, carrier-grade NAT, link-local, unique-local, multicast,
// documentation, benchmarking or reserved, including IPv4 addresses embedded in IPv6
// (::ffff:10.0.0.1, 64:ff9b::a00:1, 2002:a00:1::). Anything unparsable is not public.
bool IsPublicIpAddress(absl::string_view literal);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_IMAGE_FETCHER_H_
