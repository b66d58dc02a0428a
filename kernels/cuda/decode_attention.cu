#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/device_utils.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * kWarpSize;
constexpr int kElementsPerLane = 8;  // one 16-byte load of bf16
constexpr int kMinSplitLen = 256;
// Steps of loads in flight per warp, and the rows (k and v of two positions) a lane copies a step.
constexpr int kStages = 4;
constexpr int kRowsPerStep = 4;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxGridY = 65535;

// Eight bf16 values packed in 16 bytes, as floats.
__device__ __forceinline__ void Unpack(const uint4& raw, float (&dst)[8]) {
  const auto* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(pairs[i]);
    dst[2 * i] = f.x, dst[2 * i + 1] = f.y;
  }
}

// cp.async of 16 bytes from global to shared memory, bypassing L1 (each row is read once).
__device__ __forceinline__ void CopyAsync16(void* shared, const void* global) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(global));
}
__device__ __forceinline__ void CommitAsync() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void WaitAsync() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Whether positions [0, n) of sequence s all have a valid cache block.
__device__ bool TableValid(const DecodeAttentionParams& p, int s, int n) {
  const int blocks = (n + p.block_size - 1) / p.block_size;
  if (blocks > p.max_blocks) return false;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
    if (table[b] < 0 || table[b] >= p.num_blocks) return false;
  }
  return true;
}

// grid (num_sequences, kv_heads, splits), kDecodeThreads threads.
template <int kHeadDim, int kGroup>
__global__ void __launch_bounds__(kDecodeThreads, 4)
    DecodeAttentionKernel(DecodeAttentionParams p, int splits, int split_len) {
  constexpr int kLanesPerKey = kHeadDim / kElementsPerLane;  // 16 at head_dim 128
  constexpr int kKeysPerWarp = kWarpSize / kLanesPerKey;     // keys a warp reads at once
  constexpr int kGroups = kDecodeWarps * kKeysPerWarp;       // independent softmax states
  // The load ring while the keys are walked, then the lane groups' partial outputs.
  constexpr size_t kRingBytes = sizeof(uint4) * kStages * kDecodeThreads * kRowsPerStep;
  constexpr size_t kOutBytes = sizeof(float) * kGroups * kGroup * kHeadDim;
  __shared__ __align__(16) char shared[kRingBytes > kOutBytes ? kRingBytes : kOutBytes];
  __shared__ float group_max[kGroups][kGroup], group_sum[kGroups][kGroup];
  auto& ring = *reinterpret_cast<uint4(*)[kStages][kDecodeThreads][kRowsPerStep]>(shared);
  auto& group_out = *reinterpret_cast<float(*)[kGroups][kGroup][kHeadDim]>(shared);

  const int s = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z;
  const int q_begin = p.sequences[s * 3], q_len = p.sequences[s * 3 + 1];
  if (q_len != 1 || q_begin < 0 || q_begin >= p.tokens) return;
  const int n = p.sequences[s * 3 + 2] + 1;  // positions attended, the new one included
  const int begin = split * split_len, end = min(n, begin + split_len);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int group = warp * kKeysPerWarp + lane / kLanesPerKey;
  const int part = lane % kLanesPerKey;  // which 8 elements of a row this lane reads
  const int first_head = kv_head * kGroup;
  const int64_t q_row = int64_t{p.heads} * kHeadDim;
  const bool valid = __syncthreads_and(TableValid(p, s, n));

  // q pre-scaled so that scores are in base 2.
  float q[kGroup][kElementsPerLane];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    const float* src = p.q + q_begin * q_row + (first_head + g) * kHeadDim + part * 8;
    const float4 a = *reinterpret_cast<const float4*>(src);
    const float4 b = *reinterpret_cast<const float4*>(src + 4);
    const float f = p.scale * kLog2e;
    q[g][0] = a.x * f, q[g][1] = a.y * f, q[g][2] = a.z * f, q[g][3] = a.w * f;
    q[g][4] = b.x * f, q[g][5] = b.y * f, q[g][6] = b.z * f, q[g][7] = b.w * f;
  }
  float running_max[kGroup], running_sum[kGroup], acc[kGroup][kElementsPerLane];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    running_max[g] = -INFINITY, running_sum[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < kElementsPerLane; ++i) acc[g][i] = 0.0f;
  }

  const int64_t kv_stride = int64_t{p.kv_heads} * kHeadDim;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks;
  const auto* k_base = reinterpret_cast<const __nv_bfloat16*>(p.k_cache) + kv_head * kHeadDim +
                       part * kElementsPerLane;
  const auto* v_base = reinterpret_cast<const __nv_bfloat16*>(p.v_cache) + kv_head * kHeadDim +
                       part * kElementsPerLane;
  // Two positions per lane group per step, their key and value rows fetched kStages - 1 steps
  // ahead by cp.async into a ring in shared memory (each lane copies, and later reads, only its
  // own 16-byte pieces, so no barrier is needed), so every warp keeps several steps of loads in
  // flight while it computes. The loop bounds are the same for the whole block (the shuffles need
  // every lane); a lane group past the split's end computes on stale data but does not update.
  auto attend = [&](const uint4& k_packed, const uint4& v_packed, bool active) {
    float k[kElementsPerLane], v[kElementsPerLane];
    Unpack(k_packed, k);
    Unpack(v_packed, v);
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < kElementsPerLane; ++i) dot += q[g][i] * k[i];
#pragma unroll
      for (int offset = kLanesPerKey / 2; offset > 0; offset /= 2) {
        dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      }
      if (!active) continue;
      const float new_max = fmaxf(running_max[g], dot);
      const float correction = exp2f(running_max[g] - new_max);
      const float weight = exp2f(dot - new_max);
      running_sum[g] = running_sum[g] * correction + weight;
      running_max[g] = new_max;
