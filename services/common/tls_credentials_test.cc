// TLS and mTLS through RunningServer against real gRPC channels on loopback, with certificates
// made by openssl for each test.
#include "services/common/tls_credentials.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "proto/gateway.grpc.pb.h"
#include "proto/health.grpc.pb.h"
#include "services/common/server_runner.h"
#include "services/common/testing/test_pki.h"

namespace pixtral {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// A service with synchronous methods (every one UNIMPLEMENTED) so the server has a polled queue;
// the tests call the health service beside it.
v1::Gateway::Service unused_service;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    absl::StatusOr<TestCa> ca = TestCa::Create(dir_, "ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
    absl::StatusOr<TestCa> other = TestCa::Create(dir_, "other-ca");
    ASSERT_TRUE(other.ok()) << other.status();
    other_ca_ = *other;
    absl::StatusOr<TestCert> server = ca_.Issue("server");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *server;
    absl::StatusOr<TestCert> client = ca_.Issue("client", {});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
    absl::StatusOr<TestCert> stranger = other_ca_.Issue("stranger", {});
    ASSERT_TRUE(stranger.ok()) << stranger.status();
    stranger_ = *stranger;
  }

  // A server with only the health service, on loopback.
  std::unique_ptr<RunningServer> Serve(const ServerTlsFiles& files, bool reflection = false) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
        MakeServerCredentials(files);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    if (!credentials.ok()) return nullptr;
    auto server = RunningServer::Start(
        {&unused_service},
        {.address = "127.0.0.1:0", .credentials = *credentials, .reflection = reflection});
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // One health check over a new channel to `server` with these client credentials.
  static grpc::Status Check(const RunningServer& server, const ChannelTlsFiles& files) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        MakeChannelCredentials(files);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    if (!credentials.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "no credentials");
    auto stub = Health::NewStub(
        grpc::CreateChannel(absl::StrCat("localhost:", server.port()), *credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckResponse response;
    return stub->Check(&context, HealthCheckRequest(), &response);
  }

  std::string dir_;
  TestCa ca_;
  TestCa other_ca_;
  TestCert server_;
  TestCert client_;
  TestCert stranger_;
};

TEST_F(TlsTest, TlsServerServesTlsClientsThatTrustItsCa) {
  auto server = Serve({.cert_file = server_.cert_file, .key_file = server_.key_file});
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(Check(*server, {.ca_file = ca_.cert_file()}).ok());
}

TEST_F(TlsTest, TlsServerRefusesPlaintextClients) {
  auto server = Serve({.cert_file = server_.cert_file, .key_file = server_.key_file});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Check(*server, {}).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ClientRefusesAServerItsCaDidNotSign) {
  auto server = Serve({.cert_file = server_.cert_file, .key_file = server_.key_file});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Check(*server, {.ca_file = other_ca_.cert_file()}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ClientRefusesAServerCertificateForAnotherHost) {
  absl::StatusOr<TestCert> elsewhere = ca_.Issue("elsewhere", {"DNS:elsewhere.example"});
  ASSERT_TRUE(elsewhere.ok());
  auto server = Serve({.cert_file = elsewhere->cert_file, .key_file = elsewhere->key_file});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Check(*server, {.ca_file = ca_.cert_file()}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsAcceptsOnlyClientsWithACertificateFromItsCa) {
  auto server = Serve({.cert_file = server_.cert_file,
                       .key_file = server_.key_file,
                       .client_ca_file = ca_.cert_file()});
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(Check(*server, {.ca_file = ca_.cert_file(),
                              .cert_file = client_.cert_file,
                              .key_file = client_.key_file})
                  .ok());
  // No certificate, a certificate from another CA, no TLS at all.
  EXPECT_EQ(Check(*server, {.ca_file = ca_.cert_file()}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(*server, {.ca_file = ca_.cert_file(),
                            .cert_file = stranger_.cert_file,
                            .key_file = stranger_.key_file})
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(*server, {}).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, RotatedCertificateIsServedWithoutARestart) {
  // The server reads its files from a folder the test rewrites, as a Kubernetes Secret is.
  const std::string live = dir_ + "/live";
  std::filesystem::create_directories(live);
  const std::string cert = live + "/tls.crt", key = live + "/tls.key";
  std::filesystem::copy_file(server_.cert_file, cert);
  std::filesystem::copy_file(server_.key_file, key);
  auto server = Serve({.cert_file = cert, .key_file = key, .reload_interval = absl::Seconds(1)});
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(Check(*server, {.ca_file = ca_.cert_file()}).ok());

  // A certificate from another CA replaces it (each file renamed into place in one step).
  absl::StatusOr<TestCert> rotated = other_ca_.Issue("rotated");
  ASSERT_TRUE(rotated.ok());
  std::filesystem::copy_file(rotated->key_file, key + ".new");
  std::filesystem::copy_file(rotated->cert_file, cert + ".new");
  std::filesystem::rename(key + ".new", key);
  std::filesystem::rename(cert + ".new", cert);

  bool rotated_in = false;
  for (int i = 0; i < 40 && !rotated_in; ++i) {
    absl::SleepFor(absl::Milliseconds(250));
    rotated_in = Check(*server, {.ca_file = other_ca_.cert_file()}).ok();
  }
  EXPECT_TRUE(rotated_in);
  EXPECT_FALSE(Check(*server, {.ca_file = ca_.cert_file()}).ok());
}

TEST_F(TlsTest, BadFilesAreErrorsAtStart) {
  EXPECT_FALSE(MakeServerCredentials({.cert_file = server_.cert_file}).ok());
  EXPECT_FALSE(MakeServerCredentials({.key_file = server_.key_file}).ok());
  EXPECT_FALSE(MakeServerCredentials({.client_ca_file = ca_.cert_file()}).ok());
  EXPECT_FALSE(
      MakeServerCredentials({.cert_file = dir_ + "/missing.crt", .key_file = server_.key_file})
          .ok());
  // The key where the certificate should be.
  EXPECT_FALSE(
      MakeServerCredentials({.cert_file = server_.key_file, .key_file = server_.key_file}).ok());
  EXPECT_FALSE(MakeChannelCredentials({.ca_file = dir_ + "/missing.crt"}).ok());
  EXPECT_FALSE(
      MakeChannelCredentials({.ca_file = ca_.cert_file(), .cert_file = client_.cert_file}).ok());
}

TEST_F(TlsTest, HealthPortAnswersPlaintextProbesAndNothingElse) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials({.cert_file = server_.cert_file,
                             .key_file = server_.key_file,
                             .client_ca_file = ca_.cert_file()});
  ASSERT_TRUE(credentials.ok());
  auto server = RunningServer::Start(
      {&unused_service},
      {.address = "127.0.0.1:0", .credentials = *credentials, .health_address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->health_port(), 0);
  auto channel = grpc::CreateChannel(absl::StrCat("localhost:", (*server)->health_port()),
                                     grpc::InsecureChannelCredentials());
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckResponse response;
    ASSERT_TRUE(Health::NewStub(channel)->Check(&context, HealthCheckRequest(), &response).ok());
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  }
  {
    // The API itself is not on the health port.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ModelInfo info;
    EXPECT_EQ(v1::Gateway::NewStub(channel)
                  ->GetModelInfo(&context, v1::GetModelInfoRequest(), &info)
                  .error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  // The main port still demands a client certificate.
  EXPECT_EQ(Check(**server, {.ca_file = ca_.cert_file()}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST(PlaintextWarningTest, WarnsOnlyOffLoopback) {
  ::testing::internal::CaptureStderr();
  auto local = RunningServer::Start({&unused_service}, {.address = "127.0.0.1:0"});
  const std::string quiet = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(quiet.find("plaintext"), std::string::npos) << quiet;
  ::testing::internal::CaptureStderr();
  auto everywhere = RunningServer::Start({&unused_service}, {.address = "0.0.0.0:0"});
  const std::string warned = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(everywhere.ok());
  EXPECT_NE(warned.find("serving plaintext on 0.0.0.0:0"), std::string::npos) << warned;
}

// A reflection call (ServerReflectionInfo asking for the service list), sent as raw bytes so
// the test needs no reflection stubs: field 7 (list_services), an empty string.
grpc::Status ListServices(const RunningServer& server) {
  grpc::GenericStub stub(grpc::CreateChannel(absl::StrCat("localhost:", server.port()),
                                             grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  const char request_bytes[] = {0x3a, 0x00};
  grpc::Slice slice(request_bytes, sizeof(request_bytes));
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {},
                 &request, &response, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  return status;
}

TEST(ReflectionTest, OffUnlessAskedFor) {
  auto plain = RunningServer::Start({&unused_service}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(ListServices(**plain).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  auto reflecting =
      RunningServer::Start({&unused_service}, {.address = "127.0.0.1:0", .reflection = true});
  ASSERT_TRUE(reflecting.ok());
  EXPECT_TRUE(ListServices(**reflecting).ok()) << ListServices(**reflecting).error_message();
  // Asking once does not turn it on for servers built afterwards.
  auto later = RunningServer::Start({&unused_service}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(ListServices(**later).error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST(LoopbackTest, KnowsLoopbackAddresses) {
  EXPECT_TRUE(IsLoopbackAddress("localhost:8000"));
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:0"));
  EXPECT_TRUE(IsLoopbackAddress("127.1.2.3:9"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:8000"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:8000"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:8000"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.1:8000"));
  EXPECT_FALSE(IsLoopbackAddress("127.example.com:1"));
}

}  // namespace
}  // namespace pixtral
