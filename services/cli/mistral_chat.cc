// mistral-chat: chat with Pixtral from a terminal, as mistral-inference's CLI does. Each turn
// asks for a text prompt, then for zero or more image paths or URLs (an empty line finishes),
// and streams the answer; the conversation accumulates turn after turn. An empty turn or the
// end of input ends the chat.
//
//   mistral-chat ~/mistral_models/Pixtral --instruct --max_tokens 256 --temperature 0.35
//   mistral-chat --gateway localhost:8000                      # a running gateway instead
//   mistral-chat MODEL_DIR --prompt "Describe the image." --image cat.png --image dog.jpg
//
// The model runs in this process (the embedded mode) unless --gateway names a gateway. With
// --prompt or --image it answers once and exits: the answer on stdout, non-zero exit on error.
// Time to first token and tokens per second go to stderr after every answer.
//
// Local image files are read here, so they work against a remote gateway too; http(s) and data:
// URLs are fetched by whoever runs the model (this process, or the gateway with its own rules).
//
// Flags and --image files are checked before the model loads. On a terminal the prompts have line
// editing and history (libedit); Ctrl-C while an answer is generated stops that answer (the turn is
// dropped) and the chat goes on.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/chat.h"
#include "common/image_fetcher.h"
#include "editline/readline.h"
#include "services/cli/input_names.h"
#include "services/client/gateway_client.h"
#include "services/common/command_line.h"
#include "services/embedded/embedded_stack.h"
#include "services/gateway/chat_types.h"

ABSL_FLAG(bool, instruct, true,
          "Chat with the instruct template (the only mode of a vision model, as in "
          "mistral-inference).");
ABSL_FLAG(int, max_tokens, 35, "Most tokens in one answer.");
ABSL_FLAG(double, temperature, 0.7, "Sampling temperature; 0 is greedy.");
ABSL_FLAG(double, top_p, 1.0, "Nucleus sampling mass in (0, 1].");
ABSL_FLAG(int64_t, seed, -1, "Sampling seed, for reproducible answers; -1: a fresh seed.");
ABSL_FLAG(std::string, prompt, "",
          "Answer this one prompt and exit (with --image: the images that go with it).");
ABSL_FLAG(std::vector<std::string>, image, {},
          "An image path or http(s)/data: URL for --prompt; repeat the flag for several images.");
ABSL_FLAG(std::string, gateway, "",
          "host:port of a running gateway to chat through, instead of loading MODEL_DIR here.");
ABSL_FLAG(std::string, gateway_ca, "",
          "With --gateway: TLS, trusting this CA (PEM) for the gateway's certificate.");
ABSL_FLAG(bool, gateway_tls, false,
          "With --gateway: TLS, trusting the system's CAs (implied by --gateway_ca).");
ABSL_FLAG(std::string, gateway_cert, "",
          "With --gateway: this client's certificate (PEM), for a gateway that requires mTLS.");
ABSL_FLAG(std::string, gateway_key, "", "Private key of --gateway_cert (PEM).");
ABSL_FLAG(std::string, gateway_token_file, "",
          "With --gateway: a file whose first line is the bearer token to send.");
ABSL_FLAG(std::string, backend, "cpu", "Compute backend of the embedded mode: cpu | cuda.");
ABSL_FLAG(int, tp, 1,
          "Embedded mode: tensor-parallel ranks of the decoder (cuda: GPUs 0..tp-1, NCCL).");
ABSL_FLAG(int, cache_tokens, 32768,
          "Embedded mode: KV cache capacity in tokens, which bounds the conversation's length.");
ABSL_FLAG(bool, allow_private_urls, false,
          "Embedded mode: let image URLs reach loopback and private network addresses.");

