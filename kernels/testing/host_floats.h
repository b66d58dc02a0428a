// Test helper: a host tensor's values (a CPU backend's, f32 or bf16) as floats.
#ifndef PIXTRAL_KERNELS_TESTING_HOST_FLOATS_H_
#define PIXTRAL_KERNELS_TESTING_HOST_FLOATS_H_

#include <cstdint>
#include <vector>

#include "common/dtype.h"
#include "kernels/tensor.h"

namespace pixtral::kernels {

inline std::vector<float> HostFloats(const Tensor& t) {
  std::vector<float> out(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    out[i] = t.dtype() == DType::kBF16 ? Bf16ToFloat(t.data<uint16_t>()[i]) : t.data<float>()[i];
  }
  return out;
}

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_TESTING_HOST_FLOATS_H_
