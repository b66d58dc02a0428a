// A public ChatCompletionRequest from untrusted bytes, through the gateway's conversion and the
// chat encoder (real vocabulary, inline images with small limits, no URL fetching).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/chat_encoder.h"
#include "proto/gateway.pb.h"
#include "services/gateway/proto_convert.h"

namespace {
const pixtral::MistralTokenizer* tokenizer = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("PIXTRAL_TEKKEN_JSON");
  pixtral::MistralTokenizerOptions options;
  options.decode_limits.max_pixels = 1 << 18;
  options.decode_limits.max_side = 2048;
  options.decode_limits.max_jpeg_scan_pixels = int64_t{1} << 22;
  options.max_images = 4;
  auto loaded = pixtral::MistralTokenizer::FromFile(
      path != nullptr ? path : "tests/data/generated/tekken.json", options);
  if (!loaded.ok()) std::abort();
  tokenizer = loaded->release();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pixtral::v1::ChatCompletionRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto chat = pixtral::FromProto(request, {.max_image_bytes = 1 << 16, .max_messages = 32});
  if (!chat.ok()) return 0;
  (void)pixtral::FromProto(request.sampling());
  (void)tokenizer->EncodeChatCompletion(*chat);
  return 0;
}
