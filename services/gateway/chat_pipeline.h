// A chat completion from request to text: the gateway's work, and the whole of the embedded
// mode. Encodes the chat with the tekken template (fetching and preprocessing its images),
// sends the images to a VisionStage, the tokens and image features to a DecoderStage, and turns
// the generated ids into UTF-8 text deltas, honouring stop strings.
//
//   ChatPipeline pipeline(tokenizer, vision, decoder, {.max_context_tokens = 131072});
//   absl::StatusOr<ChatResult> result = pipeline.Run(request, {.max_tokens = 256,
//       .temperature = 0.35f}, {}, [](const ChatDelta& d) { std::cout << d.text; return true; });
#ifndef PIXTRAL_SERVICES_GATEWAY_CHAT_PIPELINE_H_
#define PIXTRAL_SERVICES_GATEWAY_CHAT_PIPELINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat.h"
#include "common/chat_encoder.h"
#include "services/gateway/chat_types.h"
#include "services/gateway/stages.h"

namespace pixtral {

struct ChatLimits {
  int max_context_tokens = 131072;
  int default_max_tokens = 256;
};

class ChatPipeline {
 public:
  // All three must outlive the pipeline. Thread-safe if the stages are.
  ChatPipeline(const MistralTokenizer& tokenizer, VisionStage& vision, DecoderStage& decoder,
               const ChatLimits& limits);

  // Runs one chat completion. `on_delta` (may be empty) gets the text as it is generated;
  // returning false cancels (CANCELLED). Bad requests are INVALID_ARGUMENT; image loading and the
  // stages' errors pass through.
  absl::StatusOr<ChatResult> Run(const ChatCompletionRequest& request, const ChatParams& params,
                                 const CallContext& context,
                                 const std::function<bool(const ChatDelta&)>& on_delta);

  // The prompt ids the model would see for `request` (no generation).
  absl::StatusOr<std::vector<int>> Tokenize(const ChatCompletionRequest& request) const;

 private:
  const MistralTokenizer& tokenizer_;
  VisionStage& vision_;
  DecoderStage& decoder_;
  const ChatLimits limits_;
  int image_token_ids_[3];  // [IMG], [IMG_BREAK], [IMG_END]
  int tool_calls_id_;       // [TOOL_CALLS]
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_CHAT_PIPELINE_H_
