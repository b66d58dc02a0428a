// Who may call, across processes on loopback: a gateway with TLS, mTLS and bearer tokens in front
// of a vision worker and a decoder worker that accept only the gateway (mTLS with a CA of their
// own). Certificates are made by openssl for the test, as cert-manager would make them for a
// cluster: a public CA for the gateway and its clients, an internal CA for the workers and the
// gateway's worker-facing client certificate.
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/files.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "proto/health.grpc.pb.h"
#include "services/client/gateway_client.h"
#include "services/common/testing/test_pki.h"
#include "services/common/tls_credentials.h"
#include "tests/server_process.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kGateway[] = "services/gateway/gateway_server";
constexpr char kVisionWorker[] = "services/vision_worker/vision_worker";
constexpr char kDecoderWorker[] = "services/decoder_worker/decoder_worker";
constexpr char kToken[] = "tok-3f9a0c";
constexpr char kOtherToken[] = "tok-rotated-77";

ChatCompletionRequest ChatWithImage() {
  ChatCompletionRequest request;
  request.messages.push_back(UserMessage{std::vector<ContentChunk>{
      ImageChunk{ReadFileOrFail("tests/data/images/chelsea.png")}, TextChunk{"Describe it."}}});
  return request;
}

constexpr ChatParams kGreedy = {.max_tokens = 4, .temperature = 0.0f};

class TlsAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string tmp = std::getenv("TEST_TMPDIR");
    dir_ = new std::string(tmp + "/pki");
    ASSERT_TRUE(WriteRandomModel(tmp + "/model", ToyConfig(), /*seed=*/3,
                                 "tests/data/generated/tekken.json")
                    .ok());
    const std::string model = "--model_dir=" + tmp + "/model";

    absl::StatusOr<TestCa> public_ca = TestCa::Create(*dir_, "public-ca");
    absl::StatusOr<TestCa> internal_ca = TestCa::Create(*dir_, "internal-ca");
    absl::StatusOr<TestCa> stranger_ca = TestCa::Create(*dir_, "stranger-ca");
    ASSERT_TRUE(public_ca.ok() && internal_ca.ok() && stranger_ca.ok());
    public_ca_ = new TestCa(*public_ca);
    internal_ca_ = new TestCa(*internal_ca);
    auto issue = [](const TestCa& ca, const std::string& name) {
      absl::StatusOr<TestCert> cert = ca.Issue(name);
      EXPECT_TRUE(cert.ok()) << cert.status();
      return new TestCert(cert.ok() ? *cert : TestCert{});
    };
    gateway_cert_ = issue(*public_ca_, "gateway");
    user_cert_ = issue(*public_ca_, "user");
    worker_cert_ = issue(*internal_ca_, "worker");
    gateway_client_cert_ = issue(*internal_ca_, "gateway-client");
    stranger_cert_ = issue(*stranger_ca, "stranger");

    const std::string tokens = *dir_ + "/tokens";
    std::ofstream(tokens) << kToken << "\n\n" << kOtherToken << "\n";

    const std::vector<std::string> worker_tls = {"--tls_cert=" + worker_cert_->cert_file,
                                                 "--tls_key=" + worker_cert_->key_file,
                                                 "--tls_client_ca=" + internal_ca_->cert_file()};
    std::vector<std::string> args = {model};
    args.insert(args.end(), worker_tls.begin(), worker_tls.end());
    auto vision = ServerProcess::Start(kVisionWorker, args, "vision");
    ASSERT_TRUE(vision.ok()) << vision.status();
    vision_ = vision->release();
    args.push_back("--cache_tokens=4096");
    auto decoder = ServerProcess::Start(kDecoderWorker, args, "decoder");
    ASSERT_TRUE(decoder.ok()) << decoder.status();
    decoder_ = decoder->release();

    const std::vector<std::string> gateway_args = {model,
                                                   "--vision_workers=" + vision_->address(),
                                                   "--decoder_workers=" + decoder_->address(),
                                                   "--tls_cert=" + gateway_cert_->cert_file,
                                                   "--tls_key=" + gateway_cert_->key_file,
                                                   "--tls_client_ca=" + public_ca_->cert_file(),
                                                   "--auth_token_file=" + tokens};
    args = gateway_args;
    args.insert(args.end(), {"--worker_tls_ca=" + internal_ca_->cert_file(),
                             "--worker_tls_cert=" + gateway_client_cert_->cert_file,
                             "--worker_tls_key=" + gateway_client_cert_->key_file});
    auto gateway = ServerProcess::Start(kGateway, args, "gateway");
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = gateway->release();
    // A gateway misconfigured without the worker certificates: its calls cannot reach the workers.
    auto lost = ServerProcess::Start(kGateway, gateway_args, "lost-gateway");
    ASSERT_TRUE(lost.ok()) << lost.status();
    lost_gateway_ = lost->release();
  }

  static void TearDownTestSuite() {
    for (ServerProcess* process : {gateway_, lost_gateway_, vision_, decoder_}) delete process;
  }

  void SetUp() override {
    ASSERT_NE(gateway_, nullptr);
    ASSERT_NE(lost_gateway_, nullptr);
  }

  // What a legitimate user has: the public CA, a certificate it signed, a token.
  static GatewayClientOptions UserOptions() {
    return {.timeout = absl::Seconds(60),
            .tls = {.ca_file = public_ca_->cert_file(),
                    .cert_file = user_cert_->cert_file,
                    .key_file = user_cert_->key_file},
            .token = kToken};
  }

  static absl::Status ModelInfoWith(const GatewayClientOptions& options,
                                    const ServerProcess& gateway = *gateway_) {
    absl::StatusOr<std::unique_ptr<GatewayClient>> client =
        GatewayClient::Connect(gateway.address(), options);
    if (!client.ok()) return client.status();
    return (*client)->GetModelInfo().status();
  }

  // A health check on a worker with these client credentials.
  static grpc::Status WorkerHealth(const ServerProcess& worker, const ChannelTlsFiles& files) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        MakeChannelCredentials(files);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    auto stub =
        grpc::health::v1::Health::NewStub(grpc::CreateChannel(worker.address(), *credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckResponse response;
    return stub->Check(&context, {}, &response);
  }

  static std::string* dir_;
  static TestCa* public_ca_;
  static TestCa* internal_ca_;
  static TestCert* gateway_cert_;
  static TestCert* user_cert_;
  static TestCert* worker_cert_;
  static TestCert* gateway_client_cert_;
  static TestCert* stranger_cert_;
  static ServerProcess* vision_;
  static ServerProcess* decoder_;
  static ServerProcess* gateway_;
  static ServerProcess* lost_gateway_;
};

