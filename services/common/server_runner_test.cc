// RunningServer and ReplicaPool against real gRPC servers on loopback.
#include "services/common/server_runner.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/gateway.grpc.pb.h"
#include "proto/health.grpc.pb.h"
#include "services/common/replica_pool.h"

namespace pixtral {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// Answers GetModelInfo with its own name, after an optional delay.
class NamedGateway final : public v1::Gateway::Service {
 public:
  explicit NamedGateway(std::string name, absl::Duration delay = absl::ZeroDuration())
      : name_(std::move(name)), delay_(delay) {}

  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest*,
                            v1::ModelInfo* info) override {
    std::call_once(started_once_, [this] { started_.Notify(); });
    const absl::Time until = absl::Now() + delay_;
    while (absl::Now() < until) {
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
      absl::SleepFor(absl::Milliseconds(5));
    }
    info->set_model_name(name_);
    return grpc::Status::OK;
  }

  absl::Notification& started() { return started_; }

 private:
  std::string name_;
  absl::Duration delay_;
  std::once_flag started_once_;
  absl::Notification started_;
};

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

std::shared_ptr<grpc::Channel> ChannelTo(int port) {
  return grpc::CreateChannel(Loopback(port), grpc::InsecureChannelCredentials());
}

grpc::Status AskName(grpc::Channel& channel, std::string* name) {
  auto stub = v1::Gateway::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ModelInfo info;
  grpc::Status status = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  *name = info.model_name();
  return status;
}

