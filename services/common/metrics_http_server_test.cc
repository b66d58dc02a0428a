// Scrapes the listener with libcurl, a real HTTP client, as Prometheus would.
#include "services/common/metrics_http_server.h"

#include <curl/curl.h>

#include <string>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

struct Reply {
  long status = 0;
  std::string content_type;
  std::string body;
};

size_t Append(char* data, size_t size, size_t count, void* body) {
  static_cast<std::string*>(body)->append(data, size * count);
  return size * count;
}

Reply Fetch(const std::string& url, const char* method = "GET") {
  Reply reply;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
  if (std::string(method) == "POST") curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "x=1");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
    char* type = nullptr;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
    if (type != nullptr) reply.content_type = type;
  }
  curl_easy_cleanup(curl);
  return reply;
}

std::string UrlOf(const MetricsHttpServer& server, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(server.port()) + path;
}

TEST(MetricsHttpServerTest, ServesTheRegistryAsPrometheusText) {
  metrics::Registry registry;
  metrics::Counter& counter = registry.GetCounter("pixtral_scraped_total", "Scrape test.");
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1", 0, registry);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  counter.Increment(7);
  Reply reply = Fetch(UrlOf(**server, "/metrics"));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(reply.body,
            "# HELP pixtral_scraped_total Scrape test.\n"
            "# TYPE pixtral_scraped_total counter\n"
            "pixtral_scraped_total 7\n");

  // Each scrape renders the current values.
  counter.Increment();
  EXPECT_NE(Fetch(UrlOf(**server, "/metrics")).body.find("pixtral_scraped_total 8\n"),
            std::string::npos);
}

TEST(MetricsHttpServerTest, OtherPathsAndMethodsAreRefused) {
  metrics::Registry registry;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1", 0, registry);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(Fetch(UrlOf(**server, "/")).status, 404);
  EXPECT_EQ(Fetch(UrlOf(**server, "/metrics/../etc/passwd")).status, 404);
  EXPECT_NE(Fetch(UrlOf(**server, "/metrics"), "POST").status, 200);
}

TEST(MetricsHttpServerTest, ABusyPortFailsToStartInsteadOfSharing) {
  metrics::Registry registry;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> first =
      MetricsHttpServer::Start("127.0.0.1", 0, registry);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start("127.0.0.1", (*first)->port(), registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(MetricsHttpServerTest, StopsPromptlyAndIsIdempotent) {
  metrics::Registry registry;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1", 0, registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = UrlOf(**server, "/metrics");
  (*server)->Stop();
  (*server)->Stop();
  EXPECT_EQ(Fetch(url).status, 0);  // connection refused
}

}  // namespace
}  // namespace pixtral
