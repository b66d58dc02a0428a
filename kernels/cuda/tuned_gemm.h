// Matrix products through cuBLASLt with the algorithm chosen by measurement, once per shape.
//
// cuBLAS's default heuristic picks one kernel per shape; for the skinny products of decoding
// (a few to a few hundred token rows against a large weight matrix) the fastest of its candidates
// is often another. TunedGemm asks cuBLASLt for its candidates the first time a shape is seen,
// times each on the real operands with device events, and keeps the fastest for that shape.
// Decode batches (up to kMaxExactRows rows) are tuned row count by row count. Larger shapes are
// timed once per bucket of row counts and the bucket's winner is reused for every row count in
// it when cuBLASLt accepts it for that shape (cublasLtMatmulAlgoCheck): decode rows with small
// prompt chunks (up to kMaxTunedRows) with every candidate, prompt shapes with fewer candidates
// and runs; PIXTRAL_TUNE_PROMPT_GEMMS=0 takes the heuristic's first candidate for prompt shapes
// instead, untimed. (A steady serving load brings a new row count every few steps: tuned one by
// one, each would stall a step for tens of milliseconds.)
//
// The output is f32 or bf16, and the epilogue may add a bias (per output column) and apply GELU,
// so a product's consumer can read bf16 straight from it with no conversion pass.
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
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"

namespace pixtral::cuda {

// What the epilogue applies after the product, in this order: the bias, then the activation.
enum class GemmActivation { kNone, kGelu };

// y[rows, n] = act(x[rows, k] (bf16) · w[n, k]ᵀ (bf16) + bias[n]), row-major, f32 accumulation;
// y is f32 or bf16 (rounded once, from the f32 result).
struct GemmParams {
  const void* x;
  const void* w;
  void* y;
  int64_t rows;
  int64_t k;
  int64_t n;
  bool y_bf16 = false;
  const void* bias = nullptr;  // device, [n]; nullptr: none
  bool bias_bf16 = false;      // its element type: bf16 or f32
  GemmActivation activation = GemmActivation::kNone;
};

class TunedGemm {
 public:
  // Shapes with more rows than this share the tuning of their bucket of row counts.
  static constexpr int64_t kMaxExactRows = 64;
  // Shapes with more rows than this (prompt chunks) are tuned with fewer candidates.
  static constexpr int64_t kMaxTunedRows = 512;

  explicit TunedGemm(cudaStream_t stream);
  ~TunedGemm();
  TunedGemm(const TunedGemm&) = delete;
  TunedGemm& operator=(const TunedGemm&) = delete;

  absl::Status Init();
  // UnimplementedError when cuBLASLt has no algorithm for the params' epilogue (a bias of that
  // element type with that output type, or GELU): the caller then runs the plain product and
  // applies the epilogue itself. Other errors are failures.
  absl::Status Run(const GemmParams& params);

  // The bucket of row counts whose tuning a shape of `rows` rows shares: rows itself up to
  // kMaxExactRows, then rounded up to a multiple of 32 up to kMaxTunedRows (as the decode graphs
  // bucket their rows, so each of those is tuned for itself), of 512 up to 8192,
  // of 2048 beyond.
  static int64_t RowBucket(int64_t rows);

 private:
  // The descriptors of one shape and its chosen algorithm.
  struct Plan {
    ~Plan();
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    size_t workspace = 0;
  };
  // (rows, k, n, y_bf16, bias kind (0 none, 1 f32, 2 bf16), activation).
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, int, int>;
  static Key KeyOf(const GemmParams& params, int64_t rows);
  absl::Status MakePlan(const GemmParams& params, Plan& plan);
  // The descriptors of the params' shape and epilogue into plan (no algorithm yet).
  absl::Status Describe(const GemmParams& params, Plan& plan);
  // Times `found` candidates on the real operands; the index of the fastest.
  int Fastest(const GemmParams& params, const Plan& plan,
              const cublasLtMatmulHeuristicResult_t* results, int found, int runs);

  cudaStream_t stream_;
  bool tune_prompts_ = true;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  absl::flat_hash_map<Key, std::unique_ptr<Plan>> plans_;
  // The winner of each bucket, keyed as plans_ with the bucket for rows.
  absl::flat_hash_map<Key, cublasLtMatmulAlgo_t> bucket_algos_;
  // Keys whose epilogue cuBLASLt has no algorithm for: answered at once the next time.
  absl::flat_hash_set<Key> unsupported_;
};

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_TUNED_GEMM_H_