HealthCheckResponse::ServingStatus HealthOf(int port) {
  auto stub = Health::NewStub(ChannelTo(port));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  HealthCheckResponse response;
  if (!stub->Check(&context, HealthCheckRequest(), &response).ok()) {
    return HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

TEST(RunningServerTest, ServesAndReportsHealthy) {
  NamedGateway service("a");
  auto server = RunningServer::Start({&service}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ(HealthOf((*server)->port()), HealthCheckResponse::SERVING);
  std::string name;
  EXPECT_TRUE(AskName(*ChannelTo((*server)->port()), &name).ok());
  EXPECT_EQ(name, "a");
}

// What holds the port while a model loads (serve.cc), with reflection off as by default.
TEST(RunningServerTest, AServerWithNoServicesAnswersNotServing) {
  auto server = RunningServer::Start({}, {.address = "127.0.0.1:0", .reflection = false});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(HealthOf((*server)->port()), HealthCheckResponse::NOT_SERVING);
  (*server)->SetServing(true);  // ignored
  EXPECT_EQ(HealthOf((*server)->port()), HealthCheckResponse::NOT_SERVING);
  (*server)->Shutdown();
}

TEST(RunningServerTest, UnusableAddressIsAnError) {
  NamedGateway service("a");
  EXPECT_FALSE(RunningServer::Start({&service}, {.address = "256.1.1.1:1"}).ok());
}

TEST(RunningServerTest, ASecondServerOnABusyPortFailsToStart) {
  NamedGateway first_service("first"), second_service("second");
  auto first = RunningServer::Start({&first_service}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(first.ok()) << first.status();
  // With SO_REUSEPORT both would listen and the kernel would split the calls between them.
  auto second = RunningServer::Start({&second_service}, {.address = Loopback((*first)->port())});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  std::string name;
  EXPECT_TRUE(AskName(*ChannelTo((*first)->port()), &name).ok());
  EXPECT_EQ(name, "first");
}

// Records the peer (client address and port: one per connection) of each call.
class PeerRecorder final : public v1::Gateway::Service {
 public:
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest*,
                            v1::ModelInfo*) override {
    std::lock_guard<std::mutex> lock(mutex_);
    peers_.insert(context->peer());
    return grpc::Status::OK;
  }
  size_t peers() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peers_.size();
  }

 private:
  std::mutex mutex_;
  std::set<std::string> peers_;
};

TEST(RunningServerTest, MaxConnectionAgeMakesClientsReconnect) {
  PeerRecorder service;
  auto server = RunningServer::Start(
      {&service}, {.address = "127.0.0.1:0", .max_connection_age = absl::Milliseconds(300)});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = ChannelTo((*server)->port());  // one channel, as a gateway keeps
  std::string name;
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(AskName(*channel, &name).ok());
    absl::SleepFor(absl::Milliseconds(100));
  }
  // Aged out every ~0.3 s (+-10% jitter, and the grace to finish calls): several connections.
  EXPECT_GE(service.peers(), 3u);
}

// Starts `service` with `grace`, begins a GetModelInfo call, shuts the server down while the
// call runs, and returns the call's status and how long Shutdown() took.
struct ShutdownOutcome {
  grpc::Status status;
  std::string name;
  absl::Duration shutdown_time;
  int port = 0;
};
ShutdownOutcome ShutDownDuringACall(NamedGateway& service, absl::Duration grace) {
  ShutdownOutcome outcome;
  auto server =
      RunningServer::Start({&service}, {.address = "127.0.0.1:0", .shutdown_grace = grace});
  EXPECT_TRUE(server.ok());
  if (!server.ok()) return outcome;
  outcome.port = (*server)->port();
  std::thread call([&] { outcome.status = AskName(*ChannelTo(outcome.port), &outcome.name); });
  service.started().WaitForNotification();
  const absl::Time start = absl::Now();
  (*server)->Shutdown();
  outcome.shutdown_time = absl::Now() - start;
  call.join();
  return outcome;
}

TEST(RunningServerTest, ShutdownLetsInFlightCallsFinishWithinGrace) {
  NamedGateway service("slow", absl::Milliseconds(300));
  ShutdownOutcome outcome = ShutDownDuringACall(service, absl::Seconds(5));
  EXPECT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  EXPECT_EQ(outcome.name, "slow");
  // After shutdown nothing listens.
  std::string name;
  EXPECT_EQ(AskName(*ChannelTo(outcome.port), &name).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(RunningServerTest, ShutdownCancelsCallsThatOutlastGrace) {
  NamedGateway service("stuck", absl::Seconds(30));
  ShutdownOutcome outcome = ShutDownDuringACall(service, absl::Milliseconds(100));
  EXPECT_LT(outcome.shutdown_time, absl::Seconds(5));
  EXPECT_FALSE(outcome.status.ok());
}

TEST(ReplicaPoolTest, RejectsEmptyLists) {
  EXPECT_FALSE(ReplicaPool::Create({}, {}).ok());
  EXPECT_FALSE(ReplicaPool::Create({""}, {}).ok());
}

TEST(ReplicaPoolTest, BalancesAndFailsOverToLiveReplicas) {
  NamedGateway a("a"), b("b");
  auto server_a = RunningServer::Start({&a}, {.address = "127.0.0.1:0"});
  auto server_b = RunningServer::Start({&b}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(server_a.ok() && server_b.ok());
  // A replica that was never up: a closed port on loopback.
  int dead_port;
  {
    NamedGateway gone("gone");
    auto server = RunningServer::Start({&gone}, {.address = "127.0.0.1:0"});
    dead_port = (*server)->port();
  }
  auto pool = ReplicaPool::Create(
      {Loopback(dead_port), Loopback((*server_a)->port()), Loopback((*server_b)->port())}, {});
  ASSERT_TRUE(pool.ok());
  int seen_a = 0, seen_b = 0;
  for (int i = 0; i < 12; ++i) {
    std::string name;
    grpc::Status status =
        (*pool)->Call([&](grpc::Channel& channel, bool*) { return AskName(channel, &name); });
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    (name == "a" ? seen_a : seen_b)++;
  }
  EXPECT_GT(seen_a, 0);
  EXPECT_GT(seen_b, 0);

  // With every replica gone the call is UNAVAILABLE, promptly.
  (*server_a)->Shutdown();
  (*server_b)->Shutdown();
  const absl::Time start = absl::Now();
  std::string name;
  grpc::Status status =
      (*pool)->Call([&](grpc::Channel& channel, bool*) { return AskName(channel, &name); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(ReplicaPoolTest, NoRetryAfterPartialResponse) {
  NamedGateway a("a");
  auto server = RunningServer::Start({&a}, {.address = "127.0.0.1:0"});
  auto pool = ReplicaPool::Create({Loopback((*server)->port()), Loopback((*server)->port())}, {});
  int attempts = 0;
  grpc::Status status = (*pool)->Call([&](grpc::Channel&, bool* received) {
    ++attempts;
    *received = true;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "dropped mid-stream");
  });
  EXPECT_EQ(attempts, 1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(ReplicaPoolTest, ReachesARestartedReplicaWithinTwoSeconds) {
  NamedGateway first("first"), second("second");
  auto server = RunningServer::Start({&first}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok());
  const int port = (*server)->port();
  auto pool = ReplicaPool::Create({Loopback(port)}, {});
  ASSERT_TRUE(pool.ok());
  auto ask = [&](std::string* name) {
    return (*pool)->Call([&](grpc::Channel& channel, bool*) { return AskName(channel, name); });
  };
  std::string name;
  ASSERT_TRUE(ask(&name).ok());
  (*server)->Shutdown();
  // Down long enough for gRPC's default backoff (1 s, x1.6 per failure, +-20%) to wait 1.6-8 s
  // after the restart (its 5th try); with the pool's 1 s cap it is under 2 s.
  const absl::Time down_until = absl::Now() + absl::Seconds(11);
  while (absl::Now() < down_until) {
    EXPECT_FALSE(ask(&name).ok());
    absl::SleepFor(absl::Milliseconds(200));
  }
  auto restarted = RunningServer::Start({&second}, {.address = Loopback(port)});
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  const absl::Time back = absl::Now();
  while (!ask(&name).ok() && absl::Now() - back < absl::Seconds(30)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(name, "second");
  EXPECT_LT(absl::Now() - back, absl::Seconds(2));
}

}  // namespace
}  // namespace pixtral
