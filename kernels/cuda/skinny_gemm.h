// A tensor-core matrix product for the skinny shapes of decoding: y[rows, n] (f32) =
// x[rows, k] (bf16) · w[n, k]ᵀ (bf16) for 1 to 64 token rows, where the time is the stream of the
// weight matrix and cuBLAS's kernels (built for square tiles) leave bandwidth unused.
//
// Each warp owns 16 weight rows and reads them straight from global memory with 16-byte loads
// (one stage of 128 k ahead in registers); the block's 8 warps share each 128-wide slice of x,
// staged in shared memory by cp.async. The products are mma.sync m16n8k16 with the weights as A
// and x as B, so no weight byte is touched twice; small n are split over k (split-K) into
// partial sums that a second kernel adds.
//
//   SkinnyGemmParams p{.x = x16, .w = w, .y = y, .rows = 16, .k = 5120, .n = 6144};
//   p.splits = ChooseSkinnySplits(p.rows, p.k, p.n, sm_count, workspace_bytes);
//   p.partials = workspace;  // f32 [splits, rows, n] when splits > 1
//   if (SkinnyGemmApplies(p)) CUDA_CHECK(LaunchSkinnyGemm(p, stream));
#ifndef PIXTRAL_KERNELS_CUDA_SKINNY_GEMM_H_
#define PIXTRAL_KERNELS_CUDA_SKINNY_GEMM_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace pixtral::cuda {

constexpr int64_t kSkinnyMaxRows = 64;

struct SkinnyGemmParams {
  const uint16_t* x;  // bf16 [rows, k]
  const uint16_t* w;  // bf16 [n, k]
  float* y;           // [rows, n]
  int64_t rows;
  int64_t k;
  int64_t n;
  int splits = 1;             // slices of k, each its own partial sum
  float* partials = nullptr;  // f32 [splits, rows, n] when splits > 1
};

// Whether LaunchSkinnyGemm takes these: 1 <= rows <= kSkinnyMaxRows, k a positive multiple of
// 128, n a positive multiple of 16, x and w 16-byte aligned, 1 <= splits <= k / 128 and partials
// given when splits > 1.
bool SkinnyGemmApplies(const SkinnyGemmParams& params);

// Splits of k that give the grid about two blocks per SM, at least 4 slices of 128 each, whose
// partial sums fit in `workspace_bytes`.
int ChooseSkinnySplits(int64_t rows, int64_t k, int64_t n, int sm_count, size_t workspace_bytes);

// Returns cudaErrorInvalidValue where SkinnyGemmApplies is false.
cudaError_t LaunchSkinnyGemm(const SkinnyGemmParams& params, cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_SKINNY_GEMM_H_
