// The gateway's OpenAI-compatible HTTP API under the official `openai` npm client: starts an
// embedded gateway (random-weight toy model, real tekken vocabulary, CPU) with --http_port, and a
// distributed one whose workers are not there (503) and an embedded one with --auth_token_file
// (401), then runs tests/openai_client_test.js against
// them with node. The script's own checks are the test; this file owns the servers' lifetimes and
// the limits the script relies on. The script ends by sending the embedded gateway SIGTERM with a
// stream in flight, so its exit status is checked here.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/common/testing/test_pki.h"
#include "tests/server_process.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

std::string Runfile(const std::string& path) {
  char cwd[4096];
  return absl::StrCat(getcwd(cwd, sizeof(cwd)), "/", path);
}

int ReadPort(const std::string& path) {
  for (int i = 0; i < 100; ++i) {
    std::ifstream in(path);
    int port = 0;
    if (in >> port && port > 0) return port;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return 0;
}

TEST(OpenAiClientTest, TheOfficialClientPassesItsScript) {
  const std::string tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp + "/model";
  ASSERT_TRUE(
      WriteRandomModel(dir, ToyConfig(), /*seed=*/5, "tests/data/generated/tekken.json").ok());
  const std::string http_port_file = tmp + "/http_port";
  // One completion at a time, so the script can observe 429 and a cancelled stream's slot coming
  // back; a 2 MB body limit, so it can observe 413.
  absl::StatusOr<std::unique_ptr<ServerProcess>> gateway = ServerProcess::Start(
      "services/gateway/gateway_server",
      {"--model_dir=" + dir, "--embedded", "--cache_tokens=32768", "--max_concurrent_requests=1",
       "--http_port=0", "--http_port_file=" + http_port_file, "--http_max_body_bytes=2000000",
       "--shutdown_grace=2s"},
      "gateway");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const int port = ReadPort(http_port_file);
  ASSERT_GT(port, 0);
  // Nothing listens on port 1: every completion finds no worker.
  const std::string orphan_port_file = tmp + "/orphan_http_port";
  absl::StatusOr<std::unique_ptr<ServerProcess>> orphan = ServerProcess::Start(
      "services/gateway/gateway_server",
      {"--model_dir=" + dir, "--vision_workers=127.0.0.1:1", "--decoder_workers=127.0.0.1:1",
       "--http_port=0", "--http_port_file=" + orphan_port_file},
      "orphan");
  ASSERT_TRUE(orphan.ok()) << orphan.status();
  const int orphan_port = ReadPort(orphan_port_file);
  ASSERT_GT(orphan_port, 0);

  // Bearer tokens (the gRPC API's --auth_token_file) on the HTTP port too; a 1000-byte body
  // limit, so the script can show the token is checked before the body is read.
  const std::string token = "http-token-5f1e";
  const std::string token_file = tmp + "/tokens";
  std::ofstream(token_file) << "other-token\n" << token << "\n";
  const std::string guarded_port_file = tmp + "/guarded_http_port";
  absl::StatusOr<std::unique_ptr<ServerProcess>> guarded =
      ServerProcess::Start("services/gateway/gateway_server",
                           {"--model_dir=" + dir, "--embedded", "--cache_tokens=32768",
                            "--http_port=0", "--http_port_file=" + guarded_port_file,
                            "--http_max_body_bytes=1000", "--auth_token_file=" + token_file},
                           "guarded");
  ASSERT_TRUE(guarded.ok()) << guarded.status();
  const int guarded_port = ReadPort(guarded_port_file);
  ASSERT_GT(guarded_port, 0);

  const std::string command =
      absl::StrCat("NODE_PATH=", Runfile("tools/npm/node_modules"), " node ",
                   Runfile("tests/openai_client_test.js"), " http://127.0.0.1:", port, " ",
                   Runfile("tests/data/images/chelsea.png"), " http://127.0.0.1:", orphan_port, " ",
                   (*gateway)->pid(), " http://127.0.0.1:", guarded_port, " ", token, " 2>&1");
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  // SIGTERM with a stream in flight: drained, the stream cancelled after the grace, exit 0.
  EXPECT_EQ((*gateway)->Wait(absl::Seconds(20)), 0);
}

// HTTPS on the HTTP port from the gRPC port's TLS flags, with certificates made by openssl: one
// gateway with --tls_cert/--tls_key and tokens, one that also requires client certificates.
TEST(OpenAiClientTest, HttpsFromTheTlsFlags) {
  const std::string tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp + "/tls_model";
  ASSERT_TRUE(
      WriteRandomModel(dir, ToyConfig(), /*seed=*/5, "tests/data/generated/tekken.json").ok());
  absl::StatusOr<TestCa> ca = TestCa::Create(tmp + "/pki", "public-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<TestCert> server = ca->Issue("gateway");
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<TestCert> client = ca->Issue("user");
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string token = "https-token-77a0";
  const std::string token_file = tmp + "/tls_tokens";
  std::ofstream(token_file) << token << "\n";
  const std::vector<std::string> common = {"--model_dir=" + dir,
                                           "--embedded",
                                           "--cache_tokens=32768",
                                           "--http_port=0",
                                           "--tls_cert=" + server->cert_file,
                                           "--tls_key=" + server->key_file};

  std::vector<std::string> args = common;
  args.push_back("--http_port_file=" + tmp + "/tls_http_port");
  args.push_back("--auth_token_file=" + token_file);
  absl::StatusOr<std::unique_ptr<ServerProcess>> tls =
      ServerProcess::Start("services/gateway/gateway_server", args, "tls");
  ASSERT_TRUE(tls.ok()) << tls.status();
  const int tls_port = ReadPort(tmp + "/tls_http_port");
  ASSERT_GT(tls_port, 0);
  args = common;
  args.push_back("--http_port_file=" + tmp + "/mtls_http_port");
  args.push_back("--tls_client_ca=" + ca->cert_file());
  absl::StatusOr<std::unique_ptr<ServerProcess>> mtls =
      ServerProcess::Start("services/gateway/gateway_server", args, "mtls");
  ASSERT_TRUE(mtls.ok()) << mtls.status();
  const int mtls_port = ReadPort(tmp + "/mtls_http_port");
  ASSERT_GT(mtls_port, 0);

  // The certificates name localhost and 127.0.0.1; node trusts the test CA through
  // NODE_EXTRA_CA_CERTS, as a deployment's clients trust its CA.
  const std::string command = absl::StrCat(
      "NODE_EXTRA_CA_CERTS=", ca->cert_file(), " NODE_PATH=", Runfile("tools/npm/node_modules"),
      " node ", Runfile("tests/openai_tls_test.js"), " https://localhost:", tls_port, " ", token,
      " https://localhost:", mtls_port, " ", client->cert_file, " ", client->key_file, " 2>&1");
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

TEST(GatewayCommandLineTest, HelpListsTheFlagsAndExitsZero) {
  const std::string out = std::string(std::getenv("TEST_TMPDIR")) + "/help.txt";
  const int status =
      std::system(absl::StrCat("services/gateway/gateway_server --help > ", out).c_str());
  EXPECT_EQ(status, 0);
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Usage: "), std::string::npos) << text;
  for (const char* flag : {"--http_port", "--http_max_body_bytes", "--model_dir", "--port"}) {
    EXPECT_NE(text.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace pixtral
