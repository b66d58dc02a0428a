// A small HTTP listener that serves a metrics::Registry at GET /metrics in Prometheus' text
// format, on its own port beside a server's gRPC port (`--metrics_port`), so Prometheus scrapes
// it without speaking gRPC. Anything else is 404; it reads no request body.
//
//   absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics =
//       MetricsHttpServer::Start("0.0.0.0", 9090, metrics::Registry::Default());
//   ... (*metrics)->port() ...
//   (*metrics)->Stop();  // or let it go out of scope
//
// Built on cpp-httplib (Debian's libcpp-httplib-dev). The port is bound without SO_REUSEPORT,
// so a second server on a busy port fails to start rather than sharing it.
#ifndef PIXTRAL_SERVICES_COMMON_METRICS_HTTP_SERVER_H_
#define PIXTRAL_SERVICES_COMMON_METRICS_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "services/common/metrics.h"

namespace httplib {
class Server;
}

namespace pixtral {

class MetricsHttpServer {
 public:
  // Binds host:port (port 0 picks a free one) and serves from a thread of its own. UNAVAILABLE if
  // the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, const metrics::Registry& registry);
  ~MetricsHttpServer();  // Stop()

  int port() const { return port_; }
  // Stops listening and joins the thread. Idempotent.
  void Stop();

 private:
  MetricsHttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_METRICS_HTTP_SERVER_H_
