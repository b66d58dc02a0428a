// mistral-chat run as a person runs it, on a random toy model: one answer from flags, and the
// interactive loop fed through stdin, in process and through a gateway. Every answer is checked
// against the embedded pipeline's greedy answer for the same conversation.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/server_runner.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/gateway_service.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr char kImage[] = "tests/data/images/chelsea.png";
constexpr char kTextPrompt[] = "Text prompt: ";
constexpr char kImagesHint[] = "[You can input zero, one or more images now.]\n";
constexpr char kImagePrompt[] =
    "Image path or url [Leave empty and press enter to finish image input]: ";
constexpr char kAnswerEnd[] = "\n=====================\n";

struct ChatRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the binary with `args`, `input` on its stdin.
ChatRun RunChat(const std::vector<std::string>& args, const std::string& input = "") {
  const std::string tmp = std::getenv("TEST_TMPDIR");
  std::ofstream(tmp + "/stdin") << input;
  std::vector<std::string> quoted;
  for (const std::string& arg : args) quoted.push_back(absl::StrCat("'", arg, "'"));
  const std::string command =
      absl::StrCat("services/cli/mistral-chat ", absl::StrJoin(quoted, " "), " < ", tmp,
                   "/stdin > ", tmp, "/stdout 2> ", tmp, "/stderr");
  const int status = std::system(command.c_str());
  return {.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          .out = ReadFileOrFail(tmp + "/stdout"),
          .err = ReadFileOrFail(tmp + "/stderr")};
}

class MistralChatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::string(std::getenv("TEST_TMPDIR")) + "/model");
    ASSERT_TRUE(
        WriteRandomModel(*dir_, ToyConfig(), /*seed=*/3, "tests/data/generated/tekken.json").ok());
    auto stack = EmbeddedStack::Create({.model_dir = *dir_, .cache_tokens = 8192});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }

  static void TearDownTestSuite() { delete stack_; }

  // The pipeline's greedy answer to `conversation`, as the CLI's flags below ask for it.
  static ChatResult ExpectedResult(const ChatCompletionRequest& conversation) {
    absl::StatusOr<ChatResult> result =
        stack_->pipeline().Run(conversation, {.max_tokens = 6, .temperature = 0}, {}, nullptr);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *std::move(result) : ChatResult();
  }
  static std::string Expected(const ChatCompletionRequest& conversation) {
    return ExpectedResult(conversation).text;
  }

  static std::vector<std::string> Flags(std::vector<std::string> more) {
    std::vector<std::string> flags = {"--max_tokens=6", "--temperature=0"};
    flags.insert(flags.end(), more.begin(), more.end());
    return flags;
  }

  static std::string* dir_;
  static EmbeddedStack* stack_;
};

std::string* MistralChatTest::dir_ = nullptr;
EmbeddedStack* MistralChatTest::stack_ = nullptr;

ChatCompletionRequest UserTurn(std::vector<ContentChunk> chunks) {
  ChatCompletionRequest request;
  request.messages.push_back(UserMessage{std::move(chunks)});
  return request;
}

TEST_F(MistralChatTest, OneAnswerFromFlags) {
  const ChatRun run = RunChat(Flags({*dir_, "--instruct", "--prompt=Describe the image.", "--image",
                                     kImage, "--image=" + std::string(kImage)}));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const ImageChunk image{ReadFileOrFail(kImage)};
  const std::string expected = Expected(UserTurn({TextChunk{"Describe the image."}, image, image}));
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(run.out, expected + "\n");
  EXPECT_THAT(
      run.err,
      MatchesRegex(
          "(.|\n)*\\[prompt [0-9]+ tokens, answer [0-9]+ tokens, time to first token [0-9.]+ s, "
          "[0-9.]+ tokens/s\\]\n"));
}

