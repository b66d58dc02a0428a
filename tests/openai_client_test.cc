// The gateway's OpenAI-compatible HTTP API under the official `openai` npm client: starts an
// embedded gateway (random-weight toy model, real tekken vocabulary, CPU) with --http_port, then
// runs tests/openai_client_test.js against it with node. The script's own checks are the test;
// this file owns the server's lifetime and the limits the script relies on.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
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
       "--http_port=0", "--http_port_file=" + http_port_file, "--http_max_body_bytes=2000000"},
      "gateway");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const int port = ReadPort(http_port_file);
  ASSERT_GT(port, 0);

  const std::string command =
      absl::StrCat("NODE_PATH=", Runfile("tools/npm/node_modules"), " node ",
                   Runfile("tests/openai_client_test.js"), " http://127.0.0.1:", port, " ",
                   Runfile("tests/data/images/chelsea.png"), " 2>&1");
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  EXPECT_FALSE((*gateway)->Wait(absl::ZeroDuration()).has_value()) << "the gateway died";
}

}  // namespace
}  // namespace pixtral
