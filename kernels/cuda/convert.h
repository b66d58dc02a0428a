// Element-wise dtype conversion on the GPU: bf16 weights and activations to float32 and back.
//
// The CUDA backend keeps weights in bf16 and accumulates in float32; these are the conversions at
// its edges (reading back logits, uploading float32 image features).
//
//   Bf16ToF32Params p{.src = d_bf16, .dst = d_f32, .count = n};
//   CUDA_CHECK(LaunchBf16ToF32(p, stream));
#ifndef PIXTRAL_KERNELS_CUDA_CONVERT_H_
#define PIXTRAL_KERNELS_CUDA_CONVERT_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

struct Bf16ToF32Params {
  const uint16_t* src;  // bf16 bit patterns
  float* dst;
  int64_t count;
};

struct F32ToBf16Params {
  const float* src;
  uint16_t* dst;  // bf16 bit patterns, rounded to nearest even
  int64_t count;
};

cudaError_t LaunchBf16ToF32(const Bf16ToF32Params& params, cudaStream_t stream);
cudaError_t LaunchF32ToBf16(const F32ToBf16Params& params, cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_CONVERT_H_
