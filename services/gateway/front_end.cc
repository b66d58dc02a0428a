#include "services/gateway/front_end.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "common/status_macros.h"

namespace pixtral {

absl::StatusOr<FrontEnd> LoadFrontEnd(const std::string& model_dir, const FrontEndOptions& options,
                                      int max_context_tokens) {
  FrontEnd front_end;
  front_end.fetcher = std::make_unique<ImageFetcher>(options.fetch);
  MistralTokenizerOptions tokenizer_options;
  // The fetcher lives on the heap, so the tokenizer's pointer to it survives moves of FrontEnd.
  tokenizer_options.fetch_image = [fetcher = front_end.fetcher.get()](absl::string_view url) {
    return fetcher->Fetch(url);
  };
  tokenizer_options.decode_limits = options.decode_limits;
  tokenizer_options.pixel_form = options.pixel_form;
  tokenizer_options.max_images = options.max_images_per_request;
  tokenizer_options.max_prompt_tokens =
      options.max_prompt_tokens > 0 ? std::min(options.max_prompt_tokens, max_context_tokens)
                                    : max_context_tokens;
  PIXTRAL_ASSIGN_OR_RETURN(
      front_end.tokenizer,
      MistralTokenizer::FromFile((std::filesystem::path(model_dir) / "tekken.json").string(),
                                 std::move(tokenizer_options)));
  return front_end;
}

}  // namespace pixtral
