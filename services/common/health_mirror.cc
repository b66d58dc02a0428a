#include "services/common/health_mirror.h"

#include <chrono>

#include "grpcpp/client_context.h"

namespace pixtral {

grpc::Status HealthMirror::Check(grpc::ServerContext* context,
                                 const grpc::health::v1::HealthCheckRequest* request,
                                 grpc::health::v1::HealthCheckResponse* response) {
  grpc::ClientContext forwarded;
  // A probe's own deadline, or a short one: a health check never waits long.
  const auto deadline =
      std::min(context->deadline(), std::chrono::system_clock::now() + std::chrono::seconds(5));
  forwarded.set_deadline(deadline);
  return main_->Check(&forwarded, *request, response);
}

}  // namespace pixtral
