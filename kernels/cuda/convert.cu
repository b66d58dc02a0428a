#include <cuda_bf16.h>

#include "kernels/cuda/convert.h"
#include "kernels/cuda/launch.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kThreadsPerBlock = 256;
// Grid-stride loops: enough blocks to fill an H100 (132 SMs) several times over.
constexpr int kMaxBlocks = 132 * 8;

int BlocksFor(int64_t count) {
  const int64_t blocks = (count + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

__global__ void Bf16ToF32Kernel(Bf16ToF32Params p) {
  StartAfterPriorKernels();
  const auto* src = reinterpret_cast<const __nv_bfloat16*>(p.src);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.count;
       i += int64_t{gridDim.x} * blockDim.x) {
    p.dst[i] = __bfloat162float(src[i]);
  }
}

__global__ void F32ToBf16Kernel(F32ToBf16Params p) {
  StartAfterPriorKernels();
  auto* dst = reinterpret_cast<__nv_bfloat16*>(p.dst);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.count;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = __float2bfloat16_rn(p.src[i]);
  }
}

}  // namespace

cudaError_t LaunchBf16ToF32(const Bf16ToF32Params& params, cudaStream_t stream) {
  if (params.count < 0) return cudaErrorInvalidValue;
  if (params.count == 0) return cudaSuccess;
  Launch(Bf16ToF32Kernel, BlocksFor(params.count), kThreadsPerBlock, 0, stream, params);
  return cudaGetLastError();
}

cudaError_t LaunchF32ToBf16(const F32ToBf16Params& params, cudaStream_t stream) {
  if (params.count < 0) return cudaErrorInvalidValue;
  if (params.count == 0) return cudaSuccess;
  Launch(F32ToBf16Kernel, BlocksFor(params.count), kThreadsPerBlock, 0, stream, params);
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
