#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

namespace pixtral::cuda {
namespace {

// Element-wise ops: grid-stride loops, enough blocks to fill an H100 (132 SMs) several times.
constexpr int kElementThreads = 256;
constexpr int kMaxElementBlocks = 132 * 8;
// Per-row ops (Softmax, Gather, Scatter): one block per row.
constexpr int kRowThreads = 256;
// Grid dimensions beyond 65535 are only allowed in x.
constexpr int64_t kMaxGridX = (int64_t{1} << 31) - 1;

int ElementBlocks(int64_t count) {
  const int64_t blocks = (count + kElementThreads - 1) / kElementThreads;
  return static_cast<int>(blocks < kMaxElementBlocks ? blocks : kMaxElementBlocks);
}

template <typename F>
__global__ void ElementWiseKernel(int64_t count, F f) {
  StartAfterPriorKernels();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    f(i);
  }
}

template <typename F>
cudaError_t LaunchElementWise(int64_t count, cudaStream_t stream, F f) {
  if (count < 0) return cudaErrorInvalidValue;
  if (count == 0) return cudaSuccess;
  Launch(ElementWiseKernel<F>, ElementBlocks(count), kElementThreads, 0, stream, count, f);
  return cudaGetLastError();
}

bool RowsFitGrid(int64_t rows) { return rows >= 0 && rows <= kMaxGridX; }

__device__ __forceinline__ float ExactGelu(float v) {
  return 0.5f * v * (1.0f + erff(v * static_cast<float>(M_SQRT1_2)));
}

template <typename W, typename Y>
__global__ void AddBiasKernel(AddBiasParams p) {
  StartAfterPriorKernels();
  const W* bias = static_cast<const W*>(p.bias);
  Y* y = static_cast<Y*>(p.y);
  const int64_t count = p.rows * p.cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    float v = LoadFloat(y + i);
    if (bias != nullptr) v += LoadFloat(bias + i % p.cols);
    StoreFloat(y + i, p.gelu ? ExactGelu(v) : v);
  }
}

// RmsNorm: one block of 1024 threads per row; each thread issues all its loads of a pass at
// once (the weights come from DRAM at every call, the row from L2), since one row per block at
// decode leaves nothing else to hide their latency. With kAdd, the first pass also adds delta
// and stores the sum to sum_out (AddRmsNorm: sum_out is x itself); every element is read and
// written by the same thread in both passes, so y may alias x or delta.
constexpr int kRmsNormThreads = 1024;
constexpr int kRmsNormPerThread = 8;

struct RmsNormRows {
  const float* x;
  const float* delta;  // kAdd only, as is sum_out
  float* sum_out;
  const void* weight;
  void* y;  // float or bf16, as the kernel's Y
  int64_t dim;
  float eps;
};

template <typename W, typename Y, bool kAdd>
__global__ void __launch_bounds__(kRmsNormThreads) RmsNormKernel(RmsNormRows p) {
  StartAfterPriorKernels();
  __shared__ float scratch[kRmsNormThreads / kWarpSize];
  const float* x = p.x + blockIdx.x * p.dim;
  Y* y = static_cast<Y*>(p.y) + blockIdx.x * p.dim;
  const W* weight = static_cast<const W*>(p.weight);
  const int64_t stride = blockDim.x, span = stride * kRmsNormPerThread;
  float sum = 0.0f;
  for (int64_t base = threadIdx.x; base < p.dim; base += span) {
    float v[kRmsNormPerThread];
#pragma unroll
    for (int j = 0; j < kRmsNormPerThread; ++j) {
      v[j] = base + j * stride < p.dim ? x[base + j * stride] : 0.0f;
    }
    if constexpr (kAdd) {
      const float* delta = p.delta + blockIdx.x * p.dim;
      float* sum_out = p.sum_out + blockIdx.x * p.dim;
#pragma unroll
      for (int j = 0; j < kRmsNormPerThread; ++j) {
        if (base + j * stride < p.dim) v[j] += delta[base + j * stride];
      }
#pragma unroll
      for (int j = 0; j < kRmsNormPerThread; ++j) {
        if (base + j * stride < p.dim) sum_out[base + j * stride] = v[j];
      }
    }
#pragma unroll
    for (int j = 0; j < kRmsNormPerThread; ++j) sum += v[j] * v[j];
  }
  sum = BlockReduce(sum, SumOp(), scratch);
  const float inv = rsqrtf(sum / static_cast<float>(p.dim) + p.eps);
  for (int64_t base = threadIdx.x; base < p.dim; base += span) {
    float v[kRmsNormPerThread], w[kRmsNormPerThread];
#pragma unroll
    for (int j = 0; j < kRmsNormPerThread; ++j) {
      const int64_t i = base + j * stride;
      v[j] = i < p.dim ? x[i] : 0.0f;
      w[j] = i < p.dim ? LoadFloat(weight + i) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kRmsNormPerThread; ++j) {
      if (base + j * stride < p.dim) StoreFloat(y + base + j * stride, v[j] * inv * w[j]);
    }
  }
}

