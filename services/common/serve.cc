#include "services/common/serve.h"

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/common/command_line.h"
#include "services/common/server_runner.h"
#include "services/common/server_security_flags.h"
#include "services/common/tls_credentials.h"

ABSL_FLAG(int, port, 0, "Port to listen on (all interfaces); 0 picks a free one.");
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

}  // namespace

absl::Status ServeUntilTerminated(const std::string& name,
                                  const std::vector<grpc::Service*>& services,
                                  const std::function<void()>& on_signal) {
  const absl::Duration grace = absl::GetFlag(FLAGS_shutdown_grace);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(ServerTlsFilesFromFlags());
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<std::unique_ptr<RunningServer>> server = RunningServer::Start(
      services, {.address = absl::StrCat("0.0.0.0:", absl::GetFlag(FLAGS_port)),
                 .max_receive_message_bytes = absl::GetFlag(FLAGS_max_message_bytes),
                 .max_send_message_bytes = absl::GetFlag(FLAGS_max_message_bytes),
                 .shutdown_grace = grace,
                 .credentials = *std::move(credentials),
                 .reflection = ReflectionEnabledByFlag(),
                 .health_address = HealthAddressFromFlag()});
  if (!server.ok()) return server.status();
  std::cerr << name << ": serving on port " << (*server)->port();
  if ((*server)->health_port() > 0) std::cerr << ", health on " << (*server)->health_port();
  std::cerr << std::endl;
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    if (absl::Status status = WritePortFile(path, (*server)->port()); !status.ok()) return status;
  }
  const int signal = WaitForTerminationSignal();
  std::cerr << name << ": signal " << signal << ", shutting down (grace "
            << absl::FormatDuration(grace) << ")" << std::endl;
  if (on_signal) on_signal();
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
  if (absl::Status status = run(); !status.ok()) {
    std::cerr << name << ": " << status << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace pixtral
