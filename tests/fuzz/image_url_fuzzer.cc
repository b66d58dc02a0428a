// Image URLs from clients: data: URIs (decoded in process) and address literals (the SSRF check).
// Only inputs that cannot reach the network are fetched: data: URIs, and local paths with local
// files disabled.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "common/image_fetcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  (void)pixtral::IsPublicIpAddress(input);
  static const pixtral::ImageFetcher* const fetcher =
      new pixtral::ImageFetcher({.max_bytes = 1 << 16});
  (void)fetcher->Fetch("data:" + input);
  if (!absl::StrContains(input, "://")) (void)fetcher->Fetch(input);
  (void)fetcher->Fetch("file://" + input);
  return 0;
}