#pragma unroll
      for (int i = 0; i < kElementsPerLane; ++i) acc[g][i] = acc[g][i] * correction + weight * v[i];
    }
  };
  const int steps = valid ? (end - begin + 2 * kGroups - 1) / (2 * kGroups) : 0;
  auto issue = [&](int step) {
    if (step < steps) {
      uint4* slot = ring[step % kStages][threadIdx.x];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int pos = begin + step * 2 * kGroups + group + j * kGroups;
        if (pos >= end) continue;
        const int64_t row = int64_t{table[pos / p.block_size]} * p.block_size + pos % p.block_size;
        CopyAsync16(slot + 2 * j, k_base + row * kv_stride);
        CopyAsync16(slot + 2 * j + 1, v_base + row * kv_stride);
      }
    }
    CommitAsync();  // an empty group past the end keeps the count of groups uniform
  };
#pragma unroll
  for (int step = 0; step < kStages - 1; ++step) issue(step);
  for (int step = 0; step < steps; ++step) {
    issue(step + kStages - 1);  // into the slot the previous step read
    WaitAsync<kStages - 1>();   // this step's group has landed
    const uint4* slot = ring[step % kStages][threadIdx.x];
    const int pos = begin + step * 2 * kGroups + group;
    attend(slot[0], slot[1], pos < end);
    attend(slot[2], slot[3], pos + kGroups < end);
  }
  WaitAsync<0>();
  __syncthreads();  // the ring becomes group_out
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (part == 0) group_max[group][g] = running_max[g], group_sum[group][g] = running_sum[g];
#pragma unroll
    for (int i = 0; i < kElementsPerLane; ++i) group_out[group][g][part * 8 + i] = acc[g][i];
  }
  __syncthreads();

  // Merge the groups: thread t owns elements t, t + kDecodeThreads, ... of [kGroup, kHeadDim].
  for (int e = threadIdx.x; e < kGroup * kHeadDim; e += kDecodeThreads) {
    const int g = e / kHeadDim, d = e % kHeadDim;
    float m = -INFINITY;
    for (int i = 0; i < kGroups; ++i) m = fmaxf(m, group_max[i][g]);
    float sum = 0.0f, o = 0.0f;
    if (m != -INFINITY) {
      for (int i = 0; i < kGroups; ++i) {
        const float w = exp2f(group_max[i][g] - m);
        sum += group_sum[i][g] * w;
        o += group_out[i][g][d] * w;
      }
    }
    const int head = first_head + g;
    if (splits == 1) {
      p.out[q_begin * q_row + head * kHeadDim + d] = valid ? o / sum : NAN;
    } else {
      const int64_t partial = (int64_t{s} * p.heads + head) * splits + split;
      p.split_out[partial * kHeadDim + d] = valid ? o : NAN;
      if (d == 0) p.split_stats[partial * 2] = m, p.split_stats[partial * 2 + 1] = sum;
    }
  }
}

