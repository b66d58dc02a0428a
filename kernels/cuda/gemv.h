// Matrix-vector products for the few-row MatMuls of decoding: y[T, N] = x[T, K] · w[N, K]ᵀ with
// bf16 weights and float32 activations and accumulation, for T <= kGemvMaxRows.
//
// At one to a few rows a MatMul only streams its weight matrix, so this kernel reads each weight
// row once with 16-byte loads (one warp per row) and the activations as float32 straight from
// global memory (L1-cached), with no conversion of x to bf16 beforehand.
//
//   GemvParams p{.x = x, .w = w_bf16, .y = y, .rows = 1, .k = 5120, .n = 4096};
//   if (GemvApplies(p)) CUDA_CHECK(LaunchGemvBf16(p, stream));
#ifndef PIXTRAL_KERNELS_CUDA_GEMV_H_
#define PIXTRAL_KERNELS_CUDA_GEMV_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

// The most rows (tokens) one launch handles: beyond it the activations, read once per weight
// row, outweigh the weights and a GEMM does better.
constexpr int64_t kGemvMaxRows = 4;

struct GemvParams {
  const float* x;     // [rows, k], rows contiguous
  const uint16_t* w;  // bf16 bit patterns [n, k]
  float* y;           // [rows, n]
  int64_t rows;
  int64_t k;
  int64_t n;
  int sm_count = 132;  // the device's multiprocessors: the grid is sized by them
};

// Whether LaunchGemvBf16 takes these: 1 <= rows <= kGemvMaxRows, k a positive multiple of 8,
// x and w 16-byte aligned, n positive and within the grid.
bool GemvApplies(const GemvParams& params);

// Returns cudaErrorInvalidValue where GemvApplies is false.
cudaError_t LaunchGemvBf16(const GemvParams& params, cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_GEMV_H_