TEST_F(MistralChatTest, InteractiveConversationAccumulates) {
  const ChatRun run = RunChat(
      Flags({*dir_}), absl::StrCat("Describe the image.\n", kImage, "\n\nAnd the colours?\n\n"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ChatCompletionRequest conversation =
      UserTurn({TextChunk{"Describe the image."}, ImageChunk{ReadFileOrFail(kImage)}});
  const ChatResult first = ExpectedResult(conversation);
  conversation.messages.push_back(AssistantMessage{first.text});
  conversation.messages.push_back(UserMessage{"And the colours?"});
  const ChatResult second = ExpectedResult(conversation);
  EXPECT_EQ(run.out, absl::StrCat(kTextPrompt, kImagesHint, kImagePrompt, kImagePrompt, first.text,
                                  kAnswerEnd, kTextPrompt, kImagesHint, kImagePrompt, second.text,
                                  kAnswerEnd, kTextPrompt, "\n"));
  // The second turn's prompt held the whole conversation, image included.
  EXPECT_GT(second.usage.image_tokens, 0);
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("[prompt ", first.usage.prompt_tokens, " tokens")));
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("[prompt ", second.usage.prompt_tokens, " tokens")));
}

TEST_F(MistralChatTest, InteractiveErrorsAreMessagesAndTheChatGoesOn) {
  // A missing file is skipped at once; a refused URL fails its turn, which leaves the
  // conversation, so the next turn is answered as if it were the first.
  const ChatRun run = RunChat(
      Flags({*dir_}), "Look.\nno/such/image.png\nhttp://127.0.0.1:1/cat.png\n\nHello there.\n\n\n");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("cannot open image file no/such/image.png"));
  EXPECT_THAT(run.err, HasSubstr("error: PERMISSION_DENIED"));
  const std::string answer = Expected(UserTurn({TextChunk{"Hello there."}}));
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat(kImagePrompt, answer, kAnswerEnd)));
  EXPECT_EQ(run.out.find(kAnswerEnd), run.out.rfind(kAnswerEnd));  // one answer only
}

