#include "common/image_fetcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

// A minimal HTTP server on 127.0.0.1 and an ephemeral port. Each connection runs on its own
// thread: the handler gets the request path and writes a raw HTTP response to the socket.
class TestHttpServer {
 public:
  using Handler = std::function<void(const std::string& path, int fd, const TestHttpServer&)>;

  explicit TestHttpServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), length), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestHttpServer() {
    stopping_ = true;
    accept_thread_.join();
    absl::MutexLock lock(&mu_);
    for (std::thread& t : connections_) t.join();
    close(listen_fd_);
  }

  std::string Url(absl::string_view path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  int port() const { return port_; }
  bool stopping() const { return stopping_; }

  static bool Send(int fd, absl::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(n);
    }
    return true;
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      absl::MutexLock lock(&mu_);
      connections_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 2000) <= 0) break;
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      request.append(buffer, n);
    }
    // "GET /path HTTP/1.1"
    const size_t begin = request.find(' ');
    const size_t end = request.find(' ', begin + 1);
    if (begin != std::string::npos && end != std::string::npos) {
      handler_(request.substr(begin + 1, end - begin - 1), fd, *this);
    }
    shutdown(fd, SHUT_RDWR);
    close(fd);
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  absl::Mutex mu_;
  std::vector<std::thread> connections_ ABSL_GUARDED_BY(mu_);
};

const std::string kImage = "\x89PNG\r\n\x1a\n pretend image bytes";

std::string Response(absl::string_view status, absl::string_view headers, absl::string_view body) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\n", headers, "Content-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", body);
}

void Route(const std::string& path, int fd, const TestHttpServer& server) {
  int hops = 0;
  if (path == "/image.png") {
    TestHttpServer::Send(fd, Response("200 OK", "Content-Type: image/png\r\n", kImage));
  } else if (path == "/page") {
    TestHttpServer::Send(fd, Response("200 OK", "Content-Type: text/html\r\n", "<html></html>"));
  } else if (path == "/untyped") {
    TestHttpServer::Send(fd, Response("200 OK", "", kImage));
  } else if (path == "/big") {
    TestHttpServer::Send(
        fd, Response("200 OK", "Content-Type: image/png\r\n", std::string(2 << 20, 'x')));
  } else if (path == "/big-unannounced") {
    // No Content-Length: the size is only known by counting.
    TestHttpServer::Send(fd,
                         "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n");
    const std::string chunk(64 << 10, 'x');
    for (int i = 0; i < 32 && TestHttpServer::Send(fd, chunk); ++i) {
    }
  } else if (path == "/slow") {
    // Announces 100 bytes, then trickles one every 100 ms.
    TestHttpServer::Send(
        fd, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n");
    for (int i = 0; i < 100 && !server.stopping() && TestHttpServer::Send(fd, "x"); ++i) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  } else if (absl::StartsWith(path, "/redirect/") && absl::SimpleAtoi(path.substr(10), &hops)) {
    const std::string next = hops == 1 ? "/image.png" : absl::StrCat("/redirect/", hops - 1);
    TestHttpServer::Send(fd, Response("302 Found", absl::StrCat("Location: ", next, "\r\n"), ""));
  } else if (path == "/redirect-to-ftp") {
    TestHttpServer::Send(fd, Response("302 Found", "Location: ftp://127.0.0.1/x.png\r\n", ""));
  } else if (path == "/error") {
    TestHttpServer::Send(fd, Response("500 Internal Server Error", "", "oops"));
  } else {
    TestHttpServer::Send(fd, Response("404 Not Found", "Content-Type: text/plain\r\n", "no"));
  }
}

class ImageFetcherHttpTest : public ::testing::Test {
 protected:
  ImageFetcher::Options LocalOptions() {
    ImageFetcher::Options options;
    options.allow_private_addresses = true;  // the test server is on loopback
    options.timeout = absl::Seconds(5);
    return options;
  }
  TestHttpServer server_{Route};
};

void ExpectCode(const absl::StatusOr<std::string>& result, absl::StatusCode code,
                const std::string& message) {
  EXPECT_EQ(result.status().code(), code) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(message));
}

TEST_F(ImageFetcherHttpTest, DownloadsAnImage) {
  absl::StatusOr<std::string> bytes = ImageFetcher(LocalOptions()).Fetch(server_.Url("/image.png"));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, kImage);
}

TEST_F(ImageFetcherHttpTest, RefusesLoopbackByDefault) {
  ExpectCode(ImageFetcher().Fetch(server_.Url("/image.png")), absl::StatusCode::kPermissionDenied,
             "refusing to connect to 127.0.0.1");
}

