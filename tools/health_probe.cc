// Asks a server's grpc.health.v1 service once and exits 0 when it is SERVING: the exec probe
// for runtimes without Kubernetes' native gRPC probes, and what the loopback tests poll.
//
//   health_probe --address=127.0.0.1:8000 [--service=pixtral.v1.Gateway] [--timeout=2s]
//   SERVING
#include <chrono>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/health.grpc.pb.h"

ABSL_FLAG(std::string, address, "", "host:port of the server.");
ABSL_FLAG(std::string, service, "", "Health service name; empty asks for the whole server.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2), "Deadline of the check.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_address), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_timeout)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::cout << "ERROR " << status.error_code() << " " << status.error_message() << std::endl;
    return 2;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
            << std::endl;
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}
