#include <cuda_bf16.h>

#include <cmath>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/device_utils.cuh"

namespace pixtral::cuda {
namespace {

// One block per (query token, head); each chunk of kAttentionThreads keys gives one key per
// thread for the scores, then every thread accumulates its own output dimensions over the chunk.
constexpr int kAttentionThreads = 128;
constexpr int kDimsPerThread = kMaxAttentionHeadDim / kAttentionThreads;
static_assert(kMaxAttentionHeadDim % kAttentionThreads == 0);
// Threads per block of the cache append: one thread per element of a token's k or v row.
constexpr int kAppendThreads = 256;

// Softmax(q·Kᵀ·scale)·V for one query row over n keys; key_at(j) / value_at(j) point at key and
// value j (float or bf16). Every thread of the block must call it.
template <typename KeyAt, typename ValueAt>
__device__ void AttendRow(const float* q_row, int n, int head_dim, float scale, KeyAt key_at,
                          ValueAt value_at, float* out) {
  __shared__ float q[kMaxAttentionHeadDim];
  __shared__ float weights[kAttentionThreads];
  __shared__ float scratch[kAttentionThreads / kWarpSize];
  const int tid = threadIdx.x;
  for (int d = tid; d < head_dim; d += kAttentionThreads) q[d] = q_row[d];
  __syncthreads();

  float running_max = -INFINITY, running_sum = 0.0f;
  float acc[kDimsPerThread] = {};
  for (int base = 0; base < n; base += kAttentionThreads) {
    const int j = base + tid;
    float score = -INFINITY;
    if (j < n) {
      const auto* key = key_at(j);
      float dot = 0.0f;
      for (int d = 0; d < head_dim; ++d) dot += q[d] * LoadFloat(key + d);
      score = dot * scale;
    }
    const float chunk_max = BlockReduce(score, MaxOp(), scratch);
    const float new_max = fmaxf(running_max, chunk_max);  // finite: the chunk has a key
    const float e = j < n ? expf(score - new_max) : 0.0f;
    weights[tid] = e;
    const float chunk_sum = BlockReduce(e, SumOp(), scratch);  // its barriers publish weights
    const float correction = expf(running_max - new_max);
    running_sum = running_sum * correction + chunk_sum;
    running_max = new_max;
    const int count = min(kAttentionThreads, n - base);
#pragma unroll
    for (int i = 0; i < kDimsPerThread; ++i) {
      const int d = tid + i * kAttentionThreads;
      if (d < head_dim) {
        float a = acc[i] * correction;
        for (int jj = 0; jj < count; ++jj) a += weights[jj] * LoadFloat(value_at(base + jj) + d);
        acc[i] = a;
      }
    }
    __syncthreads();  // weights are rewritten by the next chunk
  }
#pragma unroll
  for (int i = 0; i < kDimsPerThread; ++i) {
    const int d = tid + i * kAttentionThreads;
    if (d < head_dim) out[d] = acc[i] / running_sum;
  }
}

__device__ void FillNan(float* out, int head_dim) {
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) out[d] = NAN;
}

// grid (tokens, heads).
__global__ void SegmentAttentionKernel(SegmentAttentionParams p) {
  const int token = blockIdx.x, head = blockIdx.y;
  const int64_t row = int64_t{p.heads} * p.head_dim;
  float* out = p.out + token * row + head * p.head_dim;
  int begin = 0, length = 0;
  for (int s = 0; s < p.num_segments; ++s) {
    const int len = p.segment_lengths[s];
    if (len > 0 && token >= begin && token < begin + len) {
      length = len;
      break;
    }
    begin += len < 0 ? 0 : len;
  }
  if (length == 0) {
    FillNan(out, p.head_dim);
    return;
  }
  const float* keys = p.k + begin * row + head * p.head_dim;
  const float* values = p.v + begin * row + head * p.head_dim;
  AttendRow(
      p.q + token * row + head * p.head_dim, length, p.head_dim, p.scale,
      [&](int j) { return keys + j * row; }, [&](int j) { return values + j * row; }, out);
}

// The sequence whose new rows include `token`, or -1.
__device__ int FindSequence(const PagedAttentionParams& p, int token) {
  for (int s = 0; s < p.num_sequences; ++s) {
    const int32_t begin = p.sequences[s * 3], len = p.sequences[s * 3 + 1];
    if (token >= begin && token < begin + len) return s;
  }
  return -1;
}

// Whether positions [0, n) of sequence s all have a valid cache block.
__device__ bool BlocksValid(const PagedAttentionParams& p, int s, int n) {
  const int blocks = (n + p.block_size - 1) / p.block_size;
  if (blocks > p.max_blocks) return false;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks;
  for (int b = 0; b < blocks; ++b) {
    if (table[b] < 0 || table[b] >= p.num_blocks) return false;
  }
  return true;
}

// Element offset of position `pos`, kv head 0, in the cache of sequence s.
__device__ int64_t CacheOffset(const PagedAttentionParams& p, int s, int pos) {
  const int32_t block = p.block_tables[int64_t{s} * p.max_blocks + pos / p.block_size];
  return (int64_t{block} * p.block_size + pos % p.block_size) * p.kv_heads * p.head_dim;
}

// grid (tokens): writes the token's k and v rows, as bf16, into its sequence's cache slot.
__global__ void AppendKvKernel(PagedAttentionParams p) {
  const int token = blockIdx.x;
  const int s = FindSequence(p, token);
  if (s < 0) return;
  const int pos = p.sequences[s * 3 + 2] + token - p.sequences[s * 3];
  if (!BlocksValid(p, s, pos + 1)) return;  // the attention kernel reports it as NaN
  const int64_t row = int64_t{p.kv_heads} * p.head_dim;
  auto* k_cache = reinterpret_cast<__nv_bfloat16*>(p.k_cache) + CacheOffset(p, s, pos);
  auto* v_cache = reinterpret_cast<__nv_bfloat16*>(p.v_cache) + CacheOffset(p, s, pos);
  for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
    StoreFloat(k_cache + i, p.k[token * row + i]);
    StoreFloat(v_cache + i, p.v[token * row + i]);
  }
}

