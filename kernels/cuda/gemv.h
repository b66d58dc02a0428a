// The matrix-vector product of decoding one sequence: y[1, N] = x[1, K] · w[N, K]ᵀ with bf16
// weights and float32 activations and accumulation.
//
// At one row a MatMul only streams its weight matrix, so this kernel reads each weight row once
// with 16-byte loads (one warp per row) and the activations as float32 straight from global
// memory (L1-cached), with no conversion of x to bf16 beforehand. From two rows on, the tuned
// GEMMs are faster (on an H200 this kernel's 4-row products took 13.6 ms a Pixtral-12B step,
// cuBLAS's 8-row ones 6.9).
//
// The pre-norm before a product, the SwiGLU after the stacked w1/w3 one and the residual add
// after one can ride along (RmsNormMatMul, RmsNormMatMulSwiGlu, MatMulAddTo in
// kernels/backend.h), each sparing a decode step one small kernel a use.
//
//   GemvParams p{.x = x, .w = w_bf16, .y = y, .rows = 1, .k = 5120, .n = 4096};
//   if (GemvApplies(p)) CUDA_CHECK(LaunchGemvBf16(p, stream));
#ifndef PIXTRAL_KERNELS_CUDA_GEMV_H_
#define PIXTRAL_KERNELS_CUDA_GEMV_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

// The rows (tokens) the GEMV takes; more go to the tuned GEMMs.
constexpr int64_t kGemvMaxRows = 1;

struct GemvParams {
  const float* x;     // [rows, k], rows contiguous
  const uint16_t* w;  // bf16 bit patterns [n, k]
  float* y;           // [rows, n]
  int64_t rows;
  int64_t k;
  int64_t n;
  int sm_count = 132;  // the device's multiprocessors: the grid is sized by them
  // Where set, x is RmsNorm'ed first: x / sqrt(mean(x²) + eps) * norm_weight[k] (bf16 or f32),
  // its statistics gathered in the same pass over x as the products (no normalized copy of x).
  const void* norm_weight = nullptr;
  bool norm_weight_bf16 = true;
  float eps = 0.0f;
  bool accumulate = false;  // y += x · wᵀ (a residual add) instead of y = x · wᵀ
  // w stacks w1 over w3 (n = 2F rows) and y [rows, F] = silu(x · w1ᵀ) * (x · w3ᵀ): SwiGLU in the
  // product; not with accumulate.
  bool swiglu = false;
};

// Whether LaunchGemvBf16 takes these: rows == kGemvMaxRows, k a positive multiple of 8,
// x, w and norm_weight 16-byte aligned, n positive and within the grid (swiglu: as its comment
// says).
bool GemvApplies(const GemvParams& params);

// Returns cudaErrorInvalidValue where GemvApplies is false.
cudaError_t LaunchGemvBf16(const GemvParams& params, cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_GEMV_H_