namespace pixtral {
namespace {

constexpr char kTextPrompt[] = "Text prompt: ";
constexpr char kImagesHint[] = "[You can input zero, one or more images now.]";
constexpr char kImagePrompt[] =
    "Image path or url [Leave empty and press enter to finish image input]: ";
constexpr char kAnswerEnd[] = "=====================";

using OnDelta = std::function<bool(const ChatDelta&)>;

// Set by Ctrl-C while an answer is generated (Answer installs the handler only for that time).
std::atomic<bool> interrupted{false};

void OnInterrupt(int) { interrupted = true; }

// One line of input after `prompt`: with line editing and history on a terminal, plain reads
// otherwise (scripts and tests). nullopt at the end of input.
std::optional<std::string> ReadLine(const char* prompt) {
  if (isatty(STDIN_FILENO)) {
    char* line = readline(prompt);
    if (line == nullptr) return std::nullopt;
    std::string text(line);
    free(line);
    if (!text.empty()) add_history(text.c_str());
    return text;
  }
  std::cout << prompt << std::flush;
  std::string text;
  if (!std::getline(std::cin, text)) return std::nullopt;
  return text;
}

// Where answers come from: the model in this process or a gateway.
struct ChatSource {
  std::function<absl::StatusOr<ChatResult>(const ChatCompletionRequest&, const ChatParams&,
                                           const OnDelta&)>
      complete;
  bool has_vision = false;
};

// absl flags keep only the last value of a repeated flag, and a comma-separated list would split
// data: URIs, so every `--image VALUE` / `--image=VALUE` is taken out of the arguments here.
std::vector<std::string> TakeRepeatedFlag(absl::string_view name, std::vector<char*>& args) {
  std::vector<std::string> values;
  std::vector<char*> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      rest.insert(rest.end(), args.begin() + i, args.end());
      break;
    }
    if (absl::ConsumePrefix(&arg, "--") || absl::ConsumePrefix(&arg, "-")) {
      if (absl::ConsumePrefix(&arg, name)) {
        if (absl::ConsumePrefix(&arg, "=")) {
          values.emplace_back(arg);
          continue;
        }
        if (arg.empty() && i + 1 < args.size()) {
          values.emplace_back(args[++i]);
          continue;
        }
      }
    }
    rest.push_back(args[i]);
  }
  args = std::move(rest);
  return values;
}

// An image line: URLs go to the model's side as they are; local paths (or file:// URLs) are read
// here.
absl::StatusOr<ContentChunk> ImageInput(const ImageFetcher& local_files, absl::string_view input) {
  if (absl::StartsWithIgnoreCase(input, "http://") ||
      absl::StartsWithIgnoreCase(input, "https://") || absl::StartsWithIgnoreCase(input, "data:")) {
    return ImageURLChunk{std::string(input)};
  }
  absl::StatusOr<std::string> bytes = local_files.Fetch(input);
  if (!bytes.ok()) return bytes.status();
  return ImageChunk{*std::move(bytes)};
}

// Streams one answer to stdout, then its timings to stderr.
absl::StatusOr<ChatResult> Answer(const ChatSource& source, const ChatCompletionRequest& request,
                                  const ChatParams& params) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  Clock::time_point first_token, last_token;
  bool printed = false;
  interrupted = false;
  struct sigaction on_interrupt = {}, previous = {};
  on_interrupt.sa_handler = OnInterrupt;
  sigemptyset(&on_interrupt.sa_mask);
  sigaction(SIGINT, &on_interrupt, &previous);
  absl::StatusOr<ChatResult> result = source.complete(request, params, [&](const ChatDelta& delta) {
    if (!delta.token_ids.empty()) {
      last_token = Clock::now();
      if (first_token == Clock::time_point()) first_token = last_token;
    }
    std::cout << delta.text << std::flush;
    printed |= !delta.text.empty();
    return !interrupted;
  });
  sigaction(SIGINT, &previous, nullptr);
  if (printed || result.ok()) std::cout << "\n";
  if (interrupted) {
    std::cerr << "[interrupted]\n";
    return absl::CancelledError("the answer was interrupted");
  }
  if (!result.ok()) return result;
  const int tokens = static_cast<int>(result->token_ids.size());
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  std::string stats =
      absl::StrFormat("[prompt %d tokens, answer %d tokens", result->usage.prompt_tokens, tokens);
  if (tokens > 0) {
    absl::StrAppendFormat(&stats, ", time to first token %.3f s", seconds(first_token - start));
  }
  // Decode speed: the tokens after the first, over the time after the first.
  if (tokens > 1 && last_token > first_token) {
    absl::StrAppendFormat(&stats, ", %.1f tokens/s",
                          (tokens - 1) / seconds(last_token - first_token));
  }
  std::cerr << stats << "]\n";
  return result;
}

