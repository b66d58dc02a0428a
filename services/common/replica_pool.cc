#include "services/common/replica_pool.h"

#include "absl/status/status.h"
#include "glog/logging.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "services/common/metrics_catalog.h"

namespace pixtral {
namespace {

// The worker's fault, not the request's or the caller's (INVALID_ARGUMENT, CANCELLED,
// DEADLINE_EXCEEDED are theirs).
bool IsWorkerFailure(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::INTERNAL ||
         code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::DATA_LOSS ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED || code == grpc::StatusCode::UNIMPLEMENTED ||
         code == grpc::StatusCode::FAILED_PRECONDITION;  // e.g. another model
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    default:
      return "UNKNOWN";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReplicaPool>> ReplicaPool::Create(
    const std::vector<std::string>& addresses, const ChannelOptions& options) {
  if (addresses.empty()) return absl::InvalidArgumentError("no replica addresses");
  std::unique_ptr<ReplicaPool> pool(new ReplicaPool());
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  args.SetMaxSendMessageSize(options.max_send_message_bytes);
  // An address that resolves to several hosts (a Kubernetes headless Service: one A record per
  // ready pod) spreads its calls over all of them instead of pinning the first.
  args.SetLoadBalancingPolicyName("round_robin");
  // A restarted worker is reached again within about a second, rather than after gRPC's default
  // backoff, which grows to two minutes (15-21 s for a worker down a few seconds).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  const std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials : grpc::InsecureChannelCredentials();
  for (const std::string& address : addresses) {
    if (address.empty()) return absl::InvalidArgumentError("empty replica address");
    pool->channels_.push_back(grpc::CreateCustomChannel(address, credentials, args));
    pool->addresses_.push_back(address);
  }
  return pool;
}

bool ReplicaPool::AnyReachable() {
  bool reachable = false;
  for (const auto& channel : channels_) {
    reachable |= channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY;
  }
  return reachable;
}

grpc::Status ReplicaPool::Call(const Attempt& attempt, const std::string& request_id) {
  const size_t start = next_.fetch_add(1) % channels_.size();
  std::vector<size_t> healthy, failing;
  for (size_t i = 0; i < channels_.size(); ++i) {
    const size_t index = (start + i) % channels_.size();
    const bool down =
        channels_[index]->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_TRANSIENT_FAILURE;
    (down ? failing : healthy).push_back(index);
  }
  healthy.insert(healthy.end(), failing.begin(), failing.end());

  grpc::Status status;
  for (size_t index : healthy) {
    bool received = false;
    status = attempt(*channels_[index], &received);
    if (IsWorkerFailure(status.error_code())) {
      metrics::WorkerFailures(addresses_[index]).Increment();
      LOG(WARNING) << "worker " << addresses_[index] << " failed request id=" << request_id << ": "
                   << CodeName(status.error_code()) << ": "
                   << status.error_message().substr(0, 300);
    }
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || received) return status;
  }
  return status;
}

}  // namespace pixtral