// grid (tokens, heads): causal attention of the token over positions [0, its position].
__global__ void PagedAttentionKernel(PagedAttentionParams p) {
  const int token = blockIdx.x, head = blockIdx.y;
  const int s = FindSequence(p, token);
  if (s < 0) return;
  const int64_t q_row = int64_t{p.heads} * p.head_dim;
  float* out = p.out + token * q_row + head * p.head_dim;
  const int n = p.sequences[s * 3 + 2] + token - p.sequences[s * 3] + 1;
  if (!BlocksValid(p, s, n)) {
    FillNan(out, p.head_dim);
    return;
  }
  const int kv_head = head / (p.heads / p.kv_heads);
  const auto* k_cache = reinterpret_cast<const __nv_bfloat16*>(p.k_cache) + kv_head * p.head_dim;
  const auto* v_cache = reinterpret_cast<const __nv_bfloat16*>(p.v_cache) + kv_head * p.head_dim;
  AttendRow(
      p.q + token * q_row + head * p.head_dim, n, p.head_dim, p.scale,
      [&](int j) { return k_cache + CacheOffset(p, s, j); },
      [&](int j) { return v_cache + CacheOffset(p, s, j); }, out);
}

constexpr int kMaxGridY = 65535;

}  // namespace

cudaError_t LaunchSegmentAttention(const SegmentAttentionParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.heads <= 0 || p.heads > kMaxGridY || p.head_dim <= 0 ||
      p.head_dim > kMaxAttentionHeadDim || p.num_segments < 0) {
    return cudaErrorInvalidValue;
  }
  if (p.tokens == 0) return cudaSuccess;
  SegmentAttentionKernel<<<dim3(p.tokens, p.heads), kAttentionThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchPagedAttention(const PagedAttentionParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.heads <= 0 || p.heads > kMaxGridY || p.kv_heads <= 0 ||
      p.heads % p.kv_heads != 0 || p.head_dim <= 0 || p.head_dim > kMaxAttentionHeadDim ||
      p.num_sequences < 0 || p.max_blocks <= 0 || p.block_size <= 0 || p.num_blocks <= 0) {
    return cudaErrorInvalidValue;
  }
  if (p.tokens == 0) return cudaSuccess;
  AppendKvKernel<<<p.tokens, kAppendThreads, 0, stream>>>(p);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  PagedAttentionKernel<<<dim3(p.tokens, p.heads), kAttentionThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
