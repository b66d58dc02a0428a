#include <cstdint>
#include <cstdlib>

#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/launch.cuh"

namespace pixtral::cuda {
namespace {

// Eight warps a block.
constexpr int kGemvWarps = 8;
constexpr int64_t kMaxBlocks = (int64_t{1} << 31) - 1;
// 16-byte chunks of its weights each lane asks L2 for before the previous kernel ends.
constexpr int kPrefetchChunks = 4;

__device__ __forceinline__ void PrefetchL2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// The two floats of a pair of bf16 values packed in a 32-bit word (low half first).
__device__ __forceinline__ float2 Bf16PairToFloat2(uint32_t u) {
  return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
}

// Eight float32 values of x from 16-byte aligned global memory (L1-cached: every warp reads them).
__device__ __forceinline__ void Load8(const float* __restrict__ x, float (&v)[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(x));
  const float4 b = __ldg(reinterpret_cast<const float4*>(x) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// The eight floats of eight packed bf16 values.
__device__ __forceinline__ void Unpack8(const uint4 packed, float (&v)[8]) {
  const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = Bf16PairToFloat2(words[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void Load8(const uint16_t* __restrict__ x, float (&v)[8]) {
  Unpack8(__ldg(reinterpret_cast<const uint4*>(x)), v);
}

// What the kernel applies to x before the products: nothing, or RmsNorm with a bf16 or f32 weight.
enum class GemvNorm { kNone, kBf16Weight, kF32Weight };

// Warps of a block: each weight row is split over `split` of them (1, 2, 4 or 8), so that
// small matrices still spread over every SM with enough loads in flight. With a norm, each warp
// also sums the squares of the x values it reads: the row's statistics come from the same pass
// as the products, whose sum is scaled by 1 / sqrt(mean(x²) + eps) at the end.
//
// kSwiGlu: the product of a stacked w1/w3 (n rows, gate then up) followed by SwiGLU, each warp
// taking a gate row r and its up row r + n / 2 (the same x values for both) and writing
// y[r] = silu(gate) * up: n / 2 outputs, and no pass of its own for the SwiGLU.
template <GemvNorm kNorm, bool kSwiGlu>
__global__ void __launch_bounds__(kGemvWarps* kWarpSize) GemvBf16Kernel(GemvParams p, int split) {
  __shared__ float partial[kGemvWarps], partial_up[kGemvWarps], partial_squares[kGemvWarps];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int part = warp % split;
  const int64_t outputs = kSwiGlu ? p.n / 2 : p.n;
  const int64_t row = int64_t{blockIdx.x} * (kGemvWarps / split) + warp / split;
  const uint4* __restrict__ w = reinterpret_cast<const uint4*>(p.w + row * p.k);
  const uint4* __restrict__ w_up = w + outputs * p.k / 8;  // kSwiGlu only
  const int64_t chunks = p.k / 8;                          // 16 bytes of weights: 8 values
  // The weights depend on no earlier kernel: their first loads go to L2 while the kernel before
  // (whose output is x) may still run (launch.cuh).
  AllowNextKernel();
  if (row < outputs) {
#pragma unroll
    for (int i = 0; i < kPrefetchChunks; ++i) {
      const int64_t c = part * kWarpSize + lane + int64_t{i} * kWarpSize * split;
      if (c < chunks) {
        PrefetchL2(w + c);
        if constexpr (kSwiGlu) PrefetchL2(w_up + c);
      }
    }
  }
  WaitForPriorKernels();
  float acc = 0.0f, acc_up = 0.0f, squares = 0.0f;
  if (row < outputs) {
#pragma unroll 4
    for (int64_t c = part * kWarpSize + lane; c < chunks; c += kWarpSize * split) {
      // The weights are read once: keep them out of L1 for the activations.
      float wf[8], xf[8], uf[8];
      Unpack8(__ldcs(w + c), wf);
      if constexpr (kSwiGlu) Unpack8(__ldcs(w_up + c), uf);
      Load8(p.x + c * 8, xf);
      if constexpr (kNorm != GemvNorm::kNone) {
        float g[8];
        if constexpr (kNorm == GemvNorm::kBf16Weight) {
          Load8(static_cast<const uint16_t*>(p.norm_weight) + c * 8, g);
        } else {
          Load8(static_cast<const float*>(p.norm_weight) + c * 8, g);
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          squares += xf[i] * xf[i];
          xf[i] *= g[i];
        }
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) acc += wf[i] * xf[i];
      if constexpr (kSwiGlu) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc_up += uf[i] * xf[i];
      }
    }
  }
  const float sum = WarpReduce(acc, SumOp());
  if (lane == 0) partial[warp] = sum;
  if constexpr (kSwiGlu) {
    const float sum_up = WarpReduce(acc_up, SumOp());
    if (lane == 0) partial_up[warp] = sum_up;
  }
  if constexpr (kNorm != GemvNorm::kNone) {
    const float sum_squares = WarpReduce(squares, SumOp());
    if (lane == 0) partial_squares[warp] = sum_squares;
  }
  __syncthreads();
  if (row >= outputs || part != 0 || lane != 0) return;
  float total = 0.0f, total_up = 0.0f;
  for (int i = 0; i < split; ++i) total += partial[warp + i];
  if constexpr (kSwiGlu) {
    for (int i = 0; i < split; ++i) total_up += partial_up[warp + i];
  }
  if constexpr (kNorm != GemvNorm::kNone) {
    float total_squares = 0.0f;
    for (int i = 0; i < split; ++i) total_squares += partial_squares[warp + i];
    const float scale = rsqrtf(total_squares / static_cast<float>(p.k) + p.eps);
    total *= scale;
    total_up *= scale;
  }
  if constexpr (kSwiGlu) {
    p.y[row] = Silu(total) * total_up;
  } else {
    p.y[row] = p.accumulate ? p.y[row] + total : total;
  }
}

// Blocks an SM the split aims for: 4, or PIXTRAL_GEMV_BLOCKS_PER_SM (for tuning runs). At 4 the
// decoder's matrices (5120 to 28672 rows) keep one warp a row; 8 split the 5120- and 6144-row
// ones in two, 1.2 and 1.5 waves of blocks whose last partial wave cost ~0.17 ms a step at
// batch 1 on an H200 (run 16: 7.49 ms at 8, 7.30-7.33 at 2, 4 and 16).
int64_t GemvBlocksPerSm() {
  static const int64_t blocks = [] {
    const char* set = std::getenv("PIXTRAL_GEMV_BLOCKS_PER_SM");
    const int value = set != nullptr ? std::atoi(set) : 0;
    return value > 0 ? int64_t{value} : int64_t{4};
  }();
  return blocks;
}

// The kernel for p's norm weight (none, bf16 or f32).
template <bool kSwiGlu>
void LaunchWithNorm(const GemvParams& p, unsigned blocks, int split, cudaStream_t stream) {
  const unsigned threads = kGemvWarps * kWarpSize;
  if (p.norm_weight == nullptr) {
    Launch(GemvBf16Kernel<GemvNorm::kNone, kSwiGlu>, blocks, threads, 0, stream, p, split);
  } else if (p.norm_weight_bf16) {
    Launch(GemvBf16Kernel<GemvNorm::kBf16Weight, kSwiGlu>, blocks, threads, 0, stream, p, split);
  } else {
    Launch(GemvBf16Kernel<GemvNorm::kF32Weight, kSwiGlu>, blocks, threads, 0, stream, p, split);
  }
}

}  // namespace

bool GemvApplies(const GemvParams& p) {
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  if (p.swiglu && (p.n % 2 != 0 || p.accumulate)) return false;
  return p.rows == kGemvMaxRows && p.k > 0 && p.k % 8 == 0 && p.n > 0 &&
         (p.n + kGemvWarps - 1) / kGemvWarps <= kMaxBlocks && aligned(p.x) && aligned(p.w) &&
         aligned(p.norm_weight);
}

cudaError_t LaunchGemvBf16(const GemvParams& p, cudaStream_t stream) {
  if (!GemvApplies(p)) return cudaErrorInvalidValue;
  // Enough warps for GemvBlocksPerSm() blocks an SM, splitting rows over warps when there are
  // few. (Splitting further, to ~8 waves of pieces, measured slower on an H200: w1 3.34 -> 3.10
  // TB/s.)
  const int64_t outputs = p.swiglu ? p.n / 2 : p.n;
  int split = 1;
  const int64_t wave = int64_t{p.sm_count} * GemvBlocksPerSm() * kGemvWarps;
  while (split < kGemvWarps && outputs * split < wave) split *= 2;
  const int rows_per_block = kGemvWarps / split;
  const auto blocks = static_cast<unsigned>((outputs + rows_per_block - 1) / rows_per_block);
  if (p.swiglu) {
    LaunchWithNorm<true>(p, blocks, split, stream);
  } else {
    LaunchWithNorm<false>(p, blocks, split, stream);
  }
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
