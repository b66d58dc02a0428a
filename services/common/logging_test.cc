// The request-log interceptor on a real gRPC server on loopback: request ids in and out, the
// summary line, and the per-method counters it feeds to /metrics.
#include "services/common/logging.h"

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "glog/logging.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/gateway.grpc.pb.h"
#include "services/common/metrics.h"
#include "services/common/server_runner.h"

namespace pixtral {
namespace {

// Records the request id it sees; fails when asked for the model "bad".
class EchoGateway final : public v1::Gateway::Service {
 public:
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest*,
                            v1::ModelInfo* info) override {
    info->set_model_name(RequestIdOf(*context));
    AddToRequestSummary(*context, "extra=42");
    return grpc::Status::OK;
  }
  grpc::Status Tokenize(grpc::ServerContext*, const v1::TokenizeRequest*,
                        v1::TokenizeResponse*) override {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad\ninput");
  }
};

// Collects glog lines.
class CapturingSink final : public google::LogSink {
 public:
  void send(google::LogSeverity severity, const char*, const char*, int, const struct ::tm*,
            const char* message, size_t length) override {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(
        absl::StrCat(google::GetLogSeverityName(severity), " ", std::string(message, length)));
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

class RequestLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    google::AddLogSink(&sink_);
    auto server = RunningServer::Start({&service_}, {.address = "127.0.0.1:0"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::Gateway::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                     grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    google::RemoveLogSink(&sink_);
  }

  // Calls GetModelInfo with `id` as x-request-id (none if empty); returns the id the service
  // saw and sets `returned` to the one in the response's metadata.
  std::string Call(const std::string& id, std::string* returned) {
    grpc::ClientContext context;
    if (!id.empty()) context.AddMetadata(kRequestIdKey, id);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ModelInfo info;
    EXPECT_TRUE(stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
    auto it = context.GetServerInitialMetadata().find(kRequestIdKey);
    *returned = it == context.GetServerInitialMetadata().end()
                    ? ""
                    : std::string(it->second.data(), it->second.size());
    return info.model_name();
  }

  std::vector<std::string> LinesWith(const std::string& text) {
    std::vector<std::string> found;
    for (const std::string& line : sink_.lines()) {
      if (line.find(text) != std::string::npos) found.push_back(line);
    }
    return found;
  }

  CapturingSink sink_;
  EchoGateway service_;
  std::unique_ptr<RunningServer> server_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

TEST_F(RequestLogTest, CallersIdReachesTheServiceAndComesBack) {
  std::string returned;
  EXPECT_EQ(Call("req-123_abc.4:5", &returned), "req-123_abc.4:5");
  EXPECT_EQ(returned, "req-123_abc.4:5");
}

TEST_F(RequestLogTest, MissingIdIsMadeAndReturned) {
  std::string returned;
  const std::string seen = Call("", &returned);
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(seen.find_first_not_of("0123456789abcdef"), std::string::npos) << seen;
  EXPECT_EQ(returned, seen);
  std::string second;
  EXPECT_NE(Call("", &second), seen);
}

TEST_F(RequestLogTest, UnsafeIdsAreReplaced) {
  for (const std::string& bad : {std::string("has space"), std::string("quote\"d"),
                                 std::string(129, 'a'), std::string("a/b")}) {
    std::string returned;
    const std::string seen = Call(bad, &returned);
    EXPECT_NE(seen, bad);
    EXPECT_TRUE(IsValidRequestId(seen)) << seen;
    EXPECT_EQ(returned, seen);
  }
}

TEST_F(RequestLogTest, OneSummaryLinePerCallWithTheServicesFields) {
  std::string returned;
  Call("summary-1", &returned);
  server_->Shutdown();  // every call's last hook has run
  std::vector<std::string> lines = LinesWith("id=summary-1 ");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("INFO request id=summary-1 method=/pixtral.v1.Gateway/GetModelInfo "
                          "code=OK seconds="),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find(" peer=ipv4:127.0.0.1:"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find(" extra=42"), std::string::npos) << lines[0];
}

TEST_F(RequestLogTest, FailuresLogAWarningWithTheMessageOnOneLine) {
  grpc::ClientContext context;
  context.AddMetadata(kRequestIdKey, "fails-1");
  v1::TokenizeResponse response;
  EXPECT_EQ(stub_->Tokenize(&context, v1::TokenizeRequest(), &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  server_->Shutdown();
  std::vector<std::string> lines = LinesWith("id=fails-1 ");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("WARNING request id=fails-1 method=/pixtral.v1.Gateway/Tokenize "
                          "code=INVALID_ARGUMENT"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("error=\"bad input\""), std::string::npos) << lines[0];
}

TEST_F(RequestLogTest, CallsAreCountedByMethodAndCode) {
  metrics::Registry& registry = metrics::Registry::Default();
  metrics::Counter& ok =
      registry.GetCounter("pixtral_requests_total", "",
                          {{"method", "/pixtral.v1.Gateway/GetModelInfo"}, {"code", "OK"}});
  metrics::Counter& invalid = registry.GetCounter(
      "pixtral_requests_total", "",
      {{"method", "/pixtral.v1.Gateway/Tokenize"}, {"code", "INVALID_ARGUMENT"}});
  const double ok_before = ok.value(), invalid_before = invalid.value();
  std::string returned;
  Call("", &returned);
  Call("", &returned);
  grpc::ClientContext context;
  v1::TokenizeResponse response;
  stub_->Tokenize(&context, v1::TokenizeRequest(), &response);
  server_->Shutdown();
  EXPECT_EQ(ok.value() - ok_before, 2);
  EXPECT_EQ(invalid.value() - invalid_before, 1);
  const std::string text = registry.Render();
  EXPECT_NE(text.find("pixtral_request_duration_seconds_count{method=\"/pixtral.v1.Gateway/"
                      "GetModelInfo\"}"),
            std::string::npos);
}

// Method names of unknown methods come from the caller: they must not become label values (each
// would be a series kept for ever).
TEST_F(RequestLogTest, UnknownMethodsShareOneSeries) {
  grpc::GenericStub generic(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), response;
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(&context, absl::StrCat("/made.up/Method", i), grpc::StubOptions(), &request,
                      &response, [&](grpc::Status s) {
                        status = s;
                        done.Notify();
                      });
    done.WaitForNotification();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  server_->Shutdown();
  const std::string text = metrics::Registry::Default().Render();
  EXPECT_EQ(text.find("made.up"), std::string::npos) << text;
  EXPECT_NE(text.find("pixtral_requests_total{code=\"UNIMPLEMENTED\",method=\"unknown\"}"),
            std::string::npos);
  EXPECT_EQ(LinesWith("method=unknown(/made.up/Method").size(), 3u);
}

// The HTTP front's ids follow the interceptor's rules, so a request has one id either way.
TEST(RequestIdTest, IdsFromClientsAreKeptOnlyWhenValid) {
  EXPECT_EQ(RequestIdOrNew("req-42.a_b:c"), "req-42.a_b:c");
  EXPECT_EQ(RequestIdOrNew(std::string(128, 'a')), std::string(128, 'a'));
  for (std::string_view bad : {std::string_view(""), std::string_view("has space"),
                               std::string_view("new\nline"), std::string_view("a\"b")}) {
    const std::string id = RequestIdOrNew(bad);
    EXPECT_NE(id, bad);
    EXPECT_EQ(id.size(), 16u);
  }
  const std::string too_long(129, 'a');
  EXPECT_EQ(RequestIdOrNew(too_long).size(), 16u);
  EXPECT_NE(RequestIdOrNew(""), RequestIdOrNew(""));
}

}  // namespace
}  // namespace pixtral
