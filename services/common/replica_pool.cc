#include "services/common/replica_pool.h"

#include "absl/status/status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace pixtral {

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
  const std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials : grpc::InsecureChannelCredentials();
  for (const std::string& address : addresses) {
    if (address.empty()) return absl::InvalidArgumentError("empty replica address");
    pool->channels_.push_back(grpc::CreateCustomChannel(address, credentials, args));
  }
  return pool;
}

grpc::Status ReplicaPool::Call(const Attempt& attempt) {
  const size_t start = next_.fetch_add(1) % channels_.size();
  std::vector<grpc::Channel*> healthy, failing;
  for (size_t i = 0; i < channels_.size(); ++i) {
    grpc::Channel* channel = channels_[(start + i) % channels_.size()].get();
    const bool down = channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_TRANSIENT_FAILURE;
    (down ? failing : healthy).push_back(channel);
  }
  healthy.insert(healthy.end(), failing.begin(), failing.end());

  grpc::Status status;
  for (grpc::Channel* channel : healthy) {
    bool received = false;
    status = attempt(*channel, &received);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || received) return status;
  }
  return status;
}

}  // namespace pixtral
