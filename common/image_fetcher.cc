#include "common/image_fetcher.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pixtral {
namespace {

constexpr size_t kMaxUrlLength = 8192;  // for http(s) URLs and paths; data URIs are size-capped

// --- address classification ---

struct Ipv4Block {
  uint32_t network;
  int prefix_bits;
};

// Everything in IANA's special-purpose registry that is not globally reachable, plus multicast.
constexpr Ipv4Block kNonPublicIpv4[] = {
    {0x00000000, 8},   // 0.0.0.0/8 "this network"
    {0x0A000000, 8},   // 10.0.0.0/8 private
    {0x64400000, 10},  // 100.64.0.0/10 carrier-grade NAT
    {0x7F000000, 8},   // 127.0.0.0/8 loopback
    {0xA9FE0000, 16},  // 169.254.0.0/16 link-local (cloud metadata services live here)
    {0xAC100000, 12},  // 172.16.0.0/12 private
    {0xC0000000, 24},  // 192.0.0.0/24 protocol assignments
    {0xC0000200, 24},  // 192.0.2.0/24 documentation
    {0xC0586300, 24},  // 192.88.99.0/24 6to4 relay anycast
    {0xC0A80000, 16},  // 192.168.0.0/16 private
    {0xC6120000, 15},  // 198.18.0.0/15 benchmarking
    {0xC6336400, 24},  // 198.51.100.0/24 documentation
    {0xCB007100, 24},  // 203.0.113.0/24 documentation
    {0xE0000000, 4},   // 224.0.0.0/4 multicast
    {0xF0000000, 4},   // 240.0.0.0/4 reserved, broadcast
};

bool IsPublicIpv4(const uint8_t* a) {
  const uint32_t ip =
      (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | a[3];
  for (const Ipv4Block& block : kNonPublicIpv4) {
    const uint32_t mask = ~uint32_t{0} << (32 - block.prefix_bits);
    if ((ip & mask) == block.network) return false;
  }
  return true;
}

bool IsPublicIpv6(const uint8_t* a) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  static constexpr uint8_t kNat64Prefix[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
  // Addresses that carry an IPv4 address are judged by it.
  if (std::memcmp(a, kMappedPrefix, 12) == 0) return IsPublicIpv4(a + 12);  // ::ffff:0:0/96
  if (std::memcmp(a, kNat64Prefix, 12) == 0) return IsPublicIpv4(a + 12);   // 64:ff9b::/96
  if (a[0] == 0x20 && a[1] == 0x02) return IsPublicIpv4(a + 2);             // 2002::/16 6to4
  // Otherwise only global unicast (2000::/3) is public, less its special blocks. This leaves out
  // ::, ::1, IPv4-compatible ::/96, 100::/64, fc00::/7, fe80::/10, fec0::/10 and ff00::/8.
  if ((a[0] & 0xE0) != 0x20) return false;
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8) return false;  // 2001:db8::/32
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 0x02) return false;  // 2001::/23, Teredo included
  return true;
}

// --- libcurl plumbing ---

void InitCurlOnce() {
  static absl::once_flag once;
  absl::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlCleanup {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};

// State shared with libcurl's callbacks for one download.
struct Transfer {
  CURL* curl = nullptr;
  int64_t max_bytes = 0;
  bool allow_private_addresses = false;
  std::string body;
  bool too_large = false;
  std::string refused_address;
};

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const size_t length = size * count;
  long status = 0;
  curl_easy_getinfo(transfer->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300 && status < 400) return length;  // a redirect's own body: drop it
  if (static_cast<int64_t>(transfer->body.size() + length) > transfer->max_bytes) {
    transfer->too_large = true;
    return 0;  // anything but `length` aborts the transfer
  }
  transfer->body.append(data, length);
  return length;
}

// libcurl calls this for every connection it opens, with the resolved address: the one place
// where the address checked is the address used.
curl_socket_t OpenCheckedSocket(void* user, curlsocktype /*purpose*/, curl_sockaddr* address) {
  auto* transfer = static_cast<Transfer*>(user);
  if (!transfer->allow_private_addresses) {
    char text[INET6_ADDRSTRLEN] = "an unknown address family";
    bool is_public = false;
    if (address->family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&address->addr);
      const auto* bytes = reinterpret_cast<const uint8_t*>(&in->sin_addr);
      is_public = IsPublicIpv4(bytes);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    } else if (address->family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address->addr);
      is_public = IsPublicIpv6(in6->sin6_addr.s6_addr);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    }
    if (!is_public) {
      transfer->refused_address = text;
      return CURL_SOCKET_BAD;
    }
  }
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

absl::Status CurlStatus(CURLcode code, const char* message, absl::string_view url) {
  const std::string detail =
      absl::StrCat("fetching ", url, ": ", message[0] != '\0' ? message : curl_easy_strerror(code));
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(detail);
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_HOST:  // the client's URL names no host: retrying cannot help
      return absl::InvalidArgumentError(detail);
    case CURLE_FILESIZE_EXCEEDED:
      return absl::ResourceExhaustedError(detail);
    default:
      return absl::UnavailableError(detail);
  }
}

}  // namespace

bool IsPublicIpAddress(absl::string_view literal) {
  const std::string text(literal);
  uint8_t bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1) return IsPublicIpv4(bytes);
  if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) return IsPublicIpv6(bytes);
  return false;
}

