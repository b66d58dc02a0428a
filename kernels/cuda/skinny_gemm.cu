#include <algorithm>
#include <cstdint>

#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/skinny_gemm.h"

namespace pixtral::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kWarpRows = 16;                   // weight rows a warp owns (the mma's M)
constexpr int kBlockRows = kWarps * kWarpRows;  // weight rows a block owns
constexpr int kSlice = 128;                     // k per stage
constexpr int kSliceChunks = kSlice / 8;        // 16-byte chunks of a staged x row
constexpr int kSubSteps = kSlice / 32;          // 32 k a sub-step: two k16 mma steps
constexpr int kMinSlicesPerSplit = 4;

__device__ __forceinline__ void CopyAsync16OrZero(void* shared, const void* global, bool copy) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  const int bytes = copy ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global),
               "r"(bytes));
}

__device__ __forceinline__ void Mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Where chunk c of staged x row r lives: rows 2i and 2i + 1, which one 8-lane phase of the 16-byte
// reads takes (chunks 4j..4j+3 of each), land in different halves of the banks.
__device__ __forceinline__ int StagedChunk(int r, int c) { return c ^ ((r & 1) << 2); }

// The order of k inside a dot product is free, so a lane's A and B fragments are 16 contiguous
// bytes each: in the 32 k of sub-step j, lane (g, t) holds k = 32j + 8t .. 32j + 8t + 7 of weight
// rows g and g + 8 and of x row g of each n-tile; mma step h takes elements 4h .. 4h + 3 of them
// as its columns 2t, 2t + 1 (elements 4h, 4h + 1) and 2t + 8, 2t + 9 (4h + 2, 4h + 3). A and B
// agree on that order, so the sum is the same product.
//
// grid (ceil(n / kBlockRows), splits), kThreads threads.
template <int kNTiles>
__global__ void __launch_bounds__(kThreads)
    SkinnyGemmKernel(SkinnyGemmParams p, int slices_per_split) {
  constexpr int kRows = kNTiles * 8;
  __shared__ __align__(16) uint16_t staged[2][kRows * kSlice];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int g = lane / 4, t = lane % 4;
  const int64_t n0 = int64_t{blockIdx.x} * kBlockRows + warp * kWarpRows;
  const bool rows_in = n0 < p.n;  // n is a multiple of 16: a warp's rows are all in or all out
  const int slices = static_cast<int>(p.k / kSlice);
  const int first = blockIdx.y * slices_per_split;
  const int count = max(0, min(slices, first + slices_per_split) - first);

  auto stage_x = [&](int slice, int buffer) {
    for (int i = threadIdx.x; i < kRows * kSliceChunks; i += kThreads) {
      const int r = i / kSliceChunks, c = i % kSliceChunks;
      const bool in = r < p.rows;
      const uint16_t* src = p.x + (in ? r : 0) * p.k + int64_t{slice} * kSlice + c * 8;
      CopyAsync16OrZero(&staged[buffer][r * kSlice + StagedChunk(r, c) * 8], src, in);
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };
  const uint16_t* w_row = p.w + (n0 + g) * p.k + 8 * t;
  auto load_w = [&](int slice, uint4(&a)[kSubSteps], uint4(&b)[kSubSteps]) {
#pragma unroll
    for (int j = 0; j < kSubSteps; ++j) {
      const int64_t at = int64_t{slice} * kSlice + 32 * j;
      a[j] = rows_in ? __ldg(reinterpret_cast<const uint4*>(w_row + at)) : uint4{};
      b[j] = rows_in ? __ldg(reinterpret_cast<const uint4*>(w_row + 8 * p.k + at)) : uint4{};
    }
  };

  float acc[kNTiles][4] = {};
  uint4 wa[kSubSteps], wb[kSubSteps], next_a[kSubSteps], next_b[kSubSteps];
  if (count > 0) {
    stage_x(first, 0);
    load_w(first, wa, wb);
  }
  for (int i = 0; i < count; ++i) {
    const int buffer = i & 1;
    asm volatile("cp.async.wait_group 0;\n" ::);
    __syncthreads();  // slice i is staged, and every warp is done with the other buffer
    const bool more = i + 1 < count;
    if (more) {
      stage_x(first + i + 1, buffer ^ 1);
      load_w(first + i + 1, next_a, next_b);
    }
    const uint16_t* xs = staged[buffer];
#pragma unroll
    for (int j = 0; j < kSubSteps; ++j) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const int r = nt * 8 + g;
        const uint4 xv =
            *reinterpret_cast<const uint4*>(&xs[r * kSlice + StagedChunk(r, 4 * j + t) * 8]);
        Mma(acc[nt], wa[j].x, wb[j].x, wa[j].y, wb[j].y, xv.x, xv.y);
        Mma(acc[nt], wa[j].z, wb[j].z, wa[j].w, wb[j].w, xv.z, xv.w);
      }
    }
    if (more) {
#pragma unroll
      for (int j = 0; j < kSubSteps; ++j) wa[j] = next_a[j], wb[j] = next_b[j];
    }
  }
  if (!rows_in) return;
  // acc[nt][e]: weight row n0 + g (+8 for e >= 2), x row 8 nt + 2t (+1 for odd e).
  float* out = p.splits > 1 ? p.partials + int64_t{blockIdx.y} * p.rows * p.n : p.y;
