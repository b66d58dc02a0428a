// params.json parsing from untrusted text.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)pixtral::ParseModelConfig(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