ImageFetcher::ImageFetcher(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::string> ImageFetcher::Fetch(absl::string_view url) const {
  if (url.empty()) return absl::InvalidArgumentError("image URL is empty");
  if (absl::StartsWithIgnoreCase(url, "data:")) return FetchDataUri(url);
  if (url.size() > kMaxUrlLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("image URL is ", url.size(), " characters; the limit is ", kMaxUrlLength));
  }
  if (absl::StartsWithIgnoreCase(url, "http://") || absl::StartsWithIgnoreCase(url, "https://")) {
    return FetchHttp(url);
  }
  if (absl::StartsWithIgnoreCase(url, "file://")) {
    absl::string_view path = url.substr(7);
    if (absl::StartsWithIgnoreCase(path, "localhost/")) path.remove_prefix(9);
    if (!absl::StartsWith(path, "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat("file URL must name an absolute local path: ", url));
    }
    return FetchLocalFile(path);
  }
  if (absl::StrContains(url, "://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported image URL scheme (expected http, https, data or file): ", url.substr(0, 40)));
  }
  return FetchLocalFile(url);
}

absl::StatusOr<std::string> ImageFetcher::FetchDataUri(absl::string_view uri) const {
  const size_t comma = uri.find(',');
  const absl::string_view media = uri.substr(5, comma == absl::string_view::npos ? 0 : comma - 5);
  if (comma == absl::string_view::npos || !absl::StartsWithIgnoreCase(media, "image/") ||
      !absl::EndsWithIgnoreCase(media, ";base64")) {
    return absl::InvalidArgumentError(
        "data URI must have the form data:image/<type>;base64,<data>");
  }
  const absl::string_view payload = uri.substr(comma + 1);
  // Base64 holds 3 bytes in 4 characters: refuse oversized payloads before decoding them.
  if (static_cast<int64_t>(payload.size() / 4) * 3 > options_.max_bytes + 3) {
    return absl::ResourceExhaustedError(absl::StrCat("data URI holds about ",
                                                     payload.size() / 4 * 3,
                                                     " bytes; the limit is ", options_.max_bytes));
  }
  std::string bytes;
  if (!absl::Base64Unescape(payload, &bytes)) {
    return absl::InvalidArgumentError("data URI payload is not valid base64");
  }
  if (bytes.empty()) return absl::InvalidArgumentError("data URI holds no data");
  if (static_cast<int64_t>(bytes.size()) > options_.max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("data URI holds ", bytes.size(), " bytes; the limit is ", options_.max_bytes));
  }
  return bytes;
}

absl::StatusOr<std::string> ImageFetcher::FetchLocalFile(absl::string_view path) const {
  if (!options_.allow_local_files) {
    return absl::PermissionDeniedError(
        "local image files are not enabled here; send the image as a data URI or bytes");
  }
  const std::string name(path);
  const int fd = open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message =
        absl::StrCat("cannot open image file ", name, ": ", strerror(error));
    if (error == ENOENT || error == ENOTDIR) return absl::NotFoundError(message);
    if (error == EACCES) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  absl::Cleanup closer = [fd] { close(fd); };
  struct stat info;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("not a regular file: ", name));
  }
  if (info.st_size > options_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("image file ", name, " is ", info.st_size,
                                                     " bytes; the limit is ", options_.max_bytes));
  }
  std::string bytes(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::DataLossError(absl::StrCat("short read from image file ", name));
    done += static_cast<size_t>(n);
  }
  return bytes;
}

absl::StatusOr<std::string> ImageFetcher::FetchHttp(absl::string_view url) const {
  InitCurlOnce();
  std::unique_ptr<CURL, CurlCleanup> curl(curl_easy_init());
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  CURL* handle = curl.get();
  Transfer transfer;
  transfer.curl = handle;
  transfer.max_bytes = options_.max_bytes;
  transfer.allow_private_addresses = options_.allow_private_addresses;
  char error[CURL_ERROR_SIZE] = "";
  const std::string url_string(url);
  const long timeout_ms =
      static_cast<long>(std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.timeout)));

  curl_easy_setopt(handle, CURLOPT_URL, url_string.c_str());
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(handle, CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects));
  curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  // A proxy from the environment would connect on our behalf, past the address check.
  curl_easy_setopt(handle, CURLOPT_PROXY, "");
  // No Accept-Encoding: a compressed body could inflate far past max_bytes.
  curl_easy_setopt(handle, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.max_bytes));
  curl_easy_setopt(handle, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(handle, CURLOPT_OPENSOCKETFUNCTION, OpenCheckedSocket);
  curl_easy_setopt(handle, CURLOPT_OPENSOCKETDATA, &transfer);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &transfer);

  const CURLcode code = curl_easy_perform(handle);
  if (!transfer.refused_address.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("fetching ", url, ": refusing to connect to ", transfer.refused_address,
                     " (loopback, private, link-local and reserved addresses are not allowed)"));
  }
  if (transfer.too_large || code == CURLE_FILESIZE_EXCEEDED) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "fetching ", url, ": image is larger than the limit of ", options_.max_bytes, " bytes"));
  }
  if (code != CURLE_OK) return CurlStatus(code, error, url);

  long status = 0;
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300) {
    const std::string message = absl::StrCat("fetching ", url, ": server answered HTTP ", status);
    if (status >= 400 && status < 500) return absl::InvalidArgumentError(message);
    return absl::UnavailableError(message);
  }
  const char* content_type = nullptr;
  curl_easy_getinfo(handle, CURLINFO_CONTENT_TYPE, &content_type);
  if (options_.require_image_content_type &&
      (content_type == nullptr || !absl::StartsWithIgnoreCase(content_type, "image/"))) {
    return absl::InvalidArgumentError(
        absl::StrCat("fetching ", url, ": content type is ",
                     content_type == nullptr ? "missing" : content_type, ", not image/*"));
  }
  if (transfer.body.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("fetching ", url, ": empty response"));
  }
  return std::move(transfer.body);
}

}  // namespace pixtral