std::string* TlsAuthTest::dir_ = nullptr;
TestCa* TlsAuthTest::public_ca_ = nullptr;
TestCa* TlsAuthTest::internal_ca_ = nullptr;
TestCert* TlsAuthTest::gateway_cert_ = nullptr;
TestCert* TlsAuthTest::user_cert_ = nullptr;
TestCert* TlsAuthTest::worker_cert_ = nullptr;
TestCert* TlsAuthTest::gateway_client_cert_ = nullptr;
TestCert* TlsAuthTest::stranger_cert_ = nullptr;
ServerProcess* TlsAuthTest::vision_ = nullptr;
ServerProcess* TlsAuthTest::decoder_ = nullptr;
ServerProcess* TlsAuthTest::gateway_ = nullptr;
ServerProcess* TlsAuthTest::lost_gateway_ = nullptr;

TEST_F(TlsAuthTest, UserWithCertificateAndTokenChatsThroughMutualTlsWorkers) {
  absl::StatusOr<std::unique_ptr<GatewayClient>> client =
      GatewayClient::Connect(gateway_->address(), UserOptions());
  ASSERT_TRUE(client.ok()) << client.status();
  // The image goes gateway -> vision worker -> decoder worker, each hop over mTLS.
  absl::StatusOr<ChatResult> result = (*client)->Complete(ChatWithImage(), kGreedy);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->token_ids.size(), 4u);
  EXPECT_GT(result->usage.image_tokens, 0);
  absl::StatusOr<ChatResult> streamed =
      (*client)->Stream(ChatWithImage(), kGreedy, [](const ChatDelta&) { return true; });
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  EXPECT_EQ(streamed->token_ids, result->token_ids);
}

TEST_F(TlsAuthTest, EveryTokenOfTheFileIsAccepted) {
  GatewayClientOptions options = UserOptions();
  options.token = kOtherToken;
  EXPECT_TRUE(ModelInfoWith(options).ok());
}