ChatParams ParamsFromFlags() {
  ChatParams params;
  params.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  params.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  params.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  if (const int64_t seed = absl::GetFlag(FLAGS_seed); seed >= 0) params.seed = seed;
  return params;
}

// The --prompt / --image request, its images read now (before any model loads).
absl::StatusOr<ChatCompletionRequest> RequestFromFlags(const ImageFetcher& local_files,
                                                       InputNames* names) {
  std::vector<ContentChunk> chunks;
  std::vector<std::string> chunk_names;
  if (!absl::GetFlag(FLAGS_prompt).empty()) {
    chunks.push_back(TextChunk{absl::GetFlag(FLAGS_prompt)});
    chunk_names.push_back("--prompt");
  }
  for (const std::string& image : absl::GetFlag(FLAGS_image)) {
    absl::StatusOr<ContentChunk> chunk = ImageInput(local_files, image);
    if (!chunk.ok()) {
      return absl::Status(chunk.status().code(),
                          absl::StrCat("--image ", image, ": ", chunk.status().message()));
    }
    chunks.push_back(*std::move(chunk));
    chunk_names.push_back(absl::StrCat("--image ", image));
  }
  ChatCompletionRequest request;
  request.messages.push_back(UserMessage{std::move(chunks)});
  names->AddTurn(std::move(chunk_names));
  return request;
}

int AnswerOnce(const ChatSource& source, const ChatCompletionRequest& request,
               const InputNames& names) {
  absl::StatusOr<ChatResult> result = Answer(source, request, ParamsFromFlags());
  if (interrupted) return 130;  // as a shell reports a command stopped by SIGINT
  if (!result.ok()) {
    std::cerr << "mistral-chat: " << NameTheInput(result.status(), names) << "\n";
    return 1;
  }
  return 0;
}

// The turn's text and images; nullopt at the end of input or on an empty turn.
// `names` gets what each chunk was as typed ("image \"cat.png\" of turn 2").
std::optional<std::vector<ContentChunk>> ReadTurn(const ChatSource& source,
                                                  const ImageFetcher& local_files, int turn,
                                                  std::vector<std::string>* names) {
  std::optional<std::string> text = ReadLine(kTextPrompt);
  if (!text.has_value()) {
    std::cout << "\n";
    return std::nullopt;
  }
  std::vector<ContentChunk> chunks;
  if (!text->empty()) {
    chunks.push_back(TextChunk{*text});
    names->push_back(absl::StrCat("the text of turn ", turn));
  }
  if (source.has_vision) {
    std::cout << kImagesHint << "\n";
    while (std::optional<std::string> line = ReadLine(kImagePrompt)) {
      const absl::string_view input = absl::StripAsciiWhitespace(*line);
      if (input.empty()) break;
      absl::StatusOr<ContentChunk> chunk = ImageInput(local_files, input);
      if (!chunk.ok()) {
        std::cerr << "error: " << chunk.status().message() << " (image skipped)\n";
        continue;
      }
      chunks.push_back(*std::move(chunk));
      names->push_back(absl::StrCat("image \"", input, "\" of turn ", turn));
    }
  }
  if (chunks.empty()) return std::nullopt;
  return chunks;
}

