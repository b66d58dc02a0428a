#include "services/common/metrics_http_server.h"

#include <sys/socket.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace pixtral {
namespace {

// SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let two processes
// share the port silently.
void SetSocketOptions(socket_t socket) {
  int yes = 1;
  setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, const metrics::Registry& registry) {
  std::unique_ptr<MetricsHttpServer> running(new MetricsHttpServer());
  running->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *running->server_;
  // A scrape every few seconds needs little: two threads, short timeouts, no request bodies.
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  server.set_socket_options(SetSocketOptions);
  server.set_read_timeout(5);
  server.set_write_timeout(5);
  server.set_keep_alive_max_count(100);
  server.set_payload_max_length(0);
  server.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry.Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (port == 0) {
    running->port_ = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    running->port_ = port;
  }
  if (running->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for metrics on ", host, ":", port));
  }
  running->thread_ = std::thread([&server] { server.listen_after_bind(); });
  // Stop() before the loop has started would be lost (httplib only stops a running server).
  for (int i = 0; i < 5000 && !server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return running;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

}  // namespace pixtral
