// safetensors headers and tensor data from untrusted bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = pixtral::SafetensorsFile::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) return 0;
  for (const pixtral::TensorView& tensor : (*file)->tensors()) {
    (void)pixtral::ToFloat32(tensor);
    (void)pixtral::ToInt64(tensor);
  }
  return 0;
}