// RmsNorm of many rows (prompts): 256 threads a row with 16-byte accesses, each thread keeping
// its float4s in registers from the sum to the scaling (the row is read once), several rows to an
// SM. Rows of up to kRmsVecThreads * 4 * kRmsVecPerThread elements, a multiple of 4.
constexpr int kRmsVecThreads = 256;
constexpr int kRmsVecPerThread = 8;
// Fewer rows keep the 1024-thread kernel (decode); PIXTRAL_RMSNORM_VEC_MIN_ROWS overrides it
// (for tuning runs).
int64_t RmsVecMinRows() {
  static const int64_t rows = [] {
    const char* set = std::getenv("PIXTRAL_RMSNORM_VEC_MIN_ROWS");
    const long long value = set != nullptr ? std::atoll(set) : 0;
    return value > 0 ? static_cast<int64_t>(value) : int64_t{512};
  }();
  return rows;
}

__device__ __forceinline__ float4 Add4(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

template <typename W, typename Y, bool kAdd>
__global__ void __launch_bounds__(kRmsVecThreads) RmsNormVecKernel(RmsNormRows p) {
  StartAfterPriorKernels();
  __shared__ float scratch[kRmsVecThreads / kWarpSize];
  const int64_t offset = blockIdx.x * p.dim;
  const int vecs = static_cast<int>(p.dim / 4);
  float4 v[kRmsVecPerThread];
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kRmsVecPerThread; ++j) {
    const int i = threadIdx.x + j * kRmsVecThreads;
    if (i >= vecs) break;
    v[j] = Load4(p.x + offset + 4 * i);
    if constexpr (kAdd) {
      v[j] = Add4(v[j], Load4(p.delta + offset + 4 * i));
      Store4(p.sum_out + offset + 4 * i, v[j]);
    }
    sum += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
  }
  sum = BlockReduce(sum, SumOp(), scratch);
  const float inv = rsqrtf(sum / static_cast<float>(p.dim) + p.eps);
  const W* weight = static_cast<const W*>(p.weight);
  Y* y = static_cast<Y*>(p.y) + offset;
#pragma unroll
  for (int j = 0; j < kRmsVecPerThread; ++j) {
    const int i = threadIdx.x + j * kRmsVecThreads;
    if (i >= vecs) break;
    const float4 w = Load4(weight + 4 * i);
    Store4(y + 4 * i, make_float4(v[j].x * inv * w.x, v[j].y * inv * w.y, v[j].z * inv * w.z,
                                  v[j].w * inv * w.w));
  }
}

bool Aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <bool kAdd>
bool RmsNormVecApplies(const RmsNormRows& p, int64_t rows) {
  return rows >= RmsVecMinRows() && p.dim % 4 == 0 &&
         p.dim <= 4 * kRmsVecThreads * kRmsVecPerThread && Aligned(p.x, 16) && Aligned(p.y, 16) &&
         Aligned(p.weight, 8) && (!kAdd || (Aligned(p.delta, 16) && Aligned(p.sum_out, 16)));
}

