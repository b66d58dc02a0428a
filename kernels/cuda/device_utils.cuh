// Device helpers shared by the backend's kernels: loads of bf16 or f32 values as float, and
// block-wide sum and max reductions. Included by .cu files only.
#ifndef PIXTRAL_KERNELS_CUDA_DEVICE_UTILS_CUH_
#define PIXTRAL_KERNELS_CUDA_DEVICE_UTILS_CUH_

#include <cuda_bf16.h>

#include <cstdint>

namespace pixtral::cuda {

constexpr int kWarpSize = 32;

__device__ __forceinline__ float LoadFloat(const float* p) { return *p; }
__device__ __forceinline__ float LoadFloat(const __nv_bfloat16* p) { return __bfloat162float(*p); }

__device__ __forceinline__ void StoreFloat(float* p, float v) { *p = v; }
__device__ __forceinline__ void StoreFloat(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename Op>
__device__ __forceinline__ float WarpReduce(float v, Op op) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Reduces `v` over the whole block (blockDim.x a multiple of 32, at most 1024) and returns the
// result to every thread. `scratch` holds one float per warp. Contains barriers: every thread of
// the block must call it.
template <typename Op>
__device__ float BlockReduce(float v, Op op, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = WarpReduce(v, op);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < warps; ++w) v = op(v, scratch[w]);
  return v;
}

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_DEVICE_UTILS_CUH_
