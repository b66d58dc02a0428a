// Chat requests to model input, token for token as mistral_common's MistralTokenizer encodes them
// for Pixtral (tekken, instruct template v3):
//
//   <s>[INST]user text[/INST]assistant text</s>[INST]system prompt\n\nlast user text[/INST]
//
// and with tools (function calling), a prefix to continue, and tool calls and results:
//
//   <s>[AVAILABLE_TOOLS][{"type": "function", ...}][/AVAILABLE_TOOLS][INST]user[/INST]
//   [TOOL_CALLS][{"name": "f", "arguments": {...}, "id": "abcdef123"}]</s>
//   [TOOL_RESULTS]{"content": ..., "call_id": "abcdef123"}[/TOOL_RESULTS]assistant prefix
//
// - Consecutive messages of one role merge into one (their texts joined by "\n\n").
// - All system messages join (by "\n\n") into one system prompt, written at the start of the
//   last user message, followed by "\n\n".
// - The tools' JSON goes before the last user message; tool calls, results and tools are written
//   as Python's json.dumps writes them (chat_json.h), JSON text normalized as mistral_common does.
// - Each image becomes rows of [IMG] tokens, each row ending in [IMG_BREAK] except the last,
//   which ends in [IMG_END]; text and images keep their order, except that a user message made
//   of text followed by one image puts the image first (mistral_common does the same).
//
//   absl::StatusOr<std::unique_ptr<MistralTokenizer>> tokenizer =
//       MistralTokenizer::FromFile("/models/pixtral/tekken.json", options);
//   absl::StatusOr<EncodedChat> encoded = (*tokenizer)->EncodeChatCompletion(request);
//   // encoded->tokens for the decoder, encoded->images for the vision encoder (in [IMG] order).
//
// Requests come from clients: every structural problem (chat_validate.h: no messages, wrong role
// order, an empty assistant message, bad tool call ids, too many images; a prompt longer than the
// context, an image that cannot be loaded) is an error status, never a crash.
#ifndef PIXTRAL_COMMON_CHAT_ENCODER_H_
#define PIXTRAL_COMMON_CHAT_ENCODER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/chat.h"
#include "common/image_processing.h"
#include "common/tekken.h"

namespace pixtral {

// Where one image's loading time went (wall clock).
struct ImageLoadTimes {
  absl::Duration fetch;  // zero for bytes that came with the request
  ImagePreprocessTimes steps;
};

struct EncodedChat {
  std::vector<int> tokens;
  std::vector<PreprocessedImage> images;    // In the order of their [IMG] runs in `tokens`.
  std::vector<ImageLoadTimes> image_times;  // One per image, in the same order.
  std::string text;                         // `tokens` decoded with control tokens kept.
};

struct MistralTokenizerOptions {
  // Loads the bytes behind an ImageURLChunk (ImageFetcher::Fetch fits). Without it, requests
  // with image URLs are FailedPrecondition errors; ImageChunk bytes need no fetcher.
  std::function<absl::StatusOr<std::string>(absl::string_view url)> fetch_image;
  // Replaces the tokenizer file's `image` section (tests use tiny patches).
  std::optional<ImageEncoderConfig> image_config;
  ImageDecodeLimits decode_limits;
  // kRgb8IfSmaller leaves resizing and normalization to whoever encodes the images (a vision
  // worker); kF32 images are ready for an in-process encoder.
  PixelForm pixel_form = PixelForm::kF32;
  int max_images = 16;
  // The model's context: a longer prompt is an InvalidArgument error.
  int max_prompt_tokens = 131072;
};

// When an encoding should stop early: the caller's deadline and cancellation, checked before each
// image is fetched and decoded (the costly steps), so a request nobody waits for stops there.
struct EncodeCallState {
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled;  // empty: never
};

class MistralTokenizer {
 public:
  using Options = MistralTokenizerOptions;

  static absl::StatusOr<std::unique_ptr<MistralTokenizer>> FromFile(const std::string& path,
                                                                    Options options = {});
  static absl::StatusOr<std::unique_ptr<MistralTokenizer>> Create(
      std::unique_ptr<TekkenTokenizer> tekken, Options options = {});

  // Validates, normalizes and encodes `request`. InvalidArgument for a malformed request; the
  // image fetcher's and decoder's statuses pass through, prefixed with the message and chunk.
  // DEADLINE_EXCEEDED or CANCELLED when `call` says so before an image.
  absl::StatusOr<EncodedChat> EncodeChatCompletion(const ChatCompletionRequest& request,
                                                   const EncodeCallState& call = {}) const;

  const TekkenTokenizer& tekken() const { return *tekken_; }

 private:
  MistralTokenizer(std::unique_ptr<TekkenTokenizer> tekken, Options options);

  std::unique_ptr<TekkenTokenizer> tekken_;
  Options options_;
  int begin_inst_ = 0;
  int end_inst_ = 0;
  int img_ = 0;
  int img_break_ = 0;
  int img_end_ = 0;
  int begin_tools_ = 0;
  int end_tools_ = 0;
  int begin_tool_results_ = 0;
  int end_tool_results_ = 0;
  int tool_calls_ = 0;
};

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_CHAT_ENCODER_H_