TEST_F(MistralChatTest, ThroughAGatewayTheAnswersAreTheSame) {
  GatewayService service(stack_->pipeline(), stack_->tokenizer().tekken(),
                         {.model_info = stack_->model_info()});
  auto server = RunningServer::Start({&service}, {.address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string gateway = absl::StrCat("--gateway=127.0.0.1:", (*server)->port());

  const ChatRun once = RunChat(Flags({gateway, "--prompt=What is it?", "--image", kImage}));
  ASSERT_EQ(once.exit_code, 0) << once.err;
  EXPECT_EQ(
      once.out,
      Expected(UserTurn({TextChunk{"What is it?"}, ImageChunk{ReadFileOrFail(kImage)}})) + "\n");

  const ChatRun chat = RunChat(Flags({gateway}), "Hi.\n\n");
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_EQ(chat.out,
            absl::StrCat(kTextPrompt, kImagesHint, kImagePrompt,
                         Expected(UserTurn({TextChunk{"Hi."}})), kAnswerEnd, kTextPrompt, "\n"));
}

TEST_F(MistralChatTest, ScriptErrorsExitNonZeroWithAClearMessage) {
  ChatRun run = RunChat(Flags({*dir_, "--prompt=Hi", "--image=no/such/image.png"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("cannot open image file no/such/image.png"));
  EXPECT_EQ(run.out, "");

  run = RunChat(Flags({*dir_, "--prompt=Hi", "--max_tokens=1000000"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("INVALID_ARGUMENT"));

  run = RunChat(Flags({std::string(std::getenv("TEST_TMPDIR")) + "/missing", "--prompt=Hi"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("cannot load"));

  run = RunChat(Flags({*dir_, "--prompt=Hi", "--backend=cuda"}));  // runs where a GPU is
  if (run.exit_code != 0) {
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
  }

  run = RunChat(Flags({"--gateway=127.0.0.1:1", "--prompt=Hi"}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("cannot reach the gateway at 127.0.0.1:1"));
}

TEST_F(MistralChatTest, HelpListsTheFlagsAndVersionPrintsOne) {
  ChatRun run = RunChat({"--help"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("mistral-chat MODEL_DIR --prompt TEXT"));
  for (const char* flag : {"--max_tokens", "--temperature", "--image", "--gateway", "--backend"}) {
    EXPECT_THAT(run.out, HasSubstr(flag));
  }
  run = RunChat({"--version"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, MatchesRegex("mistral-chat \\(pixtral-serving [0-9.]+\\)\n"));
}

// Bad flags and missing --image files are reported before any model loads (here there is none).
TEST_F(MistralChatTest, ArgumentsAndImagesAreCheckedBeforeTheModelLoads) {
  const std::string missing = std::string(std::getenv("TEST_TMPDIR")) + "/missing";
  ChatRun run = RunChat({missing, "--prompt=Hi", "--image=no/such/image.png"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("--image no/such/image.png: cannot open image file"));
  EXPECT_THAT(run.err, ::testing::Not(HasSubstr("cannot load")));
  run = RunChat({missing, "--prompt=Hi", "--temperature=-1"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--temperature"));
  run = RunChat({missing, "--prompt=Hi", "--top_p=0"});
  EXPECT_EQ(run.exit_code, 2);
  run = RunChat({missing, "--prompt=Hi", "--backend=tpu"});
  EXPECT_EQ(run.exit_code, 2);
}

// The model's side says "message 0, chunk 1"; the person typed a path.
TEST_F(MistralChatTest, ErrorsNameTheImageAsTyped) {
  const std::string junk = std::string(std::getenv("TEST_TMPDIR")) + "/junk.png";
  std::ofstream(junk) << "this is not an image";
  ChatRun run = RunChat(Flags({*dir_, "--prompt=Hi", "--image", junk}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("INVALID_ARGUMENT: --image ", junk, ": ")));
  run = RunChat(Flags({*dir_}), absl::StrCat("Look.\n", junk, "\n\n\n"));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("image \"", junk, "\" of turn 1: ")));
}

// Ctrl-C while an answer streams stops that answer; the program reads the next turn (here the
// end of input) and exits 0 instead of dying of SIGINT.
TEST_F(MistralChatTest, CtrlCStopsTheAnswerNotTheProgram) {
  const std::string tmp = std::getenv("TEST_TMPDIR");
  const std::string script = absl::StrCat(
      "(printf 'Tell me everything.\\n\\n'; sleep 4) | services/cli/mistral-chat '", *dir_,
      "' --max_tokens=8000 --cache_tokens=8192 --temperature=0 > ", tmp, "/ctrlc.out 2> ", tmp,
      "/ctrlc.err & pid=$!; for i in $(seq 100); do grep -q 'Image path' ", tmp,
      "/ctrlc.out 2>/dev/null && break; sleep 0.1; done; sleep 1; kill -INT $pid; wait $pid; "
      "echo $? > ",
      tmp, "/ctrlc.rc");
  std::ofstream(tmp + "/ctrlc.sh") << script << "\n";
  const auto start = absl::Now();
  ASSERT_EQ(std::system(absl::StrCat("sh ", tmp, "/ctrlc.sh").c_str()), 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));  // 8000 tokens would take far longer
  EXPECT_EQ(ReadFileOrFail(tmp + "/ctrlc.rc"), "0\n");
  EXPECT_THAT(ReadFileOrFail(tmp + "/ctrlc.err"), HasSubstr("[interrupted]"));
  const std::string out = ReadFileOrFail(tmp + "/ctrlc.out");
  EXPECT_EQ(out.find("====================="), std::string::npos) << out;  // no finished answer
}

TEST_F(MistralChatTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunChat({"--prompt=Hi"}).exit_code, 2);                                  // no model
  EXPECT_EQ(RunChat({*dir_, "--gateway=127.0.0.1:1", "--prompt=Hi"}).exit_code, 2);  // both
  EXPECT_EQ(RunChat({*dir_, "--noinstruct", "--prompt=Hi"}).exit_code, 2);
}

}  // namespace
}  // namespace pixtral
