// The tekken encoder on untrusted text (Pixtral's real vocabulary): never a crash, and any text it
// accepts decodes back to exactly the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/tekken.h"

namespace {
const pixtral::TekkenTokenizer* tokenizer = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("PIXTRAL_TEKKEN_JSON");
  auto loaded = pixtral::TekkenTokenizer::FromFile(
      path != nullptr ? path : "tests/data/generated/tekken.json");
  if (!loaded.ok()) std::abort();  // run from the repository root, after tools/setup.sh
  tokenizer = loaded->release();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<int>> ids = tokenizer->Encode(text, /*bos=*/false, /*eos=*/false);
  if (!ids.ok()) return 0;  // not UTF-8
  absl::StatusOr<std::string> back = tokenizer->Decode(*ids, pixtral::SpecialTokenPolicy::kRaise);
  if (!back.ok() || *back != text) __builtin_trap();
  return 0;
}