// grid (num_sequences, heads), head_dim threads: out = the splits' outputs weighted by their
// softmax mass.
__global__ void MergeSplitsKernel(DecodeAttentionParams p, int splits) {
  const int s = blockIdx.x, head = blockIdx.y, d = threadIdx.x;
  const int q_begin = p.sequences[s * 3], q_len = p.sequences[s * 3 + 1];
  if (q_len != 1 || q_begin < 0 || q_begin >= p.tokens || d >= p.head_dim) return;
  const int64_t first = (int64_t{s} * p.heads + head) * splits;
  float m = -INFINITY;
  for (int i = 0; i < splits; ++i) m = fmaxf(m, p.split_stats[(first + i) * 2]);
  float sum = 0.0f, o = 0.0f;
  for (int i = 0; i < splits; ++i) {
    const float split_max = p.split_stats[(first + i) * 2];
    if (split_max == -INFINITY) continue;  // a split past the sequence's end
    const float w = exp2f(split_max - m);
    sum += p.split_stats[(first + i) * 2 + 1] * w;
    o += p.split_out[(first + i) * p.head_dim + d] * w;
  }
  p.out[int64_t{q_begin} * p.heads * p.head_dim + head * p.head_dim + d] = o / sum;
}

template <int kHeadDim>
cudaError_t LaunchForGroup(const DecodeAttentionParams& p, const DecodeSplit& split,
                           cudaStream_t stream) {
  const dim3 grid(p.num_sequences, p.kv_heads, split.splits);
  switch (p.heads / p.kv_heads) {
    case 1:
      DecodeAttentionKernel<kHeadDim, 1>
          <<<grid, kDecodeThreads, 0, stream>>>(p, split.splits, split.split_len);
      break;
    case 2:
      DecodeAttentionKernel<kHeadDim, 2>
          <<<grid, kDecodeThreads, 0, stream>>>(p, split.splits, split.split_len);
      break;
    case 4:
      DecodeAttentionKernel<kHeadDim, 4>
          <<<grid, kDecodeThreads, 0, stream>>>(p, split.splits, split.split_len);
      break;
    default:
      DecodeAttentionKernel<kHeadDim, 8>
          <<<grid, kDecodeThreads, 0, stream>>>(p, split.splits, split.split_len);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

DecodeSplit ChooseDecodeSplit(int num_sequences, int kv_heads, int max_context, int sm_count) {
  const int64_t blocks = int64_t{num_sequences} * kv_heads;
  const int64_t wanted = (8 * int64_t{sm_count} + blocks - 1) / std::max<int64_t>(blocks, 1);
  const int64_t most = (max_context + kMinSplitLen - 1) / kMinSplitLen;
  DecodeSplit split;
  split.splits = static_cast<int>(std::max<int64_t>(1, std::min(wanted, most)));
  split.split_len = (max_context + split.splits - 1) / split.splits;
  split.split_len = std::max(split.split_len, 1);
  split.splits = (max_context + split.split_len - 1) / split.split_len;
  split.splits = std::max(split.splits, 1);
  return split;
}

bool DecodeAttentionApplies(int head_dim, int heads, int kv_heads) {
  if (kv_heads <= 0 || heads % kv_heads != 0) return false;
  const int group = heads / kv_heads;
  return (head_dim == 64 || head_dim == 128) &&
         (group == 1 || group == 2 || group == 4 || group == 8);
}

cudaError_t LaunchDecodeAttention(const DecodeAttentionParams& p, const DecodeSplit& split,
                                  cudaStream_t stream) {
  if (!DecodeAttentionApplies(p.head_dim, p.heads, p.kv_heads) || p.num_sequences < 0 ||
      p.kv_heads > kMaxGridY || split.splits < 1 || split.splits > kMaxGridY ||
      split.split_len < 1 ||
      (split.splits > 1 && (p.split_out == nullptr || p.split_stats == nullptr))) {
    return cudaErrorInvalidValue;
  }
  if (p.num_sequences == 0 || p.tokens == 0) return cudaSuccess;
  const cudaError_t error = p.head_dim == 64 ? LaunchForGroup<64>(p, split, stream)
                                             : LaunchForGroup<128>(p, split, stream);
  if (error != cudaSuccess || split.splits == 1) return error;
  MergeSplitsKernel<<<dim3(p.num_sequences, p.heads), p.head_dim, 0, stream>>>(p, split.splits);
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