#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t x_row = nt * 8 + 2 * t + (e & 1), w_row_out = n0 + g + (e >> 1) * 8;
      if (x_row < p.rows) out[x_row * p.n + w_row_out] = acc[nt][e];
    }
  }
}

// y = the sum of the splits' partial products.
__global__ void SumPartialsKernel(SkinnyGemmParams p) {
  const int64_t total = p.rows * p.n;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    float sum = 0.0f;
    for (int s = 0; s < p.splits; ++s) sum += p.partials[s * total + i];
    p.y[i] = sum;
  }
}

template <int kNTiles>
cudaError_t Launch(const SkinnyGemmParams& p, cudaStream_t stream) {
  const int slices = static_cast<int>(p.k / kSlice);
  const int per_split = (slices + p.splits - 1) / p.splits;
  const dim3 grid(static_cast<unsigned>((p.n + kBlockRows - 1) / kBlockRows), p.splits);
  SkinnyGemmKernel<kNTiles><<<grid, kThreads, 0, stream>>>(p, per_split);
  return cudaGetLastError();
}

}  // namespace

bool SkinnyGemmApplies(const SkinnyGemmParams& p) {
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return p.x != nullptr && p.w != nullptr && p.y != nullptr && p.rows >= 1 &&
         p.rows <= kSkinnyMaxRows && p.k > 0 && p.k % kSlice == 0 && p.n > 0 && p.n % 16 == 0 &&
         (p.n + kBlockRows - 1) / kBlockRows <= INT32_MAX && aligned(p.x) && aligned(p.w) &&
         p.splits >= 1 && p.splits <= p.k / kSlice && (p.splits == 1 || p.partials != nullptr);
}

int ChooseSkinnySplits(int64_t rows, int64_t k, int64_t n, int sm_count, size_t workspace_bytes) {
  const int64_t blocks = (n + kBlockRows - 1) / kBlockRows;
  int64_t splits = (2 * int64_t{sm_count} + blocks - 1) / blocks;
  splits = std::min(splits, std::max<int64_t>(1, k / kSlice / kMinSlicesPerSplit));
  const int64_t partial_bytes = rows * n * static_cast<int64_t>(sizeof(float));
  if (partial_bytes > 0) {
    splits = std::min(splits, static_cast<int64_t>(workspace_bytes) / partial_bytes);
  }
  return static_cast<int>(std::max<int64_t>(splits, 1));
}

cudaError_t LaunchSkinnyGemm(const SkinnyGemmParams& p, cudaStream_t stream) {
  if (!SkinnyGemmApplies(p)) return cudaErrorInvalidValue;
  cudaError_t error;
  switch ((p.rows + 7) / 8) {
    case 1:
      error = Launch<1>(p, stream);
      break;
    case 2:
      error = Launch<2>(p, stream);
      break;
    case 3:
      error = Launch<3>(p, stream);
      break;
    case 4:
      error = Launch<4>(p, stream);
      break;
    case 5:
      error = Launch<5>(p, stream);
      break;
    case 6:
      error = Launch<6>(p, stream);
      break;
    case 7:
      error = Launch<7>(p, stream);
      break;
    default:
      error = Launch<8>(p, stream);
      break;
  }
  if (error != cudaSuccess || p.splits == 1) return error;
  SumPartialsKernel<<<264, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
