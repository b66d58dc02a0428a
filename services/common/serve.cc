#include "services/common/serve.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "services/common/command_line.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/metrics_http_server.h"
#include "services/common/server_runner.h"
#include "services/common/server_security_flags.h"
#include "services/common/tls_credentials.h"

ABSL_FLAG(std::string, host, "0.0.0.0",
          "Address to listen on (gRPC and --metrics_port): 0.0.0.0 all IPv4 interfaces, [::] all, "
          "127.0.0.1 loopback only.");
ABSL_FLAG(int, port, 0, "Port to listen on; 0 picks a free one.");
ABSL_FLAG(int, metrics_port, -1,
          "Port serving Prometheus metrics at GET /metrics over HTTP, from before the model "
          "loads; -1 serves none, 0 picks a free one (logged).");
ABSL_FLAG(absl::Duration, max_connection_age, absl::Minutes(1),
          "Client connections are closed (calls on them finish first) after this long, so "
          "clients re-resolve and reach new replicas; inf keeps them.");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written here once the server is up.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "After SIGTERM, how long in-flight calls may finish before they are cancelled.");
ABSL_FLAG(int, max_message_bytes, 64 << 20, "Largest gRPC message received or sent.");

namespace pixtral {
namespace {

// Written to a temporary name and renamed, so a reader never sees a partial number.
absl::Status WritePortFile(const std::string& path, int port) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << port << "\n";
    if (!out.good()) return absl::InternalError(absl::StrCat("cannot write ", temporary));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", temporary, " to ", path));
  }
  return absl::OkStatus();
}

// gRPC takes "[::]:port"; httplib takes the host alone.
std::string UnbracketedHost(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

// While the model loads: a server with only the health service, NOT_SERVING, on the port the
// real one will use, so probes get an answer (and a second process on the port fails early).
std::unique_ptr<RunningServer>& LoadingServer() {
  static std::unique_ptr<RunningServer>* server = new std::unique_ptr<RunningServer>();
  return *server;
}

// The TLS/mTLS credentials of the flags, made once (the loading server and the real one share
// them); null for plaintext.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> CredentialsFromFlags() {
  static absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>* credentials =
      new absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>(
          MakeServerCredentials(ServerTlsFilesFromFlags()));
  return *credentials;
}

}  // namespace

absl::Status ServeUntilTerminated(const std::string& name,
                                  const std::vector<grpc::Service*>& services,
                                  const ServeOptions& serve) {
  const absl::Duration grace = absl::GetFlag(FLAGS_shutdown_grace);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = CredentialsFromFlags();
  if (!credentials.ok()) return credentials.status();
  int port = absl::GetFlag(FLAGS_port);
  std::string health_address = HealthAddressFromFlag();
  if (std::unique_ptr<RunningServer>& loading = LoadingServer(); loading != nullptr) {
    port = loading->port();  // the same ports, also with --port=0 or --health_port=0
    if (!health_address.empty()) health_address = absl::StrCat("0.0.0.0:", loading->health_port());
    loading->Shutdown();
    loading.reset();
  }
  absl::StatusOr<std::unique_ptr<RunningServer>> server = RunningServer::Start(
      services, {.address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", port),
                 .max_receive_message_bytes = absl::GetFlag(FLAGS_max_message_bytes),
                 .max_send_message_bytes = absl::GetFlag(FLAGS_max_message_bytes),
                 .shutdown_grace = grace,
                 .credentials = *std::move(credentials),
                 .reflection = ReflectionEnabledByFlag(),
                 .health_address = health_address,
                 .max_connection_age = absl::GetFlag(FLAGS_max_connection_age),
                 .health_names = serve.health_names,
                 .response_metadata = serve.response_metadata});
  if (!server.ok()) return server.status();
  std::cerr << name << ": serving on port " << (*server)->port();
  if ((*server)->health_port() > 0) std::cerr << ", health on " << (*server)->health_port();
  std::cerr << std::endl;
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    if (absl::Status status = WritePortFile(path, (*server)->port()); !status.ok()) return status;
  }
  absl::Notification stop_polling;
  std::thread readiness;
  if (serve.ready) {
    readiness = std::thread([&] {
      bool was_ready = true;
      do {
        const bool ready = serve.ready();
        if (ready != was_ready) {
          LOG(WARNING) << name << ": " << (ready ? "ready again" : "not ready") << ", health "
                       << (ready ? "SERVING" : "NOT_SERVING");
          (*server)->SetServing(ready);
          was_ready = ready;
        }
      } while (!stop_polling.WaitForNotificationWithTimeout(absl::Seconds(1)));
    });
  }
  const int signal = WaitForTerminationSignal();
  stop_polling.Notify();
  if (readiness.joinable()) readiness.join();
  std::cerr << name << ": signal " << signal << ", shutting down (grace "
            << absl::FormatDuration(grace) << ")" << std::endl;
  if (serve.on_signal) serve.on_signal();
  (*server)->Shutdown();
  std::cerr << name << ": stopped" << std::endl;
  return absl::OkStatus();
}

int ServerMain(int argc, char** argv, const std::string& name, absl::Status (*run)()) {
  BlockTerminationSignals();
  absl::SetProgramUsageMessage(absl::StrCat("The Pixtral ", name, " server.\nUsage: ", argv[0],
                                            " --model_dir=DIR [--port=PORT] [flags...]"));
  HandleHelpAndVersion(argc, argv);
  absl::ParseCommandLine(argc, argv);
  InitServerLogging(name);
  // Up before the model loads, so a scrape sees the load and the process from its start.
  std::unique_ptr<MetricsHttpServer> metrics;
  if (const int metrics_port = absl::GetFlag(FLAGS_metrics_port); metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started = MetricsHttpServer::Start(
        UnbracketedHost(absl::GetFlag(FLAGS_host)), metrics_port, metrics::Registry::Default());
    if (!started.ok()) {
      std::cerr << name << ": " << started.status() << std::endl;
      return 1;
    }
    metrics = *std::move(started);
    LOG(INFO) << name << ": metrics on port " << metrics->port();
  }
  // Same credentials and health listener as the real server, so TLS clients and --health_port
  // probes alike see NOT_SERVING rather than a refused connection.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = CredentialsFromFlags();
  if (!credentials.ok()) {
    std::cerr << name << ": " << credentials.status() << std::endl;
    return 1;
  }
  absl::StatusOr<std::unique_ptr<RunningServer>> loading = RunningServer::Start(
      {}, {.address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)),
           .shutdown_grace = absl::ZeroDuration(),
           .credentials = *std::move(credentials),
           .health_address = HealthAddressFromFlag()});
  if (!loading.ok()) {
    std::cerr << name << ": " << loading.status() << std::endl;
    return 1;
  }
  (*loading)->SetServing(false);
  LOG(INFO) << name << ": NOT_SERVING on port " << (*loading)->port() << " while loading";
  LoadingServer() = *std::move(loading);
  absl::Status status = run();
  LoadingServer().reset();  // run() failed before serving
  if (!status.ok()) {
    std::cerr << name << ": " << status << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace pixtral
