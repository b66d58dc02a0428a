// What stands in front of the model in both modes, embedded and distributed: the limits on a
// request and the tokenizer that encodes chats, loading their images through its own fetcher.
//
//   absl::StatusOr<FrontEnd> front_end =
//       LoadFrontEnd("/models/Pixtral-12B-2409", {.max_images_per_request = 8}, 131072);
//   front_end->tokenizer->EncodeChatCompletion(request);
#ifndef PIXTRAL_SERVICES_GATEWAY_FRONT_END_H_
#define PIXTRAL_SERVICES_GATEWAY_FRONT_END_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/chat_encoder.h"
#include "common/image_decode.h"
#include "common/image_fetcher.h"

namespace pixtral {

struct FrontEndOptions {
  int max_images_per_request = 8;
  // Longest prompt accepted, images included; 0: the model's context.
  int max_prompt_tokens = 0;
  // max_tokens for requests that leave it 0.
  int default_max_tokens = 256;
  // How image URLs are loaded (http(s) limits, private addresses, local files).
  ImageFetcher::Options fetch;
  // Encoded bytes, pixels and sides of one image, whatever its source.
  ImageDecodeLimits decode_limits;
  // What the tokenizer keeps of an image: the normalized floats (an in-process encoder) or, where
  // smaller, the 8-bit RGB for a vision worker to resize and normalize.
  PixelForm pixel_form = PixelForm::kF32;
};

struct FrontEnd {
  std::unique_ptr<ImageFetcher> fetcher;  // the tokenizer's image loader
  std::unique_ptr<MistralTokenizer> tokenizer;
};

// The tokenizer of `model_dir`/tekken.json with the options' limits; prompts longer than
// `max_context_tokens` (or max_prompt_tokens, if smaller) are refused.
absl::StatusOr<FrontEnd> LoadFrontEnd(const std::string& model_dir, const FrontEndOptions& options,
                                      int max_context_tokens);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_FRONT_END_H_
