#include "services/gateway/chat_pipeline.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/metrics_catalog.h"
#include "services/gateway/completion_text.h"
#include "services/gateway/image_key.h"
#include "services/gateway/tool_call_parser.h"

namespace pixtral {
namespace {

// Time to first token for the first delivery; the gap since the previous delivery, shared by its
// tokens, for every later token (a worker may deliver several tokens in one message, which then
// arrived together).
void RecordTokenTimes(absl::Time start, size_t count, absl::Time& last) {
  if (count == 0) return;
  const absl::Time now = absl::Now();
  double gap = 0;
  if (last == absl::InfinitePast()) {
    metrics::TimeToFirstToken().Observe(absl::ToDoubleSeconds(now - start));
    --count;
  } else {
    gap = absl::ToDoubleSeconds(now - last) / static_cast<double>(count);
  }
  for (size_t i = 0; i < count; ++i) metrics::InterTokenLatency().Observe(gap);
  last = now;
}

// Each image's loading steps into the metrics, and their sums and the whole chat encoding
// (`tokenize`) into `timings` (may be null).
void RecordImageTimes(const EncodedChat& encoded, absl::Duration tokenize,
                      RequestTimings* timings) {
  absl::Duration fetch, decode, preprocess;
  for (const ImageLoadTimes& image : encoded.image_times) {
    if (image.fetch > absl::ZeroDuration()) {
      metrics::ImageFetchLatency().Observe(absl::ToDoubleSeconds(image.fetch));
    }
    metrics::ImageDecodeLatency().Observe(absl::ToDoubleSeconds(image.steps.decode));
    metrics::ImagePreprocessLatency().Observe(absl::ToDoubleSeconds(image.steps.preprocess));
    fetch += image.fetch;
    decode += image.steps.decode;
    preprocess += image.steps.preprocess;
  }
  if (timings == nullptr) return;
  timings->Add("tokenize", tokenize);
  if (encoded.image_times.empty()) return;
  timings->Add("image_fetch", fetch);
  timings->Add("image_decode", decode);
  timings->Add("image_preprocess", preprocess);
}

}  // namespace

ChatPipeline::ChatPipeline(const MistralTokenizer& tokenizer, VisionStage& vision,
                           DecoderStage& decoder, const ChatLimits& limits)
    : tokenizer_(tokenizer), vision_(vision), decoder_(decoder), limits_(limits) {
  const char* names[] = {"[IMG]", "[IMG_BREAK]", "[IMG_END]"};
  for (int i = 0; i < 3; ++i) {
    image_token_ids_[i] = tokenizer.tekken().SpecialTokenId(names[i]).value_or(-1);
  }
  tool_calls_id_ = tokenizer.tekken().SpecialTokenId("[TOOL_CALLS]").value_or(-1);
}

absl::StatusOr<std::vector<int>> ChatPipeline::Tokenize(
    const ChatCompletionRequest& request) const {
  absl::StatusOr<EncodedChat> encoded = tokenizer_.EncodeChatCompletion(request);
  if (!encoded.ok()) return encoded.status();
  return std::move(encoded->tokens);
}

absl::StatusOr<ChatResult> ChatPipeline::Run(
    const ChatCompletionRequest& request, const ChatParams& params, const CallContext& context,
    const std::function<bool(const ChatDelta&)>& on_delta) {
  const absl::Time start = absl::Now();
  if (params.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  if (absl::Status status = ValidateStopStrings(params.stop); !status.ok()) return status;
  if (absl::Status status = ValidateStopTokenIds(params.stop_token_ids); !status.ok()) {
    return status;
  }
  absl::StatusOr<EncodedChat> encoded = tokenizer_.EncodeChatCompletion(
      request, {.deadline = context.deadline, .cancelled = context.cancelled});
  if (!encoded.ok()) return encoded.status();
  RecordImageTimes(*encoded, absl::Now() - start, context.timings);

  GenerationRequest generation;
  generation.max_tokens = params.max_tokens > 0 ? params.max_tokens : limits_.default_max_tokens;
  const int64_t total = static_cast<int64_t>(encoded->tokens.size()) + generation.max_tokens;
  if (total > limits_.max_context_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt (", encoded->tokens.size(), " tokens) plus max_tokens (", generation.max_tokens,
        ") exceeds the model's context of ", limits_.max_context_tokens, " tokens"));
  }
  // The images go to the decoder as keys; their features are computed only for the images it
  // asks for (none when an earlier turn left them all in its prefix cache).
  PromptImages images;
  if (!encoded->images.empty()) {
    const absl::Time keys_start = absl::Now();
    for (const PreprocessedImage& image : encoded->images) {
      images.keys.push_back({ImageContentKey(image), image.grid.rows * image.grid.cols});
    }
    if (context.timings != nullptr) context.timings->Add("image_keys", absl::Now() - keys_start);
    images.features = [&](int first_image) -> absl::StatusOr<FeatureRows> {
      const absl::Span<const PreprocessedImage> all(encoded->images);
      if (first_image < 0 || first_image > std::ssize(all)) {
        return absl::InternalError("the decoder asked for an image the prompt does not have");
      }
      if (first_image == std::ssize(all)) return FeatureRows();
      return vision_.Encode(all.subspan(first_image), context);
    };
  }
  ChatResult result;
  for (int id : encoded->tokens) {
    result.usage.image_tokens +=
        std::count(std::begin(image_token_ids_), std::end(image_token_ids_), id);
  }
  result.usage.prompt_tokens = static_cast<int>(encoded->tokens.size());
  generation.prompt.tokens.assign(encoded->tokens.begin(), encoded->tokens.end());
  generation.sampling.temperature = params.temperature;
  generation.sampling.top_p = params.top_p == 0 ? 1.0f : params.top_p;
  generation.sampling.seed =
      params.seed.has_value() ? *params.seed : absl::Uniform<uint64_t>(absl::BitGen());
  generation.stop_token_ids = params.stop_token_ids;
  generation.ignore_eos = params.ignore_eos;
  generation.logprobs = params.logprobs;

  CompletionText text(tokenizer_.tekken(), params.stop);
  // An answer to a request with tools that begins with [TOOL_CALLS] is calls, not text: its text
  // is held back from the deltas and parsed at the end.
  const bool tools_offered = !request.tools.empty();
  bool calling_tools = false;
  std::string calls_text;
  absl::Time last_token = absl::InfinitePast();
  if (context.timings != nullptr) context.timings->Add("before_decoder", absl::Now() - start);
  bool client_cancelled = false;
  absl::Status decode_error;
  auto on_tokens = [&](absl::Span<const SampledToken> tokens) {
    if (last_token == absl::InfinitePast() && !tokens.empty() && context.timings != nullptr) {
      context.timings->Add("first_token", absl::Now() - start);
    }
    RecordTokenTimes(start, tokens.size(), last_token);
    ChatDelta delta;
    for (const SampledToken& token : tokens) {
      if (tools_offered && result.token_ids.empty() && delta.token_ids.empty() &&
          token.id == tool_calls_id_) {
        calling_tools = true;
      }
      absl::StatusOr<std::string> piece = text.Add(token.id);
      if (!piece.ok()) {
        decode_error = piece.status();
        return false;
      }
      (calling_tools ? calls_text : delta.text) += *piece;
      delta.token_ids.push_back(token.id);
      if (params.logprobs) delta.logprobs.push_back(token.logprob);
      if (text.stopped()) break;
    }
    result.text += delta.text;
    result.token_ids.insert(result.token_ids.end(), delta.token_ids.begin(), delta.token_ids.end());
    result.logprobs.insert(result.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
    if (on_delta && !on_delta(delta)) {
      client_cancelled = true;
      return false;
    }
    return !text.stopped();
  };
  absl::StatusOr<Completion> completion =
      images.keys.empty()
          ? decoder_.Generate(std::move(generation), on_tokens, context)
          : decoder_.GenerateWithImages(std::move(generation), images, on_tokens, context);
  if (!completion.ok()) return completion.status();
  if (!decode_error.ok()) return decode_error;
  if (client_cancelled) return absl::CancelledError("the client cancelled the completion");
  if (completion->finish_reason == FinishReason::kCancelled && !text.stopped()) {
    if (absl::Now() > context.deadline) {
      return absl::DeadlineExceededError("the deadline passed during generation");
    }
    return absl::CancelledError("the completion was cancelled");
  }

  ChatDelta last{text.Finish()};
  if (calling_tools) {
    calls_text += last.text;
    last.text.clear();
    absl::StatusOr<std::vector<ToolCall>> calls = ParseToolCalls(calls_text);
    if (calls.ok()) {
      result.tool_calls = *std::move(calls);
    } else {
      last.text = std::move(calls_text);  // not calls after all: the client gets the text
    }
  }
  result.text += last.text;
  if (!last.text.empty() && on_delta && !on_delta(last)) {
    return absl::CancelledError("the client cancelled the completion");
  }
  result.finish = completion->finish_reason == FinishReason::kLength && !text.stopped()
                      ? ChatFinish::kLength
                      : ChatFinish::kStop;
  if (!result.tool_calls.empty()) result.finish = ChatFinish::kToolCalls;
  result.usage.completion_tokens = static_cast<int>(result.token_ids.size());
  metrics::EndToEndLatency().Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (context.timings != nullptr) context.timings->Add("total", absl::Now() - start);
  metrics::PromptTokens().Increment(result.usage.prompt_tokens);
  metrics::GenerationTokens().Increment(result.usage.completion_tokens);
  return result;
}

}  // namespace pixtral