template <bool kAdd>
cudaError_t LaunchRmsNormRows(const RmsNormRows& p, WeightType weight_type, bool y_bf16,
                              int64_t rows, cudaStream_t stream) {
  if (!RowsFitGrid(rows) || p.dim <= 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>(rows);
  const bool w16 = weight_type == WeightType::kBF16;
  if (RmsNormVecApplies<kAdd>(p, rows)) {
    if (w16 && y_bf16) {
      Launch(RmsNormVecKernel<__nv_bfloat16, __nv_bfloat16, kAdd>, grid, kRmsVecThreads, 0, stream,
             p);
    } else if (w16) {
      Launch(RmsNormVecKernel<__nv_bfloat16, float, kAdd>, grid, kRmsVecThreads, 0, stream, p);
    } else if (y_bf16) {
      Launch(RmsNormVecKernel<float, __nv_bfloat16, kAdd>, grid, kRmsVecThreads, 0, stream, p);
    } else {
      Launch(RmsNormVecKernel<float, float, kAdd>, grid, kRmsVecThreads, 0, stream, p);
    }
    return cudaGetLastError();
  }
  if (w16 && y_bf16) {
    Launch(RmsNormKernel<__nv_bfloat16, __nv_bfloat16, kAdd>, grid, kRmsNormThreads, 0, stream, p);
  } else if (w16) {
    Launch(RmsNormKernel<__nv_bfloat16, float, kAdd>, grid, kRmsNormThreads, 0, stream, p);
  } else if (y_bf16) {
    Launch(RmsNormKernel<float, __nv_bfloat16, kAdd>, grid, kRmsNormThreads, 0, stream, p);
  } else {
    Launch(RmsNormKernel<float, float, kAdd>, grid, kRmsNormThreads, 0, stream, p);
  }
  return cudaGetLastError();
}

__global__ void SoftmaxKernel(SoftmaxParams p) {
  StartAfterPriorKernels();
  __shared__ float scratch[kRowThreads / kWarpSize];
  const float* x = p.x + blockIdx.x * p.cols;
  float* y = p.y + blockIdx.x * p.cols;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < p.cols; i += blockDim.x) m = fmaxf(m, x[i]);
  m = BlockReduce(m, MaxOp(), scratch);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < p.cols; i += blockDim.x) sum += expf(x[i] - m);
  sum = BlockReduce(sum, SumOp(), scratch);
  const float inv = 1.0f / sum;
  for (int64_t i = threadIdx.x; i < p.cols; i += blockDim.x) y[i] = expf(x[i] - m) * inv;
}

template <typename W>
__global__ void GatherKernel(GatherParams p) {
  StartAfterPriorKernels();
  const int32_t id = p.ids[blockIdx.x];
  float* out = p.out + blockIdx.x * p.dim;
  if (id < 0 || id >= p.table_rows) {
    for (int64_t i = threadIdx.x; i < p.dim; i += blockDim.x) out[i] = NAN;
    return;
  }
  const W* row = static_cast<const W*>(p.table) + id * p.dim;
  for (int64_t i = threadIdx.x; i < p.dim; i += blockDim.x) out[i] = LoadFloat(row + i);
}

__global__ void ScatterKernel(ScatterParams p) {
  StartAfterPriorKernels();
  const int32_t r = p.rows[blockIdx.x];
  if (r < 0 || r >= p.dst_rows) return;
  const float* src = p.src + blockIdx.x * p.dim;
  float* dst = p.dst + r * p.dim;
  for (int64_t i = threadIdx.x; i < p.dim; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

cudaError_t LaunchAdd(const AddParams& params, cudaStream_t stream) {
  const AddParams p = params;
  return LaunchElementWise(p.count, stream,
                           [p] __device__(int64_t i) { p.out[i] = p.a[i] + p.b[i]; });
}

cudaError_t LaunchSiluMul(const SiluMulParams& params, cudaStream_t stream) {
  const SiluMulParams p = params;
  return LaunchElementWise(p.count, stream, [p] __device__(int64_t i) {
    const float g = p.gate[i];
    p.out[i] = Silu(g) * p.up[i];
  });
}

// Rows of 4-element groups: grid (column blocks, row blocks), each thread one group of a row at a
// time (no division per element, 16- or 8-byte accesses). About kMaxElementBlocks blocks in all,
// each walking several rows (a block a row of 4096 floats is too little work for a block).
dim3 RowGroupsGrid(int64_t rows, int64_t groups) {
  const int64_t x = std::clamp<int64_t>((groups + kElementThreads - 1) / kElementThreads, 1, 64);
  const int64_t y = std::clamp<int64_t>(kMaxElementBlocks / x, 1, std::max<int64_t>(rows, 1));
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y));
}

