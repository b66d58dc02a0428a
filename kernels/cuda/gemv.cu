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

__device__ __forceinline__ float Dot8(const float (&w)[8], const float* __restrict__ x) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(x));
  const float4 b = __ldg(reinterpret_cast<const float4*>(x) + 1);
  return w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z +
         w[7] * b.w;
}

// Warps of a block: each weight row is split over `split` of them (1, 2, 4 or 8), so that
// small matrices still spread over every SM with enough loads in flight.
__global__ void __launch_bounds__(kGemvWarps* kWarpSize) GemvBf16Kernel(GemvParams p, int split) {
  __shared__ float partial[kGemvWarps];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int part = warp % split;
  const int64_t row = int64_t{blockIdx.x} * (kGemvWarps / split) + warp / split;
  const uint4* __restrict__ w = reinterpret_cast<const uint4*>(p.w + row * p.k);
  const int64_t chunks = p.k / 8;  // 16 bytes of weights: 8 values
  // The weights depend on no earlier kernel: their first loads go to L2 while the kernel before
  // (whose output is x) may still run (launch.cuh).
  AllowNextKernel();
  if (row < p.n) {
#pragma unroll
    for (int i = 0; i < kPrefetchChunks; ++i) {
      const int64_t c = part * kWarpSize + lane + int64_t{i} * kWarpSize * split;
      if (c < chunks) PrefetchL2(w + c);
    }
  }
  WaitForPriorKernels();
  float acc = 0.0f;
  if (row < p.n) {
#pragma unroll 4
    for (int64_t c = part * kWarpSize + lane; c < chunks; c += kWarpSize * split) {
      // The weights are read once: keep them out of L1 for the activations.
      const uint4 packed = __ldcs(w + c);
      float wf[8];
      const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = Bf16PairToFloat2(words[i]);
        wf[2 * i] = f.x;
        wf[2 * i + 1] = f.y;
      }
      acc += Dot8(wf, p.x + c * 8);
    }
  }
  const float sum = WarpReduce(acc, SumOp());
  if (lane == 0) partial[warp] = sum;
  __syncthreads();
  if (row >= p.n || part != 0 || lane != 0) return;
  float total = 0.0f;
  for (int i = 0; i < split; ++i) total += partial[warp + i];
  p.y[row] = total;
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

}  // namespace

bool GemvApplies(const GemvParams& p) {
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return p.rows == kGemvMaxRows && p.k > 0 && p.k % 8 == 0 && p.n > 0 &&
         (p.n + kGemvWarps - 1) / kGemvWarps <= kMaxBlocks && aligned(p.x) && aligned(p.w);
}

cudaError_t LaunchGemvBf16(const GemvParams& p, cudaStream_t stream) {
  if (!GemvApplies(p)) return cudaErrorInvalidValue;
  // Enough warps for GemvBlocksPerSm() blocks an SM, splitting rows over warps when there are
  // few. (Splitting further, to ~8 waves of pieces, measured slower on an H200: w1 3.34 -> 3.10
  // TB/s.)
  int split = 1;
  const int64_t wave = int64_t{p.sm_count} * GemvBlocksPerSm() * kGemvWarps;
  while (split < kGemvWarps && p.n * split < wave) split *= 2;
  const int rows_per_block = kGemvWarps / split;
  const auto blocks = static_cast<unsigned>((p.n + rows_per_block - 1) / rows_per_block);
  Launch(GemvBf16Kernel, blocks, kGemvWarps * kWarpSize, 0, stream, p, split);
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
