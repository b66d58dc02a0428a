// The CUDA backend's element-wise, per-row and indexing kernels: one params struct and one
// launcher per op. Launchers check sizes, pick the grid and return the launch's cudaError_t;
// they never synchronize. Pointers are device addresses; activations are float32 (bf16 where a
// `*_bf16` flag says so: outputs that feed a GEMM), weights (`*_type`) bf16 bit patterns or
// float32.
//
//   RmsNormParams p{.x = x, .weight = w, .weight_type = WeightType::kBF16, .y = y,
//                   .rows = tokens, .dim = 5120, .eps = 1e-5f};
//   CUDA_CHECK(LaunchRmsNorm(p, stream));
#ifndef PIXTRAL_KERNELS_CUDA_OPS_H_
#define PIXTRAL_KERNELS_CUDA_OPS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

enum class WeightType { kBF16, kF32 };

// out = a + b.
struct AddParams {
  const float* a;
  const float* b;
  float* out;
  int64_t count;
};

// out = silu(gate) * up.
struct SiluMulParams {
  const float* gate;
  const float* up;
  float* out;
  int64_t count;
};

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, cols + i] for out [rows, cols]; each of gate_up
// and out f32 or bf16.
struct SwiGluParams {
  const void* gate_up;
  void* out;
  int64_t rows;
  int64_t cols;
  bool gate_up_bf16 = false;
  bool out_bf16 = false;
};

// Column ranges of x [rows, sum of widths] into parts[i] [rows, widths[i]], i < num_parts <= 4.
struct SplitColumnsParams {
  const float* x;
  float* parts[4];
  int64_t widths[4];
  int num_parts;
  int64_t rows;
};

// y = gelu(x), exact erf form.
struct GeluParams {
  const float* x;
  float* y;
  int64_t count;
};

// y[r, c] = act(y[r, c] + bias[c]) for a [rows, cols] matrix, f32 or bf16 (a GEMM's output);
// bias may be nullptr; act is the identity or, with gelu, the exact erf GELU.
struct AddBiasParams {
  void* y;
  const void* bias;
  WeightType bias_type;
  int64_t rows;
  int64_t cols;
  bool y_bf16 = false;
  bool gelu = false;
};

// y = x / sqrt(mean(x²) + eps) * weight, per row of `dim`. y (f32 or bf16) may be x.
struct RmsNormParams {
  const float* x;
  const void* weight;
  WeightType weight_type;
  void* y;
  int64_t rows;
  int64_t dim;
  float eps;
  bool y_bf16 = false;
};

// x += delta, then normed = RmsNorm(x) with weight, per row of `dim`. normed (f32 or bf16) may
// be delta or x.
struct AddRmsNormParams {
  float* x;
  const float* delta;
  const void* weight;
  WeightType weight_type;
  void* normed;
  int64_t rows;
  int64_t dim;
  float eps;
  bool normed_bf16 = false;
};

// y = softmax(x) per row of `cols`. y may be x.
struct SoftmaxParams {
  const float* x;
  float* y;
  int64_t rows;
  int64_t cols;
};

// Rotates x[tokens, heads, 2 * half] in place by cos_sin[tokens, half, 2] (interleaved pairs).
struct RopeParams {
  float* x;
  const float* cos_sin;
  int64_t tokens;
  int64_t heads;
  int64_t half;
};

// out[i, :] = table[ids[i], :]. An id outside [0, table_rows) gives a row of NaN.
struct GatherParams {
  const void* table;
  WeightType table_type;
  int64_t table_rows;
  const int32_t* ids;
  float* out;
  int64_t count;
  int64_t dim;
};

// dst[rows[i], :] = src[i, :]. A row outside [0, dst_rows) is skipped.
struct ScatterParams {
  const float* src;
  const int32_t* rows;
  float* dst;
  int64_t count;
  int64_t dst_rows;
  int64_t dim;
};

// im2col of a stride-p, p×p convolution: image[channels, height, width] ->
// out[(height/p) * (width/p), channels * p * p].
struct PatchifyParams {
  const float* image;
  float* out;
  int64_t channels;
  int64_t height;
  int64_t width;
  int64_t patch;
};

cudaError_t LaunchAdd(const AddParams& params, cudaStream_t stream);
cudaError_t LaunchSiluMul(const SiluMulParams& params, cudaStream_t stream);
cudaError_t LaunchSwiGlu(const SwiGluParams& params, cudaStream_t stream);
cudaError_t LaunchSplitColumns(const SplitColumnsParams& params, cudaStream_t stream);
cudaError_t LaunchGelu(const GeluParams& params, cudaStream_t stream);
cudaError_t LaunchAddBias(const AddBiasParams& params, cudaStream_t stream);
cudaError_t LaunchRmsNorm(const RmsNormParams& params, cudaStream_t stream);
cudaError_t LaunchAddRmsNorm(const AddRmsNormParams& params, cudaStream_t stream);
cudaError_t LaunchSoftmax(const SoftmaxParams& params, cudaStream_t stream);
cudaError_t LaunchRope(const RopeParams& params, cudaStream_t stream);
cudaError_t LaunchGather(const GatherParams& params, cudaStream_t stream);
cudaError_t LaunchScatter(const ScatterParams& params, cudaStream_t stream);
cudaError_t LaunchPatchify(const PatchifyParams& params, cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_OPS_H_
