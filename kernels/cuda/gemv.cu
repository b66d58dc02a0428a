#include <cstdint>

#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/gemv.h"

namespace pixtral::cuda {
namespace {

// Eight warps a block.
constexpr int kGemvWarps = 8;
constexpr int64_t kMaxBlocks = (int64_t{1} << 31) - 1;

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
template <int kRows>
__global__ void __launch_bounds__(kGemvWarps* kWarpSize) GemvBf16Kernel(GemvParams p, int split) {
  __shared__ float partial[kGemvWarps][kRows];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int part = warp % split;
  const int64_t row = int64_t{blockIdx.x} * (kGemvWarps / split) + warp / split;
  float acc[kRows] = {};
  if (row < p.n) {
    const uint4* __restrict__ w = reinterpret_cast<const uint4*>(p.w + row * p.k);
    const int64_t chunks = p.k / 8;  // 16 bytes of weights: 8 values
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
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] += Dot8(wf, p.x + r * p.k + c * 8);
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = WarpReduce(acc[r], SumOp());
    if (lane == 0) partial[warp][r] = sum;
  }
  __syncthreads();
  if (row >= p.n || part != 0 || lane >= kRows) return;
  float sum = 0.0f;
  for (int i = 0; i < split; ++i) sum += partial[warp + i][lane];
  p.y[lane * p.n + row] = sum;
}

template <int kRows>
cudaError_t Launch(const GemvParams& p, cudaStream_t stream) {
  // Enough blocks for ~8 per SM, splitting rows over warps when there are few. (Splitting further,
  // to ~8 waves of pieces, measured slower on an H200: w1 3.34 -> 3.10 TB/s.)
  int split = 1;
  const int64_t wave = int64_t{p.sm_count} * 8 * kGemvWarps;
  while (split < kGemvWarps && p.n * split < wave) split *= 2;
  const int rows_per_block = kGemvWarps / split;
  const auto blocks = static_cast<unsigned>((p.n + rows_per_block - 1) / rows_per_block);
  GemvBf16Kernel<kRows><<<blocks, kGemvWarps * kWarpSize, 0, stream>>>(p, split);
  return cudaGetLastError();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool GemvApplies(const GemvParams& p) {
  return p.rows >= 1 && p.rows <= kGemvMaxRows && p.k > 0 && p.k % 8 == 0 && p.n > 0 &&
         (p.n + kGemvWarps - 1) / kGemvWarps <= kMaxBlocks && Aligned16(p.x) && Aligned16(p.w);
}

cudaError_t LaunchGemvBf16(const GemvParams& p, cudaStream_t stream) {
  if (!GemvApplies(p)) return cudaErrorInvalidValue;
  static_assert(kGemvMaxRows == 4);
  switch (p.rows) {
    case 1:
      return Launch<1>(p, stream);
    case 2:
      return Launch<2>(p, stream);
    case 3:
      return Launch<3>(p, stream);
    default:
      return Launch<4>(p, stream);
  }
}

}  // namespace pixtral::cuda