int Interactive(const ChatSource& source, const ImageFetcher& local_files) {
  const ChatParams params = ParamsFromFlags();
  ChatCompletionRequest conversation;
  InputNames names;
  for (int turn = 1;; ++turn) {
    std::vector<std::string> chunk_names;
    std::optional<std::vector<ContentChunk>> chunks =
        ReadTurn(source, local_files, turn, &chunk_names);
    if (!chunks.has_value()) break;
    conversation.messages.push_back(UserMessage{*std::move(chunks)});
    names.AddTurn(std::move(chunk_names));
    absl::StatusOr<ChatResult> result = Answer(source, conversation, params);
    if (!result.ok()) {
      if (!interrupted) std::cerr << "error: " << NameTheInput(result.status(), names) << "\n";
      // A failed or interrupted turn leaves the conversation as it was.
      conversation.messages.pop_back();
      names.RemoveLast();
      --turn;
      continue;
    }
    conversation.messages.push_back(AssistantMessage{result->text});
    names.AddAnswer();
    std::cout << kAnswerEnd << "\n";
  }
  return 0;
}

// TLS and the token for --gateway. The token comes from a file, not a flag, so it never shows in
// the process list.
absl::StatusOr<GatewayClientOptions> GatewayClientOptionsFromFlags() {
  GatewayClientOptions options;
  options.tls = {.ca_file = absl::GetFlag(FLAGS_gateway_ca),
                 .cert_file = absl::GetFlag(FLAGS_gateway_cert),
                 .key_file = absl::GetFlag(FLAGS_gateway_key),
                 .use_tls = absl::GetFlag(FLAGS_gateway_tls)};
  if (const std::string path = absl::GetFlag(FLAGS_gateway_token_file); !path.empty()) {
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line)) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read a token from ", path));
    }
    options.token = std::string(absl::StripAsciiWhitespace(line));
    if (options.token.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  }
  return options;
}

// Flag values that no model could accept, found before one loads.
absl::Status CheckFlags() {
  if (absl::GetFlag(FLAGS_max_tokens) < 1)
    return absl::InvalidArgumentError("--max_tokens must be >= 1");
  const double temperature = absl::GetFlag(FLAGS_temperature);
  if (!(temperature >= 0 && std::isfinite(temperature))) {
    return absl::InvalidArgumentError("--temperature must be >= 0");
  }
  const double top_p = absl::GetFlag(FLAGS_top_p);
  if (!(top_p > 0 && top_p <= 1)) return absl::InvalidArgumentError("--top_p must be in (0, 1]");
  if (absl::GetFlag(FLAGS_cache_tokens) < 1) {
    return absl::InvalidArgumentError("--cache_tokens must be >= 1");
  }
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend != "cpu" && backend != "cuda") {
    return absl::InvalidArgumentError("--backend must be cpu or cuda");
  }
  return absl::OkStatus();
}