TEST_F(ImageFetcherHttpTest, RefusesHostnamesThatResolveToLoopback) {
  // The check is on the resolved address, so a name cannot smuggle a private address in.
  ExpectCode(ImageFetcher().Fetch(absl::StrCat("http://localhost:", server_.port(), "/image.png")),
             absl::StatusCode::kPermissionDenied, "refusing to connect");
}

TEST_F(ImageFetcherHttpTest, RefusesOtherLiteralForms) {
  for (const std::string host : {"[::1]", "0.0.0.0", "127.1", "2130706433", "[::ffff:127.0.0.1]"}) {
    ExpectCode(ImageFetcher().Fetch(absl::StrCat("http://", host, ":", server_.port(), "/")),
               absl::StatusCode::kPermissionDenied, "refusing to connect");
  }
}

TEST_F(ImageFetcherHttpTest, FollowsRedirectsUpToTheLimit) {
  ImageFetcher::Options options = LocalOptions();
  options.max_redirects = 3;
  absl::StatusOr<std::string> bytes = ImageFetcher(options).Fetch(server_.Url("/redirect/3"));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, kImage);
  ExpectCode(ImageFetcher(options).Fetch(server_.Url("/redirect/4")),
             absl::StatusCode::kInvalidArgument, "redirect");
}

TEST_F(ImageFetcherHttpTest, RedirectsOnlyToHttp) {
  ExpectCode(ImageFetcher(LocalOptions()).Fetch(server_.Url("/redirect-to-ftp")),
             absl::StatusCode::kInvalidArgument, "fetching");
}

TEST_F(ImageFetcherHttpTest, RequiresAnImageContentType) {
  ExpectCode(ImageFetcher(LocalOptions()).Fetch(server_.Url("/page")),
             absl::StatusCode::kInvalidArgument, "content type is text/html");
  ExpectCode(ImageFetcher(LocalOptions()).Fetch(server_.Url("/untyped")),
             absl::StatusCode::kInvalidArgument, "content type is missing");
  ImageFetcher::Options lenient = LocalOptions();
  lenient.require_image_content_type = false;
  EXPECT_TRUE(ImageFetcher(lenient).Fetch(server_.Url("/untyped")).ok());
}

TEST_F(ImageFetcherHttpTest, CapsTheSize) {
  ImageFetcher::Options options = LocalOptions();
  options.max_bytes = 1 << 20;
  ExpectCode(ImageFetcher(options).Fetch(server_.Url("/big")), absl::StatusCode::kResourceExhausted,
             "larger than the limit");
  ExpectCode(ImageFetcher(options).Fetch(server_.Url("/big-unannounced")),
             absl::StatusCode::kResourceExhausted, "larger than the limit");
}

TEST_F(ImageFetcherHttpTest, GivesUpOnSlowServers) {
  ImageFetcher::Options options = LocalOptions();
  options.timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  ExpectCode(ImageFetcher(options).Fetch(server_.Url("/slow")), absl::StatusCode::kDeadlineExceeded,
             "fetching");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(ImageFetcherHttpTest, HttpErrorsAreErrors) {
  ExpectCode(ImageFetcher(LocalOptions()).Fetch(server_.Url("/missing")),
             absl::StatusCode::kInvalidArgument, "HTTP 404");
  ExpectCode(ImageFetcher(LocalOptions()).Fetch(server_.Url("/error")),
             absl::StatusCode::kUnavailable, "HTTP 500");
}

TEST(ImageFetcherTest, ClosedPortIsUnavailable) {
  int port = 0;
  {
    TestHttpServer closed(Route);
    port = closed.port();
  }
  ImageFetcher::Options options;
  options.allow_private_addresses = true;
  ExpectCode(ImageFetcher(options).Fetch(absl::StrCat("http://127.0.0.1:", port, "/x")),
             absl::StatusCode::kUnavailable, "fetching");
}

// .invalid never resolves (RFC 2606): the URL is the client's mistake, not a server outage that
// a retry could outlast.
TEST(ImageFetcherTest, AHostThatDoesNotResolveIsInvalidArgument) {
  ExpectCode(ImageFetcher(ImageFetcher::Options()).Fetch("http://no-such-host.invalid/cat.png"),
             absl::StatusCode::kInvalidArgument, "no-such-host.invalid");
}

TEST(ImageFetcherTest, DataUris) {
  const std::string payload = absl::Base64Escape(kImage);
  absl::StatusOr<std::string> bytes = ImageFetcher().Fetch("data:image/png;base64," + payload);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, kImage);
  EXPECT_TRUE(ImageFetcher().Fetch("DATA:IMAGE/JPEG;BASE64," + payload).ok());

  ExpectCode(ImageFetcher().Fetch("data:image/png," + payload), absl::StatusCode::kInvalidArgument,
             "data:image/<type>;base64");
  ExpectCode(ImageFetcher().Fetch("data:text/plain;base64," + payload),
             absl::StatusCode::kInvalidArgument, "data:image/<type>;base64");
  ExpectCode(ImageFetcher().Fetch("data:image/png;base64"), absl::StatusCode::kInvalidArgument,
             "data:image/<type>;base64");
  ExpectCode(ImageFetcher().Fetch("data:image/png;base64,****"), absl::StatusCode::kInvalidArgument,
             "not valid base64");
  ExpectCode(ImageFetcher().Fetch("data:image/png;base64,"), absl::StatusCode::kInvalidArgument,
             "no data");

  ImageFetcher::Options small;
  small.max_bytes = 10;
  ExpectCode(ImageFetcher(small).Fetch("data:image/png;base64," + payload),
             absl::StatusCode::kResourceExhausted, "the limit is 10");
}

class ImageFetcherFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("TEST_TMPDIR");
    path_ = absl::StrCat(dir != nullptr ? dir : "/tmp", "/fetcher_test_image.png");
    std::ofstream(path_, std::ios::binary) << kImage;
    options_.allow_local_files = true;
  }
  std::string path_;
  ImageFetcher::Options options_;
};

TEST_F(ImageFetcherFileTest, ReadsPathsAndFileUrls) {
  for (const std::string& url : {path_, "file://" + path_, "file://localhost" + path_}) {
    absl::StatusOr<std::string> bytes = ImageFetcher(options_).Fetch(url);
    ASSERT_TRUE(bytes.ok()) << url << ": " << bytes.status();
    EXPECT_EQ(*bytes, kImage);
  }
}

TEST_F(ImageFetcherFileTest, RefusedUnlessEnabled) {
  ExpectCode(ImageFetcher().Fetch(path_), absl::StatusCode::kPermissionDenied, "not enabled");
  ExpectCode(ImageFetcher().Fetch("file://" + path_), absl::StatusCode::kPermissionDenied,
             "not enabled");
}

TEST_F(ImageFetcherFileTest, BadPaths) {
  ExpectCode(ImageFetcher(options_).Fetch(path_ + ".missing"), absl::StatusCode::kNotFound,
             "cannot open");
  ExpectCode(ImageFetcher(options_).Fetch("/"), absl::StatusCode::kInvalidArgument,
             "not a regular file");
  ExpectCode(ImageFetcher(options_).Fetch("file://relative/x.png"),
             absl::StatusCode::kInvalidArgument, "absolute");
  options_.max_bytes = 4;
  ExpectCode(ImageFetcher(options_).Fetch(path_), absl::StatusCode::kResourceExhausted,
             "the limit is 4");
}

TEST(ImageFetcherTest, UnsupportedSchemesAndEmptyUrls) {
  ExpectCode(ImageFetcher().Fetch("ftp://example.com/x.png"), absl::StatusCode::kInvalidArgument,
             "unsupported image URL scheme");
  ExpectCode(ImageFetcher().Fetch(""), absl::StatusCode::kInvalidArgument, "empty");
  ExpectCode(ImageFetcher().Fetch("http://" + std::string(10000, 'a')),
             absl::StatusCode::kInvalidArgument, "the limit is");
}

TEST(IsPublicIpAddressTest, PublicAddresses) {
  for (const char* ip :
       {"8.8.8.8", "93.184.216.34", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"}) {
    EXPECT_TRUE(IsPublicIpAddress(ip)) << ip;
  }
}

TEST(IsPublicIpAddressTest, NonPublicAddresses) {
  for (const char* ip : {"127.0.0.1",
                         "127.255.255.254",
                         "10.1.2.3",
                         "172.16.0.1",
                         "172.31.255.255",
                         "192.168.1.1",
                         "169.254.169.254",
                         "100.64.0.1",
                         "0.0.0.0",
                         "255.255.255.255",
                         "224.0.0.1",
                         "240.0.0.1",
                         "192.0.2.1",
                         "198.18.0.1",
                         "203.0.113.9",
                         "::",
                         "::1",
                         "fe80::1",
                         "fec0::1",
                         "fc00::1",
                         "fd12:3456::1",
                         "ff02::1",
                         "::ffff:127.0.0.1",
                         "::ffff:10.0.0.1",
                         "::127.0.0.1",
                         "64:ff9b::7f00:1",
                         "2002:7f00:1::",
                         "2002:a9fe:a9fe::",
                         "2001:db8::1",
                         "2001:0:4136:e378::1",
                         "100::1",
                         "not an address",
                         "",
                         "1.2.3"}) {
    EXPECT_FALSE(IsPublicIpAddress(ip)) << ip;
  }
}

}  // namespace
}  // namespace pixtral