TEST_F(TlsAuthTest, PlaintextClientIsRefused) {
  GatewayClientOptions options = UserOptions();
  options.tls = {};
  EXPECT_EQ(ModelInfoWith(options).code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsAuthTest, ClientWithoutAValidCertificateIsRefused) {
  GatewayClientOptions options = UserOptions();
  options.tls.cert_file = options.tls.key_file = "";
  EXPECT_EQ(ModelInfoWith(options).code(), absl::StatusCode::kUnavailable);
  options.tls.cert_file = stranger_cert_->cert_file;
  options.tls.key_file = stranger_cert_->key_file;
  EXPECT_EQ(ModelInfoWith(options).code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsAuthTest, ClientThatDoesNotTrustTheGatewayRefusesIt) {
  GatewayClientOptions options = UserOptions();
  options.tls.ca_file = internal_ca_->cert_file();
  EXPECT_EQ(ModelInfoWith(options).code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsAuthTest, ClientWithoutTheTokenIsUnauthenticated) {
  GatewayClientOptions options = UserOptions();
  for (const std::string& token :
       {std::string(), std::string("tok-guess"), std::string(kToken) + "x"}) {
    options.token = token;
    absl::StatusOr<std::unique_ptr<GatewayClient>> client =
        GatewayClient::Connect(gateway_->address(), options);
    ASSERT_TRUE(client.ok());
    EXPECT_EQ((*client)->GetModelInfo().status().code(), absl::StatusCode::kUnauthenticated)
        << token;
    const absl::Status chat = (*client)->Complete(ChatWithImage(), kGreedy).status();
    EXPECT_EQ(chat.code(), absl::StatusCode::kUnauthenticated) << token;
    EXPECT_THAT(chat.message(), Not(HasSubstr("tok-"))) << "echoes the token";
    EXPECT_EQ((*client)->Tokenize("hello").status().code(), absl::StatusCode::kUnauthenticated);
  }
}

TEST_F(TlsAuthTest, WorkersRefuseAnyoneButTheGateway) {
  for (const ServerProcess* worker : {vision_, decoder_}) {
    const std::string ca = internal_ca_->cert_file();
    EXPECT_TRUE(WorkerHealth(*worker, {.ca_file = ca,
                                       .cert_file = gateway_client_cert_->cert_file,
                                       .key_file = gateway_client_cert_->key_file})
                    .ok());
    // Plaintext; TLS without a certificate; a user's certificate (the public CA); a stranger's.
    EXPECT_EQ(WorkerHealth(*worker, {}).error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(WorkerHealth(*worker, {.ca_file = ca}).error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(WorkerHealth(*worker, {.ca_file = ca,
                                     .cert_file = user_cert_->cert_file,
                                     .key_file = user_cert_->key_file})
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(WorkerHealth(*worker, {.ca_file = ca,
                                     .cert_file = stranger_cert_->cert_file,
                                     .key_file = stranger_cert_->key_file})
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
}

TEST_F(TlsAuthTest, WorkerFailuresReachClientsWithoutInternals) {
  // The lost gateway's worker channels fail their TLS handshakes; its client sees UNAVAILABLE
  // with a request id, and no worker address or TLS library text.
  absl::StatusOr<std::unique_ptr<GatewayClient>> client =
      GatewayClient::Connect(lost_gateway_->address(), UserOptions());
  ASSERT_TRUE(client.ok());
  const absl::Status status = (*client)->Complete(ChatWithImage(), kGreedy).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("request id"));
  for (const std::string& internal :
       {std::string("127.0.0.1"), std::string("localhost"), std::string("ipv4"), std::string("SSL"),
        std::string("handshake"), absl::StrCat(vision_->port())}) {
    EXPECT_THAT(status.message(), Not(HasSubstr(internal))) << status;
  }
}

TEST_F(TlsAuthTest, ClientWithUnusableTlsFilesNeverFallsBackToPlaintext) {
  GatewayClientOptions options = UserOptions();
  options.tls.ca_file = *dir_ + "/no-such-ca.crt";
  EXPECT_EQ(GatewayClient::Connect(gateway_->address(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::unique_ptr<GatewayClient> client = GatewayClient::Create(gateway_->address(), options);
  EXPECT_EQ(client->GetModelInfo().status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Complete(ChatWithImage(), kGreedy).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// mistral-chat --gateway with the CA, the user's certificate and the token file, as a user runs it.
struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

CliRun RunMistralChat(const std::vector<std::string>& args) {
  const std::string tmp = std::getenv("TEST_TMPDIR");
  std::string command = "services/cli/mistral-chat";
  for (const std::string& arg : args) absl::StrAppend(&command, " '", arg, "'");
  absl::StrAppend(&command, " < /dev/null > ", tmp, "/cli.out 2> ", tmp, "/cli.err");
  const int status = std::system(command.c_str());
  return {.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          .out = ReadFileOrFail(tmp + "/cli.out"),
          .err = ReadFileOrFail(tmp + "/cli.err")};
}

TEST_F(TlsAuthTest, MistralChatTakesTheCaTheCertificateAndTheToken) {
  const std::string token_file = *dir_ + "/my-token";
  std::ofstream(token_file) << kOtherToken << "\n";
  const std::vector<std::string> tls = {"--gateway=" + gateway_->address(),
                                        "--gateway_ca=" + public_ca_->cert_file(),
                                        "--gateway_cert=" + user_cert_->cert_file,
                                        "--gateway_key=" + user_cert_->key_file,
                                        "--prompt=Hi",
                                        "--max_tokens=3",
                                        "--temperature=0"};
  std::vector<std::string> args = tls;
  args.push_back("--gateway_token_file=" + token_file);
  const CliRun ok = RunMistralChat(args);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.err, HasSubstr("answer 3 tokens"));
  // Without the token: refused, and said so.
  const CliRun refused = RunMistralChat(tls);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("UNAUTHENTICATED"));
}

}  // namespace
}  // namespace pixtral
