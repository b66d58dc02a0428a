// tekken.json loading on untrusted files: malformed JSON, wrong types, bad base64, bad patterns.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/tekken.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tokenizer = pixtral::TekkenTokenizer::FromJson(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (tokenizer.ok()) {
    // A loaded tokenizer must encode and decode without crashing.
    auto ids = (*tokenizer)->Encode("abc d\xC3\xA9", /*bos=*/true, /*eos=*/true);
    if (ids.ok()) (void)(*tokenizer)->Decode(*ids, pixtral::SpecialTokenPolicy::kKeep);
  }
  return 0;
}
