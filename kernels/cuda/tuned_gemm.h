// Matrix products through cuBLASLt with the algorithm chosen by measurement, once per shape.
//
// cuBLAS's default heuristic picks one kernel per shape; for the skinny products of decoding
// (a few to a few hundred token rows against a large weight matrix) the fastest of its candidates
// is often another. TunedGemm asks cuBLASLt for its candidates the first time a shape is seen,
// times each on the real operands with device events, and keeps the fastest for that shape. The
// project's own skinny kernel (skinny_gemm.h) is one more candidate where it applies.
//
//   TunedGemm gemm(stream);
//   CUDA_CHECK(gemm.Init());
//   gemm.Run({.x = x_bf16, .w = w_bf16, .y = y_f32, .rows = 64, .k = 5120, .n = 14336});
//
// Tuning synchronizes the stream (device events), so the first product of a shape must not be
// issued inside a CUDA graph capture. Not thread-safe; one per stream.
#ifndef PIXTRAL_KERNELS_CUDA_TUNED_GEMM_H_
#define PIXTRAL_KERNELS_CUDA_TUNED_GEMM_H_

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "kernels/cuda/skinny_gemm.h"

namespace pixtral::cuda {

// y[rows, n] (f32) = x[rows, k] (bf16) · w[n, k]ᵀ (bf16), row-major, f32 accumulation.
struct GemmParams {
  const void* x;
  const void* w;
  float* y;
  int64_t rows;
  int64_t k;
  int64_t n;
};

class TunedGemm {
 public:
  // Shapes with more rows than this (prompt chunks) take cuBLASLt's first candidate untimed:
  // they are many and each is seen rarely.
  static constexpr int64_t kMaxTunedRows = 512;

  explicit TunedGemm(cudaStream_t stream) : stream_(stream) {}
  ~TunedGemm();
  TunedGemm(const TunedGemm&) = delete;
  TunedGemm& operator=(const TunedGemm&) = delete;

  absl::Status Init();
  absl::Status Run(const GemmParams& params);

 private:
  // The descriptors of one shape and its chosen algorithm.
  struct Plan {
    ~Plan();
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    size_t workspace = 0;
    int skinny_splits = 0;  // > 0: the skinny kernel with these splits won the timing
  };
  absl::Status MakePlan(const GemmParams& params, Plan& plan);
  // The skinny kernel's launch for these operands, the workspace taking its partial sums.
  SkinnyGemmParams Skinny(const GemmParams& params, int splits) const;

  cudaStream_t stream_;
  int sm_count_ = 132;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  // By (rows, k, n).
  absl::flat_hash_map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<Plan>> plans_;
};

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_TUNED_GEMM_H_
