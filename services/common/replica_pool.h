// Channels to the replicas of one worker (several vision or decoder workers behind a gateway),
// with round-robin load balancing and failover: a call that finds a replica UNAVAILABLE before
// anything was received moves on to the next replica.
//
//   absl::StatusOr<std::unique_ptr<ReplicaPool>> pool =
//       ReplicaPool::Create({"vision-0:9001", "vision-1:9001"}, {});
//   grpc::Status status = (*pool)->Call([&](grpc::Channel& channel, bool* received) {
//     auto stub = VisionEncoder::NewStub(...);
//     ...                       // set *received = true once a response arrived: no retry after
//     return stub_status;
//   });
#ifndef PIXTRAL_SERVICES_COMMON_REPLICA_POOL_H_
#define PIXTRAL_SERVICES_COMMON_REPLICA_POOL_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/status.h"

namespace pixtral {

struct ChannelOptions {
  int max_receive_message_bytes = 64 << 20;
  int max_send_message_bytes = 64 << 20;
  // TLS or mTLS to the workers (MakeChannelCredentials in tls_credentials.h); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

class ReplicaPool {
 public:
  // InvalidArgument for an empty list or an empty address.
  static absl::StatusOr<std::unique_ptr<ReplicaPool>> Create(
      const std::vector<std::string>& addresses, const ChannelOptions& options);

  size_t size() const { return channels_.size(); }

  // Whether some replica has a connected channel; asks idle channels to connect, so that the
  // next poll sees them. For readiness: false while every replica is down or still starting.
  bool AnyReachable();

  // One call: `attempt` runs against replicas in round-robin order until one returns anything
  // but UNAVAILABLE, or UNAVAILABLE after setting *received (a partial stream is never replayed),
  // or every replica was tried. Replicas whose channel is in TRANSIENT_FAILURE go last. A
  // replica's failure is logged with its address and `request_id`, and counted in
  // pixtral_worker_failures_total{address}.
  using Attempt = std::function<grpc::Status(grpc::Channel& channel, bool* received)>;
  grpc::Status Call(const Attempt& attempt, const std::string& request_id = "");

 private:
  ReplicaPool() = default;

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::string> addresses_;  // of channels_[i]
  std::atomic<size_t> next_{0};
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_REPLICA_POOL_H_