int Main(const std::vector<char*>& positional) {
  if (!absl::GetFlag(FLAGS_instruct)) {
    std::cerr << "mistral-chat: only --instruct is supported: Pixtral is a vision model, which "
                 "mistral-inference also runs in instruct mode only\n";
    return 2;
  }
  const std::string gateway = absl::GetFlag(FLAGS_gateway);
  if (positional.size() != (gateway.empty() ? 2u : 1u)) {
    std::cerr << "mistral-chat: give MODEL_DIR, or --gateway HOST:PORT without MODEL_DIR\n"
              << absl::ProgramUsageMessage() << "\n";
    return 2;
  }
  if (absl::Status flags = CheckFlags(); !flags.ok()) {
    std::cerr << "mistral-chat: " << flags.message() << "\n";
    return 2;
  }
  ImageFetcher::Options local;
  local.allow_local_files = true;
  const ImageFetcher local_files(local);
  const bool once = !absl::GetFlag(FLAGS_prompt).empty() || !absl::GetFlag(FLAGS_image).empty();
  InputNames once_names;
  std::optional<ChatCompletionRequest> once_request;
  if (once) {
    absl::StatusOr<ChatCompletionRequest> request = RequestFromFlags(local_files, &once_names);
    if (!request.ok()) {
      std::cerr << "mistral-chat: " << request.status().message() << "\n";
      return 1;
    }
    once_request = *std::move(request);
  }
  if (gateway.empty() &&
      !std::filesystem::exists(std::filesystem::path(positional[1]) / "params.json")) {
    std::cerr << "mistral-chat: cannot load " << positional[1]
              << ": it is not a model folder (no params.json)\n";
    return 1;
  }

  std::unique_ptr<EmbeddedStack> stack;
  std::unique_ptr<GatewayClient> client;
  ChatSource source;
  if (gateway.empty()) {
    EmbeddedStackOptions options{.model_dir = positional[1],
                                 .backend = absl::GetFlag(FLAGS_backend),
                                 .tp = absl::GetFlag(FLAGS_tp),
                                 .cache_tokens = absl::GetFlag(FLAGS_cache_tokens)};
    options.front_end.fetch.allow_private_addresses = absl::GetFlag(FLAGS_allow_private_urls);
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<EmbeddedStack>> created = EmbeddedStack::Create(options);
    if (!created.ok()) {
      std::cerr << "mistral-chat: cannot load " << options.model_dir << ": " << created.status()
                << "\n";
      return 1;
    }
    stack = *std::move(created);
    std::cerr << absl::StrFormat(
        "[loaded %s on %s in %.2f s]\n", options.model_dir, options.backend,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    source.has_vision = stack->config().vision.has_value();
    source.complete = [&stack](const ChatCompletionRequest& request, const ChatParams& params,
                               const OnDelta& on_delta) {
      return stack->pipeline().Run(request, params,
                                   {.cancelled = [] { return interrupted.load(); }}, on_delta);
    };
  } else {
    absl::StatusOr<GatewayClientOptions> options = GatewayClientOptionsFromFlags();
    absl::StatusOr<std::unique_ptr<GatewayClient>> connected =
        options.ok() ? GatewayClient::Connect(gateway, *options) : options.status();
    if (!connected.ok()) {
      std::cerr << "mistral-chat: " << connected.status() << "\n";
      return 1;
    }
    client = *std::move(connected);
    absl::StatusOr<v1::ModelInfo> info = client->GetModelInfo();
    if (!info.ok()) {
      std::cerr << "mistral-chat: cannot reach the gateway at " << gateway << ": " << info.status()
                << "\n";
      return 1;
    }
    source.has_vision = info->max_image_size() > 0;
    source.complete = [&client](const ChatCompletionRequest& request, const ChatParams& params,
                                const OnDelta& on_delta) {
      return client->Stream(request, params, on_delta);
    };
  }

  if (once) return AnswerOnce(source, *once_request, once_names);
  return Interactive(source, local_files);
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Chat with Pixtral.\n"
      "  mistral-chat MODEL_DIR [--max_tokens 256 --temperature 0.35 ...]   interactive\n"
      "  mistral-chat MODEL_DIR --prompt TEXT [--image PATH_OR_URL ...]     one answer\n"
      "  mistral-chat --gateway HOST:PORT [...]                             through a gateway");
  pixtral::HandleHelpAndVersion(argc, argv);
  std::vector<char*> args(argv, argv + argc);
  std::vector<std::string> images = pixtral::TakeRepeatedFlag("image", args);
  const int remaining = static_cast<int>(args.size());
  args.push_back(nullptr);  // argv[argc], as main's
  std::vector<char*> positional = absl::ParseCommandLine(remaining, args.data());
  if (!images.empty()) absl::SetFlag(&FLAGS_image, std::move(images));
  return pixtral::Main(positional);
}
