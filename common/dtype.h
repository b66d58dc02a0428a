// Element types of model tensors, as safetensors names them, and bf16 <-> float32 conversion.
//
//   absl::StatusOr<DType> t = ParseDType("BF16");   // DType::kBF16
//   DTypeSize(*t);                                   // 2
//   float x = Bf16ToFloat(0x3f80);                   // 1.0f
#ifndef PIXTRAL_COMMON_DTYPE_H_
#define PIXTRAL_COMMON_DTYPE_H_

#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pixtral {

enum class DType { kBF16, kF16, kF32, kI64, kI32, kU8 };

// Bytes per element.
int DTypeSize(DType dtype);

// The safetensors spelling: "BF16", "F16", "F32", "I64", "I32", "U8".
absl::string_view DTypeName(DType dtype);

// Inverse of DTypeName; any other spelling is InvalidArgument.
absl::StatusOr<DType> ParseDType(absl::string_view name);

// bf16 is the top half of an IEEE float32, so widening is exact.
inline float Bf16ToFloat(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

// Round to nearest even, as PyTorch does; NaN stays NaN.
inline uint16_t FloatToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// IEEE half precision to float32, subnormals and infinities included.
float F16ToFloat(uint16_t bits);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_DTYPE_H_