template <typename G, typename O>
__global__ void SwiGluVecKernel(const G* gate_up, O* out, int64_t rows, int64_t cols) {
  StartAfterPriorKernels();
  const int64_t groups = cols / 4;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const G* gate = gate_up + r * 2 * cols;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < groups;
         i += int64_t{gridDim.x} * blockDim.x) {
      const float4 g = Load4(gate + 4 * i), u = Load4(gate + cols + 4 * i);
      Store4(out + r * cols + 4 * i,
             make_float4(Silu(g.x) * u.x, Silu(g.y) * u.y, Silu(g.z) * u.z, Silu(g.w) * u.w));
    }
  }
}

template <typename G, typename O>
cudaError_t LaunchSwiGluTyped(const SwiGluParams& p, cudaStream_t stream) {
  const G* gate_up = static_cast<const G*>(p.gate_up);
  O* out = static_cast<O*>(p.out);
  const int64_t cols = p.cols;
  if (p.rows == 0 || cols == 0) return cudaSuccess;
  if (cols % 4 == 0 && Aligned(gate_up, 16) && Aligned(out, 16)) {
    Launch(SwiGluVecKernel<G, O>, RowGroupsGrid(p.rows, cols / 4), kElementThreads, 0, stream,
           gate_up, out, p.rows, cols);
    return cudaGetLastError();
  }
  return LaunchElementWise(p.rows * cols, stream, [gate_up, out, cols] __device__(int64_t i) {
    const int64_t r = i / cols, c = i % cols;
    const float g = LoadFloat(gate_up + r * 2 * cols + c);
    StoreFloat(out + i, Silu(g) * LoadFloat(gate_up + r * 2 * cols + cols + c));
  });
}

cudaError_t LaunchSwiGlu(const SwiGluParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.cols < 0) return cudaErrorInvalidValue;
  if (p.gate_up_bf16 && p.out_bf16)
    return LaunchSwiGluTyped<__nv_bfloat16, __nv_bfloat16>(p, stream);
  if (p.gate_up_bf16) return LaunchSwiGluTyped<__nv_bfloat16, float>(p, stream);
  if (p.out_bf16) return LaunchSwiGluTyped<float, __nv_bfloat16>(p, stream);
  return LaunchSwiGluTyped<float, float>(p, stream);
}

__global__ void SplitColumnsVecKernel(SplitColumnsParams p, int64_t cols) {
  StartAfterPriorKernels();
  for (int64_t r = blockIdx.y; r < p.rows; r += gridDim.y) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < cols / 4;
         i += int64_t{gridDim.x} * blockDim.x) {
      int64_t c = 4 * i;
      int part = 0;
      while (c >= p.widths[part]) c -= p.widths[part++];
      Store4(p.parts[part] + r * p.widths[part] + c, Load4(p.x + r * cols + 4 * i));
    }
  }
}

cudaError_t LaunchSplitColumns(const SplitColumnsParams& params, cudaStream_t stream) {
  const SplitColumnsParams p = params;
  if (p.num_parts < 1 || p.num_parts > 4 || p.rows < 0) return cudaErrorInvalidValue;
  int64_t cols = 0;
  bool vec = Aligned(p.x, 16);
  for (int i = 0; i < p.num_parts; ++i) {
    cols += p.widths[i];
    vec = vec && p.widths[i] % 4 == 0 && Aligned(p.parts[i], 16);
  }
  if (p.rows == 0 || cols == 0) return cudaSuccess;
  if (vec) {
    Launch(SplitColumnsVecKernel, RowGroupsGrid(p.rows, cols / 4), kElementThreads, 0, stream, p,
           cols);
    return cudaGetLastError();
  }
  return LaunchElementWise(p.rows * cols, stream, [p, cols] __device__(int64_t i) {
    const int64_t r = i / cols;
    int64_t c = i % cols;
    int part = 0;
    while (c >= p.widths[part]) c -= p.widths[part++];
    p.parts[part][r * p.widths[part] + c] = p.x[i];
  });
}

cudaError_t LaunchGelu(const GeluParams& params, cudaStream_t stream) {
  const GeluParams p = params;
  return LaunchElementWise(p.count, stream,
                           [p] __device__(int64_t i) { p.y[i] = ExactGelu(p.x[i]); });
}

