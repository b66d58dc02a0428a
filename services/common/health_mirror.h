// grpc.health.v1 on a second, plaintext port, answering what the main server's own health
// service answers. Kubernetes' native gRPC probes cannot speak TLS, so a server with --tls_cert
// (and mTLS) would fail every probe; with --health_port the kubelet probes this port instead,
// which serves nothing but health checks. Each Check is forwarded to the main server through an
// in-process channel, so the answer follows the main server exactly (SERVING once started,
// NOT_SERVING from the start of a shutdown, per-service names included).
#ifndef PIXTRAL_SERVICES_COMMON_HEALTH_MIRROR_H_
#define PIXTRAL_SERVICES_COMMON_HEALTH_MIRROR_H_

#include <memory>

#include "grpcpp/channel.h"
#include "proto/health.grpc.pb.h"

namespace pixtral {

class HealthMirror final : public grpc::health::v1::Health::Service {
 public:
  // `main` is an in-process channel to the server whose health this mirrors.
  explicit HealthMirror(std::shared_ptr<grpc::Channel> main)
      : main_(grpc::health::v1::Health::NewStub(std::move(main))) {}

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;

 private:
  std::unique_ptr<grpc::health::v1::Health::Stub> main_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_HEALTH_MIRROR_H_