cudaError_t LaunchAddBias(const AddBiasParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.cols <= 0) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  const int blocks = ElementBlocks(p.rows * p.cols);
  const bool b16 = p.bias_type == WeightType::kBF16;
  if (b16 && p.y_bf16) {
    Launch(AddBiasKernel<__nv_bfloat16, __nv_bfloat16>, blocks, kElementThreads, 0, stream, p);
  } else if (b16) {
    Launch(AddBiasKernel<__nv_bfloat16, float>, blocks, kElementThreads, 0, stream, p);
  } else if (p.y_bf16) {
    Launch(AddBiasKernel<float, __nv_bfloat16>, blocks, kElementThreads, 0, stream, p);
  } else {
    Launch(AddBiasKernel<float, float>, blocks, kElementThreads, 0, stream, p);
  }
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  return LaunchRmsNormRows<false>({.x = p.x,
                                   .delta = nullptr,
                                   .sum_out = nullptr,
                                   .weight = p.weight,
                                   .y = p.y,
                                   .dim = p.dim,
                                   .eps = p.eps},
                                  p.weight_type, p.y_bf16, p.rows, stream);
}

cudaError_t LaunchAddRmsNorm(const AddRmsNormParams& p, cudaStream_t stream) {
  return LaunchRmsNormRows<true>({.x = p.x,
                                  .delta = p.delta,
                                  .sum_out = p.x,
                                  .weight = p.weight,
                                  .y = p.normed,
                                  .dim = p.dim,
                                  .eps = p.eps},
                                 p.weight_type, p.normed_bf16, p.rows, stream);
}

cudaError_t LaunchSoftmax(const SoftmaxParams& p, cudaStream_t stream) {
  if (!RowsFitGrid(p.rows) || p.cols <= 0) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  Launch(SoftmaxKernel, static_cast<unsigned>(p.rows), kRowThreads, 0, stream, p);
  return cudaGetLastError();
}

cudaError_t LaunchRope(const RopeParams& params, cudaStream_t stream) {
  const RopeParams p = params;
  if (p.tokens < 0 || p.heads < 0 || p.half < 0) return cudaErrorInvalidValue;
  // One thread per complex pair.
  return LaunchElementWise(p.tokens * p.heads * p.half, stream, [p] __device__(int64_t i) {
    const int64_t pair = i % p.half, token = i / (p.half * p.heads);
    const float c = p.cos_sin[(token * p.half + pair) * 2];
    const float s = p.cos_sin[(token * p.half + pair) * 2 + 1];
    float* v = p.x + i * 2;
    const float re = v[0], im = v[1];
    v[0] = re * c - im * s;
    v[1] = re * s + im * c;
  });
}

cudaError_t LaunchGather(const GatherParams& p, cudaStream_t stream) {
  if (!RowsFitGrid(p.count) || p.dim <= 0 || p.table_rows < 0) return cudaErrorInvalidValue;
  if (p.count == 0) return cudaSuccess;
  const unsigned rows = static_cast<unsigned>(p.count);
  if (p.table_type == WeightType::kBF16) {
    Launch(GatherKernel<__nv_bfloat16>, rows, kRowThreads, 0, stream, p);
  } else {
    Launch(GatherKernel<float>, rows, kRowThreads, 0, stream, p);
  }
  return cudaGetLastError();
}

cudaError_t LaunchScatter(const ScatterParams& p, cudaStream_t stream) {
  if (!RowsFitGrid(p.count) || p.dim <= 0 || p.dst_rows < 0) return cudaErrorInvalidValue;
  if (p.count == 0) return cudaSuccess;
  Launch(ScatterKernel, static_cast<unsigned>(p.count), kRowThreads, 0, stream, p);
  return cudaGetLastError();
}

cudaError_t LaunchPatchify(const PatchifyParams& params, cudaStream_t stream) {
  const PatchifyParams p = params;
  if (p.patch <= 0 || p.channels < 0 || p.height % p.patch != 0 || p.width % p.patch != 0) {
    return cudaErrorInvalidValue;
  }
  // One thread per output element: (patch, channel, y, x) -> the pixel it copies.
  return LaunchElementWise(p.channels * p.height * p.width, stream, [p] __device__(int64_t i) {
    const int64_t per_patch = p.channels * p.patch * p.patch, cols = p.width / p.patch;
    const int64_t patch = i / per_patch, within = i % per_patch;
    const int64_t ch = within / (p.patch * p.patch), y = within / p.patch % p.patch,
                  x = within % p.patch;
    const int64_t r = patch / cols, c = patch % cols;
    p.out[i] = p.image[(ch * p.height + r * p.patch + y) * p.width + c * p.patch + x];
  });
}

}  // namespace pixtral::cuda
