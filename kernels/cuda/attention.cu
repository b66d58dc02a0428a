#include <cuda_bf16.h>

#include <climits>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"

namespace pixtral::cuda {
namespace {

// One block per (query token, head); each chunk of kAttentionThreads keys gives one key per
// thread for the scores, then every thread accumulates its own output dimensions over the chunk.
constexpr int kAttentionThreads = 128;
constexpr int kDimsPerThread = kMaxAttentionHeadDim / kAttentionThreads;
static_assert(kMaxAttentionHeadDim % kAttentionThreads == 0);
// Threads per block of the cache append: one thread per element of a token's k or v row.
constexpr int kAppendThreads = 256;
constexpr int kAppendParts = 4;

// Softmax(q·Kᵀ·scale)·V for one query row over n keys; key_at(j) / value_at(j) point at key and
// value j (float or bf16); out is f32 or bf16. Every thread of the block must call it.
template <typename KeyAt, typename ValueAt, typename Out>
__device__ void AttendRow(const float* q_row, int n, int head_dim, float scale, KeyAt key_at,
                          ValueAt value_at, Out* out) {
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
    if (d < head_dim) StoreFloat(out + d, acc[i] / running_sum);
  }
}

template <typename Out>
__device__ void FillNan(Out* out, int head_dim) {
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) StoreFloat(out + d, NAN);
}

// grid (tokens, heads).
__global__ void SegmentAttentionKernel(SegmentAttentionParams p) {
  StartAfterPriorKernels();
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
// The block's threads split the sequences (a serial scan by every thread is a chain of dependent
// loads); every thread of the block must call it, with the same token.
__device__ int FindSequence(const PagedAttentionParams& p, int token) {
  __shared__ int found;
  if (threadIdx.x == 0) found = -1;
  __syncthreads();
  for (int s = threadIdx.x; s < p.num_sequences; s += blockDim.x) {
    const int32_t begin = p.sequences[s * 3], len = p.sequences[s * 3 + 1];
    if (token >= begin && token < begin + len) found = s;
  }
  __syncthreads();
  return found;
}

// Whether positions [0, n) of sequence s all have a valid cache block. The block's threads split
// the table (a serial walk by every thread is a chain of dependent loads); every thread of the
// block must call it, with the same s and n.
__device__ bool BlocksValid(const PagedAttentionParams& p, int s, int n) {
  const int blocks = (n + p.block_size - 1) / p.block_size;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks;
  bool valid = blocks <= p.max_blocks;
  for (int b = threadIdx.x; valid && b < blocks; b += blockDim.x) {
    valid = table[b] >= 0 && table[b] < p.num_blocks;
  }
  return __syncthreads_and(valid);
}

// Element offset of position `pos`, kv head 0, in the cache of sequence s.
__device__ int64_t CacheOffset(const PagedAttentionParams& p, int s, int pos) {
  const int32_t block = p.block_tables[int64_t{s} * p.max_blocks + pos / p.block_size];
  return (int64_t{block} * p.block_size + pos % p.block_size) * p.kv_heads * p.head_dim;
}

// grid (tokens, kAppendParts): rotates the token's q rows in place and its k rows (RoPE, where
// cos_sin is set), then writes its k and v rows, as bf16, into its sequence's cache slot; the
// token's work is split over kAppendParts blocks (a decode step has only a few tokens).
__global__ void AppendKvKernel(PagedAttentionParams p) {
  StartAfterPriorKernels();
  const int token = blockIdx.x;
  const int s = FindSequence(p, token);
  if (s < 0) return;
  const int half = p.head_dim / 2;
  const float2* __restrict__ cs =
      p.cos_sin != nullptr ? reinterpret_cast<const float2*>(p.cos_sin) + int64_t{token} * half
                           : nullptr;
  auto rotate = [&](float2 x, int i) {
    if (cs == nullptr) return x;
    const float2 r = cs[i % half];  // (cos, sin)
    return make_float2(x.x * r.x - x.y * r.y, x.x * r.y + x.y * r.x);
  };
  if (cs != nullptr) {
    float2* __restrict__ q = reinterpret_cast<float2*>(p.q + int64_t{token} * p.qkv_stride);
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < p.heads * half;
         i += gridDim.y * blockDim.x) {
      q[i] = rotate(q[i], i);
    }
  }
  const int pos = p.sequences[s * 3 + 2] + token - p.sequences[s * 3];
  // Only the slot's own block matters here; the attention kernels check the whole table (and
  // report a bad one as NaN).
  if (pos / p.block_size >= p.max_blocks) return;
  const int32_t block = p.block_tables[int64_t{s} * p.max_blocks + pos / p.block_size];
  if (block < 0 || block >= p.num_blocks) return;
  const int64_t pairs = int64_t{p.kv_heads} * half;
  auto* __restrict__ k_cache =
      reinterpret_cast<__nv_bfloat162*>(p.k_cache) + CacheOffset(p, s, pos) / 2;
  auto* __restrict__ v_cache =
      reinterpret_cast<__nv_bfloat162*>(p.v_cache) + CacheOffset(p, s, pos) / 2;
  const float2* __restrict__ k = reinterpret_cast<const float2*>(p.k + token * p.qkv_stride);
  const float2* __restrict__ v = reinterpret_cast<const float2*>(p.v + token * p.qkv_stride);
  for (int64_t i = blockIdx.y * blockDim.x + threadIdx.x; i < pairs; i += gridDim.y * blockDim.x) {
    k_cache[i] = __float22bfloat162_rn(rotate(k[i], static_cast<int>(i)));
    v_cache[i] = __float22bfloat162_rn(v[i]);
  }
}

// grid (tokens, heads): causal attention of the token over positions [0, its position], for the
// tokens of sequences with at most max_q_len new tokens (the others are PagedPrefillKernel's).
template <typename Out>
__global__ void PagedAttentionKernel(PagedAttentionParams p, int max_q_len) {
  StartAfterPriorKernels();
  const int token = blockIdx.x, head = blockIdx.y;
  const int s = FindSequence(p, token);
  if (s < 0 || p.sequences[s * 3 + 1] > max_q_len) return;
  Out* out = static_cast<Out*>(p.out) + (int64_t{token} * p.heads + head) * p.head_dim;
  const int n = p.sequences[s * 3 + 2] + token - p.sequences[s * 3] + 1;
  if (!BlocksValid(p, s, n)) {
    FillNan(out, p.head_dim);
    return;
  }
  const int kv_head = head / (p.heads / p.kv_heads);
  const auto* k_cache = reinterpret_cast<const __nv_bfloat16*>(p.k_cache) + kv_head * p.head_dim;
  const auto* v_cache = reinterpret_cast<const __nv_bfloat16*>(p.v_cache) + kv_head * p.head_dim;
  AttendRow(
      p.q + token * p.qkv_stride + head * p.head_dim, n, p.head_dim, p.scale,
      [&](int j) { return k_cache + CacheOffset(p, s, j); },
      [&](int j) { return v_cache + CacheOffset(p, s, j); }, out);
}

// ---- Tiled (flash-style) attention for prompts -------------------------------------------------
//
// One block per (tile of kTileQueries queries of one segment or sequence, head). The block walks
// the keys in tiles of Tile::kKeys rows: k and v tiles are staged in shared memory as f32 with
// 16-byte loads, the scores of the query tile against the key tile are computed from shared
// memory, and an online softmax in f32 (running max and sum per query, in base 2) rescales the
// output accumulators, which stay in registers. Thread (ty, tx) of the kThreadRows x kThreadCols
// grid owns queries ty * kRowsPerThread + i, keys tx + kThreadCols * j of each key tile, and
// Tile::kDimsPerThread output dimensions; the kThreadCols threads of a query row are one half
// warp, so row maxima and sums are half-warp shuffles.

constexpr int kTileQueries = 64;
constexpr int kThreadRows = 16;
constexpr int kThreadCols = 16;
constexpr int kTiledThreads = kThreadRows * kThreadCols;
constexpr int kRowsPerThread = kTileQueries / kThreadRows;
static_assert(kTileQueries % kThreadRows == 0 && kThreadCols * 2 == kWarpSize);
// Elements per 16-byte global load of bf16 (8 f32 are two such loads).
constexpr int kLoadChunk = 8;
constexpr float kLog2e = 1.4426950408889634f;

template <int kHeadDim>
struct Tile {
  static_assert(kHeadDim % kThreadCols == 0 && kHeadDim % kLoadChunk == 0);
  // The f32 tiles serve the small heads (16, 32); 64 and 128 take the tensor-core tiles.
  static_assert(kHeadDim <= 32);
  static constexpr int kKeys = 64;
  static constexpr int kKeysPerThread = kKeys / kThreadCols;
  static constexpr int kDimsPerThread = kHeadDim / kThreadCols;
  // Row strides (floats) of the q, k, v tiles and of the probabilities: 4 more than the row,
  // so that the float4 reads of 8 consecutive rows and the scalar probability writes of two
  // query rows 4 apart fall in distinct banks.
  static constexpr int kStride = kHeadDim + 4;
  static constexpr int kScoreStride = kKeys + 4;
  static_assert((kStride / 4) % 2 == 1 && (kRowsPerThread * kScoreStride) % 32 == 16);
  static constexpr size_t kSharedBytes =
      sizeof(float) * ((kTileQueries + 2 * kKeys) * kStride + kTileQueries * kScoreStride);

  // A thread's output dimensions: tx, tx + 16, ...
  static __device__ int Dim(int c, int tx) { return c * kThreadCols + tx; }
};

__device__ __forceinline__ void Load8(const float* src, float* dst) {
  const float4 a = reinterpret_cast<const float4*>(src)[0];
  const float4 b = reinterpret_cast<const float4*>(src)[1];
  dst[0] = a.x, dst[1] = a.y, dst[2] = a.z, dst[3] = a.w;
  dst[4] = b.x, dst[5] = b.y, dst[6] = b.z, dst[7] = b.w;
}

__device__ __forceinline__ void Load8(const __nv_bfloat16* src, float* dst) {
  const uint4 raw = *reinterpret_cast<const uint4*>(src);
  const auto* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(pairs[i]);
    dst[2 * i] = f.x, dst[2 * i + 1] = f.y;
  }
}

// Copies rows [0, n) of a [kRows, kHeadDim] tile, row r read from row_at(r) (f32 or bf16, 16-byte
// aligned), into dst (row stride Tile::kStride) times `factor`; rows [n, kRows) become zero.
template <int kHeadDim, int kRows, typename RowAt>
__device__ void LoadTile(RowAt row_at, int n, float factor, float* dst) {
  constexpr int kChunks = kHeadDim / kLoadChunk;
  for (int i = threadIdx.x; i < kRows * kChunks; i += kTiledThreads) {
    const int r = i / kChunks, c = i % kChunks * kLoadChunk;
    float x[kLoadChunk] = {};
    if (r < n) Load8(row_at(r) + c, x);
    float4* d = reinterpret_cast<float4*>(dst + r * Tile<kHeadDim>::kStride + c);
    d[0] = make_float4(x[0] * factor, x[1] * factor, x[2] * factor, x[3] * factor);
    d[1] = make_float4(x[4] * factor, x[5] * factor, x[6] * factor, x[7] * factor);
  }
}

// Reduces `v` over the kThreadCols lanes of a query row (a half warp).
template <typename Op>
__device__ __forceinline__ float HalfWarpReduce(float v, Op op) {
  for (int offset = kThreadCols / 2; offset > 0; offset /= 2) {
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Attention of num_queries (1..kTileQueries) query rows over num_keys keys; query i sees keys
// j < min(num_keys, i + causal_offset + 1) (causal_offset >= num_keys: no mask). q_at(i) and
// out_at(i) point at query row i and its output row (f32); key_at(j) and value_at(j) at key and
// value row j (f32 or bf16, 16-byte aligned). Every thread of the block must call it.
template <int kHeadDim, typename QAt, typename OutAt, typename KeyAt, typename ValueAt>
__device__ void AttendTile(int num_queries, int num_keys, int causal_offset, float scale, QAt q_at,
                           OutAt out_at, KeyAt key_at, ValueAt value_at) {
  using T = Tile<kHeadDim>;
  extern __shared__ float4 shared4[];
  float* q_s = reinterpret_cast<float*>(shared4);
  float* k_s = q_s + kTileQueries * T::kStride;
  float* v_s = k_s + T::kKeys * T::kStride;
  float* p_s = v_s + T::kKeys * T::kStride;
  const int tx = threadIdx.x % kThreadCols, ty = threadIdx.x / kThreadCols;

  // Scores in base 2: exp(x * scale) = exp2(x * scale * log2(e)).
  LoadTile<kHeadDim, kTileQueries>(q_at, num_queries, scale * kLog2e, q_s);
  float row_max[kRowsPerThread], row_sum[kRowsPerThread];
  float acc[kRowsPerThread][T::kDimsPerThread] = {};
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) row_max[i] = -INFINITY, row_sum[i] = 0.0f;

  const int key_end = min(num_keys, num_queries + causal_offset);
  for (int first = 0; first < key_end; first += T::kKeys) {
    __syncthreads();  // the previous tile's k, v and p are fully read (and q is written)
    const int n = min(T::kKeys, num_keys - first);
    LoadTile<kHeadDim, T::kKeys>([&](int j) { return key_at(first + j); }, n, 1.0f, k_s);
    LoadTile<kHeadDim, T::kKeys>([&](int j) { return value_at(first + j); }, n, 1.0f, v_s);
    __syncthreads();

    float s[kRowsPerThread][T::kKeysPerThread] = {};
#pragma unroll 4
    for (int d = 0; d < kHeadDim; d += 4) {
      float4 qv[kRowsPerThread], kv[T::kKeysPerThread];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
        qv[i] = *reinterpret_cast<const float4*>(q_s + (ty * kRowsPerThread + i) * T::kStride + d);
      }
#pragma unroll
      for (int j = 0; j < T::kKeysPerThread; ++j) {
        kv[j] = *reinterpret_cast<const float4*>(k_s + (tx + kThreadCols * j) * T::kStride + d);
      }
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
#pragma unroll
        for (int j = 0; j < T::kKeysPerThread; ++j) {
          s[i][j] = fmaf(qv[i].x, kv[j].x, s[i][j]);
          s[i][j] = fmaf(qv[i].y, kv[j].y, s[i][j]);
          s[i][j] = fmaf(qv[i].z, kv[j].z, s[i][j]);
          s[i][j] = fmaf(qv[i].w, kv[j].w, s[i][j]);
        }
      }
    }

#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int row = ty * kRowsPerThread + i;
      // Keys [0, visible) of this tile are seen; key 0 of the first tile always is, so the
      // running max is finite from the first tile on.
      const int visible = min(num_keys, row + causal_offset + 1) - first;
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < T::kKeysPerThread; ++j) {
        if (tx + kThreadCols * j >= visible) s[i][j] = -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      const float new_max = fmaxf(row_max[i], HalfWarpReduce(tile_max, MaxOp()));
      const float correction = exp2f(row_max[i] - new_max);
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < T::kKeysPerThread; ++j) {
        const float e = exp2f(s[i][j] - new_max);
        sum += e;
        p_s[row * T::kScoreStride + tx + kThreadCols * j] = e;
      }
      row_sum[i] = row_sum[i] * correction + HalfWarpReduce(sum, SumOp());
      row_max[i] = new_max;
#pragma unroll
      for (int c = 0; c < T::kDimsPerThread; ++c) acc[i][c] *= correction;
    }
    __syncthreads();

#pragma unroll 2
    for (int key = 0; key < T::kKeys; key += 4) {
      float4 pv[kRowsPerThread];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
        pv[i] = *reinterpret_cast<const float4*>(p_s + (ty * kRowsPerThread + i) * T::kScoreStride +
                                                 key);
      }
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const float* v_row = v_s + (key + kk) * T::kStride;
        float v[T::kDimsPerThread];
#pragma unroll
        for (int c = 0; c < T::kDimsPerThread; ++c) v[c] = v_row[T::Dim(c, tx)];
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i) {
          const float p = kk == 0 ? pv[i].x : kk == 1 ? pv[i].y : kk == 2 ? pv[i].z : pv[i].w;
#pragma unroll
          for (int c = 0; c < T::kDimsPerThread; ++c) acc[i][c] = fmaf(p, v[c], acc[i][c]);
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int row = ty * kRowsPerThread + i;
    if (row >= num_queries) continue;
    auto* out = out_at(row);
    const float inv = 1.0f / row_sum[i];
#pragma unroll
    for (int c = 0; c < T::kDimsPerThread; ++c) StoreFloat(out + T::Dim(c, tx), acc[i][c] * inv);
  }
}

// ---- Tensor-core path of the tiled kernels (head_dim 64 and 128) ------------------------------
//
// Same tiling of queries as above, kMmaWarps warps per block: warp w owns queries
// [16w, 16w + 16) of the tile. q (pre-scaled), k and v tiles are staged in shared memory as bf16,
// and both products are mma.sync m16n8k16 bf16 x bf16 -> f32: S = Q·Kᵀ over kMmaKeys keys, then
// O += P·V with P, rounded to bf16, taken straight from S's accumulator registers (the m16n8
// accumulator layout of two adjacent key octets is the A layout of one k16 step). The online
// softmax (max, sum, rescaling) and the accumulators stay in f32. Fragment element ownership
// (PTX ISA, mma.m16n8k16): lane = 4 * g + t holds rows g and g + 8, columns 2t and 2t + 1 (+8).

constexpr int kMmaM = 16;
constexpr int kMmaN = 8;
constexpr int kMmaK = 16;
constexpr int kMmaWarps = kTileQueries / kMmaM;
constexpr int kMmaThreads = kMmaWarps * kWarpSize;
constexpr int kMmaKeys = 64;
// bf16 elements of padding per shared row: rows stay 16-byte aligned, and the 8 rows x 4 words of
// a fragment load (or an ldmatrix phase) fall in 32 distinct banks.
constexpr int kMmaPad = 8;
static_assert(kTileQueries % kMmaM == 0 && kMmaKeys % kMmaK == 0);

template <int kHeadDim>
struct MmaTile {
  static_assert(kHeadDim % (2 * kMmaN) == 0 && kHeadDim % kLoadChunk == 0);
  static constexpr int kStride = kHeadDim + kMmaPad;
  static_assert((kStride / 2) % 32 == 4);
  // The q tile, then `stages` k tiles and as many v tiles; with two stages the q tile lives in
  // the second stage's k tile (see AttendTileMma).
  static constexpr size_t SharedBytes(int stages) {
    return sizeof(__nv_bfloat16) * ((stages == 2 ? 0 : kTileQueries) + 2 * stages * kMmaKeys) *
           kStride;
  }
};

// Stages of the k and v tiles: bf16 sources (the paged cache) are copied asynchronously, the next
// tile's copy in flight while one is computed; f32 sources are converted, one tile at a time.
template <typename KeyAt>
constexpr int KvStages() {
  return std::is_same_v<std::invoke_result_t<KeyAt, int>, const __nv_bfloat16*> ? 2 : 1;
}

// Head dimensions whose tiled kernels use tensor cores; the others keep the f32 tiles.
constexpr bool UseMma(int head_dim) { return head_dim == 64 || head_dim == 128; }
constexpr int TiledThreads(int head_dim) { return UseMma(head_dim) ? kMmaThreads : kTiledThreads; }

// Copies rows [0, n) of a [kRows, kHeadDim] tile, row r read from row_at(r) (f32 or bf16, 16-byte
// aligned), into dst as bf16 (row stride MmaTile::kStride) times `factor`; rows [n, kRows) become
// zero.
template <int kHeadDim, int kRows, typename RowAt>
__device__ void LoadTileBf16(RowAt row_at, int n, float factor, __nv_bfloat16* dst) {
  constexpr int kChunks = kHeadDim / kLoadChunk;
  for (int i = threadIdx.x; i < kRows * kChunks; i += kMmaThreads) {
    const int r = i / kChunks, c = i % kChunks * kLoadChunk;
    float x[kLoadChunk] = {};
    if (r < n) Load8(row_at(r) + c, x);
    uint4 packed;
    auto* pairs = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
    for (int e = 0; e < kLoadChunk / 2; ++e) {
      pairs[e] = __floats2bfloat162_rn(x[2 * e] * factor, x[2 * e + 1] * factor);
    }
    *reinterpret_cast<uint4*>(dst + r * MmaTile<kHeadDim>::kStride + c) = packed;
  }
}

// Two consecutive bf16 in shared memory as one fragment register.
__device__ __forceinline__ uint32_t LoadPair(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// AttendTile on tensor cores: same arguments and result, bf16 operands.
template <int kHeadDim, typename QAt, typename OutAt, typename KeyAt, typename ValueAt>
__device__ void AttendTileMma(int num_queries, int num_keys, int causal_offset, float scale,
                              QAt q_at, OutAt out_at, KeyAt key_at, ValueAt value_at) {
  using T = MmaTile<kHeadDim>;
  constexpr int kDimSteps = kHeadDim / kMmaK;  // k steps of Q·Kᵀ
  constexpr int kKeyTiles = kMmaKeys / kMmaN;  // n tiles of S
  constexpr int kDimTiles = kHeadDim / kMmaN;  // n tiles of O
  constexpr int kStages = KvStages<KeyAt>();
  constexpr int kTileElements = kMmaKeys * T::kStride;
  extern __shared__ float4 shared4[];
  // [kStages][kMmaKeys][kStride] k and v tiles. With two stages q is staged in the second k
  // tile, which nothing else uses until the first iteration copies key tile 1 there (after a
  // barrier past the q fragment loads): a third less shared memory, three blocks to an SM.
  static_assert(kTileQueries == kMmaKeys);
  auto* base = reinterpret_cast<__nv_bfloat16*>(shared4);
  auto* k_s = base + (kStages == 2 ? 0 : kTileQueries * T::kStride);
  auto* v_s = k_s + kStages * kTileElements;
  auto* q_s = kStages == 2 ? k_s + kTileElements : base;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int g = lane / 4, t = lane % 4;
  const int first_row = warp * kMmaM + g;  // this thread's rows: first_row and first_row + 8
  const int key_end = min(num_keys, num_queries + causal_offset);
  const int num_tiles = (key_end + kMmaKeys - 1) / kMmaKeys;

  // The asynchronous copy of key tile `tile` into `stage`, rows past num_keys zero-filled.
  auto copy_tile = [&](int tile, int stage) {
    constexpr int kChunks = kHeadDim / kLoadChunk;
    const int first = tile * kMmaKeys, n = min(kMmaKeys, num_keys - first);
    for (int i = threadIdx.x; i < kMmaKeys * kChunks; i += kMmaThreads) {
      const int r = i / kChunks, c = i % kChunks * kLoadChunk;
      const int key = first + min(r, n - 1);  // an address in range, not read past n
      const int at = stage * kTileElements + r * T::kStride + c;
      CopyAsync16OrZero(k_s + at, key_at(key) + c, r < n);
      CopyAsync16OrZero(v_s + at, value_at(key) + c, r < n);
    }
    CommitAsync();
  };
  if constexpr (kStages == 2) copy_tile(0, 0);  // in flight while q is staged

  // Scores in base 2, as AttendTile's; the warp's q fragments stay in registers.
  LoadTileBf16<kHeadDim, kTileQueries>(q_at, num_queries, scale * kLog2e, q_s);
  __syncthreads();
  uint32_t q_frag[kDimSteps][4];
  const __nv_bfloat16* q_row = q_s + first_row * T::kStride + 2 * t;
#pragma unroll
  for (int ks = 0; ks < kDimSteps; ++ks) {
    q_frag[ks][0] = LoadPair(q_row + ks * kMmaK);
    q_frag[ks][1] = LoadPair(q_row + 8 * T::kStride + ks * kMmaK);
    q_frag[ks][2] = LoadPair(q_row + ks * kMmaK + 8);
    q_frag[ks][3] = LoadPair(q_row + 8 * T::kStride + ks * kMmaK + 8);
  }
  if constexpr (kStages == 2) __syncthreads();  // every warp has its q before tile 1 lands there
  // Per row: the running max, and the running sum of this thread's columns (summed over the
  // row's 4 lanes at the end; the rescaling is the same in all of them).
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  float o[kDimTiles][4] = {};

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int first = tile * kMmaKeys;
    const __nv_bfloat16* k_tile = k_s + (tile % kStages) * kTileElements;
    const __nv_bfloat16* v_tile = v_s + (tile % kStages) * kTileElements;
    if constexpr (kStages == 2) {
      // The next tile's copy goes into the stage the previous tile was computed from.
      if (tile + 1 < num_tiles) {
        copy_tile(tile + 1, (tile + 1) % 2);
        WaitAsync<1>();
      } else {
        WaitAsync<0>();
      }
      __syncthreads();
    } else {
      __syncthreads();  // the previous tile's k and v are fully read
      const int n = min(kMmaKeys, num_keys - first);
      LoadTileBf16<kHeadDim, kMmaKeys>([&](int j) { return key_at(first + j); }, n, 1.0f, k_s);
      LoadTileBf16<kHeadDim, kMmaKeys>([&](int j) { return value_at(first + j); }, n, 1.0f, v_s);
      __syncthreads();
    }

    float s[kKeyTiles][4] = {};
    // K's B fragments by ldmatrix: matrices 0/1 are keys nt * 8.. of dimensions ks * 16 + 0/8
    // (b0 and b1 of n tile nt), matrices 2/3 the same of keys nt * 8 + 8... The k step is the
    // outer loop so that consecutive products accumulate into different n tiles: an mma waits
    // for the previous one on the same accumulator, which stalled the warps (ncu's "wait").
    const __nv_bfloat16* k_lane =
        k_tile + (lane / 16 * kMmaN + lane % 8) * T::kStride + (lane / 8) % 2 * 8;
#pragma unroll
    for (int ks = 0; ks < kDimSteps; ++ks) {
#pragma unroll
      for (int nt = 0; nt < kKeyTiles; nt += 2) {
        uint32_t b[4];
        LdMatrixX4(b, k_lane + nt * kMmaN * T::kStride + ks * kMmaK);
        MmaBf16(s[nt], q_frag[ks], b[0], b[1]);
        MmaBf16(s[nt + 1], q_frag[ks], b[2], b[3]);
      }
    }

    // Whether every key of the tile is seen by every row of this warp (most tiles): then no
    // score needs masking.
    const bool unmasked = first + kMmaKeys <= min(num_keys, warp * kMmaM + causal_offset + 1);
    if (!unmasked) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // Keys [0, visible) of this tile are seen; key 0 of the first tile always is.
        const int visible = min(num_keys, first_row + 8 * h + causal_offset + 1) - first;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            if (nt * kMmaN + 2 * t + e >= visible) s[nt][2 * h + e] = -INFINITY;
          }
        }
      }
    }
    float correction[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kKeyTiles; ++nt) {
        tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      const float new_max = fmaxf(row_max[h], tile_max);
      correction[h] = exp2f(row_max[h] - new_max);
      row_max[h] = new_max;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kKeyTiles; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][2 * h + e];
          x = exp2f(x - new_max);
          sum += x;
        }
      }
      row_sum[h] = row_sum[h] * correction[h] + sum;
    }
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt) {
      o[dt][0] *= correction[0], o[dt][1] *= correction[0];
      o[dt][2] *= correction[1], o[dt][3] *= correction[1];
    }

    // O += P·V, one k16 step per 16 keys; ldmatrix.trans turns row-major v into B fragments:
    // matrices 0/1 are keys +0/+8 of dimensions dt * 8.., matrices 2/3 the same of dt * 8 + 8...
    const __nv_bfloat16* v_lane =
        v_tile + ((lane / 8) % 2 * 8 + lane % 8) * T::kStride + lane / 16 * kMmaN;
#pragma unroll
    for (int kk = 0; kk < kMmaKeys / kMmaK; ++kk) {
      const uint32_t p[4] = {PackBf16(s[2 * kk][0], s[2 * kk][1]),
                             PackBf16(s[2 * kk][2], s[2 * kk][3]),
                             PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dt = 0; dt < kDimTiles; dt += 2) {
        uint32_t b[4];
        LdMatrixX4Trans(b, v_lane + kk * kMmaK * T::kStride + dt * kMmaN);
        MmaBf16(o[dt], p, b[0], b[1]);
        MmaBf16(o[dt + 1], p, b[2], b[3]);
      }
    }
    if constexpr (kStages == 2) __syncthreads();  // this stage is refilled by the next tile
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float total = row_sum[h];
    total += __shfl_xor_sync(0xffffffffu, total, 1);
    total += __shfl_xor_sync(0xffffffffu, total, 2);
    const int row = first_row + 8 * h;
    if (row >= num_queries) continue;
    auto* out = out_at(row);
    const float inv = 1.0f / total;
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt) {
      StorePair(out + dt * kMmaN + 2 * t, o[dt][2 * h] * inv, o[dt][2 * h + 1] * inv);
    }
  }
}

// The query tile's attention on the path of its head dimension.
template <int kHeadDim, typename QAt, typename OutAt, typename KeyAt, typename ValueAt>
__device__ void AttendQueryTile(int num_queries, int num_keys, int causal_offset, float scale,
                                QAt q_at, OutAt out_at, KeyAt key_at, ValueAt value_at) {
  if constexpr (UseMma(kHeadDim)) {
    AttendTileMma<kHeadDim>(num_queries, num_keys, causal_offset, scale, q_at, out_at, key_at,
                            value_at);
  } else {
    AttendTile<kHeadDim>(num_queries, num_keys, causal_offset, scale, q_at, out_at, key_at,
                         value_at);
  }
}

// Fills rows [0, n) of out_at(row) with NaN.
template <typename OutAt>
__device__ void FillTileNan(int n, int head_dim, OutAt out_at) {
  for (int i = threadIdx.x; i < n * head_dim; i += blockDim.x)
    StoreFloat(out_at(i / head_dim) + i % head_dim, NAN);
}

// grid (SegmentTiles(p), heads): tile blockIdx.x of the segments' query tiles in order, then the
// tiles of the tokens after the last segment (NaN).
// Four blocks to an SM at the vision encoder's head_dim 64 (127 registers, none spilled; three
// blocks measured slower in run 15, when four still spilled a few).
constexpr int MinSegmentBlocks(int head_dim) { return head_dim == 64 ? 4 : 1; }

template <int kHeadDim>
__global__ void __launch_bounds__(TiledThreads(kHeadDim), MinSegmentBlocks(kHeadDim))
    SegmentAttentionTiledKernel(SegmentAttentionParams p) {
  StartAfterPriorKernels();
  const int head = blockIdx.y;
  int tile = blockIdx.x, begin = 0, length = 0;
  for (int s = 0; s < p.num_segments; ++s) {
    const int len = min(max(p.segment_lengths[s], 0), p.tokens - begin);
    const int tiles = (len + kTileQueries - 1) / kTileQueries;
    if (tile < tiles) {
      length = len;
      break;
    }
    tile -= tiles;
    begin += len;
  }
  const int64_t row = int64_t{p.heads} * kHeadDim;
  const int first_query = begin + tile * kTileQueries;
  auto out_at = [&](int i) { return p.out + (first_query + i) * row + head * kHeadDim; };
  if (length == 0) {  // past the segments
    if (first_query < p.tokens)
      FillTileNan(min(kTileQueries, p.tokens - first_query), kHeadDim, out_at);
    return;
  }
  // bf16 k and v where the tensor-core path copies them as they are.
  auto segment_of = [&](const float* f32, const uint16_t* bf16) {
    if constexpr (UseMma(kHeadDim)) {
      return reinterpret_cast<const __nv_bfloat16*>(bf16) + begin * row + head * kHeadDim;
    } else {
      return f32 + begin * row + head * kHeadDim;
    }
  };
  const auto* k = segment_of(p.k, p.k_bf16);
  const auto* v = segment_of(p.v, p.v_bf16);
  AttendQueryTile<kHeadDim>(
      min(kTileQueries, length - tile * kTileQueries), length, length, p.scale,
      [&](int i) { return p.q + (first_query + i) * row + head * kHeadDim; }, out_at,
      [&](int j) { return k + j * row; }, [&](int j) { return v + j * row; });
}

// grid (PrefillTiles(p), heads): tile blockIdx.x of the query tiles of the sequences with more
// than one new token, in order. Causal over the sequence's cache, which AppendKvKernel has filled.
// Three blocks to an SM on the tensor-core path (168 registers at head_dim 128).
constexpr int MinPrefillBlocks(int head_dim) { return UseMma(head_dim) ? 3 : 1; }

template <int kHeadDim, typename Out>
__global__ void __launch_bounds__(TiledThreads(kHeadDim), MinPrefillBlocks(kHeadDim))
    PagedPrefillKernel(PagedAttentionParams p) {
  StartAfterPriorKernels();
  const int head = blockIdx.y;
  // Blocks start roughly in order of blockIdx.x: the causal tiles with the most keys (a
  // sequence's last) go first, so that the short ones fill the end of the grid.
  int total = 0;
  for (int s = 0; s < p.num_sequences; ++s) {
    const int q_len = p.sequences[s * 3 + 1];
    total += q_len > 1 ? (q_len + kTileQueries - 1) / kTileQueries : 0;
  }
  if (static_cast<int>(blockIdx.x) >= total) return;
  int tile = total - 1 - static_cast<int>(blockIdx.x), s = 0;
  for (; s < p.num_sequences; ++s) {
    const int q_len = p.sequences[s * 3 + 1];
    const int tiles = q_len > 1 ? (q_len + kTileQueries - 1) / kTileQueries : 0;
    if (tile < tiles) break;
    tile -= tiles;
  }
  if (s == p.num_sequences) return;
  const int q_begin = p.sequences[s * 3], q_len = p.sequences[s * 3 + 1];
  const int start_pos = p.sequences[s * 3 + 2];
  if (q_begin < 0 || q_begin + q_len > p.tokens || start_pos < 0) return;  // rows of no sequence
  const int first_query = q_begin + tile * kTileQueries;
  const int num_queries = min(kTileQueries, q_len - tile * kTileQueries);
  const int64_t out_row = int64_t{p.heads} * kHeadDim;
  auto out_at = [&](int i) {
    return static_cast<Out*>(p.out) + (first_query + i) * out_row + head * kHeadDim;
  };
  const int num_keys = start_pos + q_len;
  if (!BlocksValid(p, s, num_keys)) {
    FillTileNan(num_queries, kHeadDim, out_at);
    return;
  }
  const int kv_offset = head / (p.heads / p.kv_heads) * kHeadDim;
  const auto* k_cache = reinterpret_cast<const __nv_bfloat16*>(p.k_cache) + kv_offset;
  const auto* v_cache = reinterpret_cast<const __nv_bfloat16*>(p.v_cache) + kv_offset;
  AttendQueryTile<kHeadDim>(
      num_queries, num_keys, start_pos + tile * kTileQueries, p.scale,
      [&](int i) { return p.q + (first_query + i) * p.qkv_stride + head * kHeadDim; }, out_at,
      [&](int j) { return k_cache + CacheOffset(p, s, j); },
      [&](int j) { return v_cache + CacheOffset(p, s, j); });
}

// Launches kernel on (tiles, heads) with the threads and shared memory of its tile path.
// `kv_stages`: the tensor-core path's stages of k and v tiles (KvStages of the kernel's keys).
template <int kHeadDim, typename Params>
cudaError_t LaunchTiled(void (*kernel)(Params), const Params& p, int tiles, int kv_stages,
                        cudaStream_t stream) {
  size_t bytes;
  if constexpr (UseMma(kHeadDim)) {
    bytes = MmaTile<kHeadDim>::SharedBytes(kv_stages);
  } else {
    bytes = Tile<kHeadDim>::kSharedBytes;
  }
  cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (error != cudaSuccess) return error;
  Launch(kernel, dim3(tiles, p.heads), TiledThreads(kHeadDim), bytes, stream, p);
  return cudaGetLastError();
}

// The head dimensions with a tiled kernel; others use the per-query kernels.
bool HasTiledKernel(int head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

// Upper bound on the query tiles of `n` segments or sequences over `tokens` tokens, plus one tile
// of tokens after them: every one wastes less than a tile.
int MaxTiles(int tokens, int n) { return (tokens + kTileQueries - 1) / kTileQueries + n + 1; }

// The attention kernels after the append, writing Out (f32 or bf16).
template <typename Out>
cudaError_t LaunchPagedAttentionKernels(const PagedAttentionParams& p, cudaStream_t stream) {
  // Sequences with one new token (decode) take the per-query kernel, the others the tiled one.
  const bool tiled = HasTiledKernel(p.head_dim);
  cudaError_t error = cudaSuccess;
  if (!tiled || p.has_decode) {
    Launch(PagedAttentionKernel<Out>, dim3(p.tokens, p.heads), kAttentionThreads, 0, stream, p,
           tiled ? 1 : INT_MAX);
    error = cudaGetLastError();
  }
  if (error != cudaSuccess || !tiled || !p.has_prefill) return error;
  const int tiles = MaxTiles(p.tokens, p.num_sequences);
  switch (p.head_dim) {
    case 16:
      return LaunchTiled<16>(PagedPrefillKernel<16, Out>, p, tiles, 2, stream);
    case 32:
      return LaunchTiled<32>(PagedPrefillKernel<32, Out>, p, tiles, 2, stream);
    case 64:
      return LaunchTiled<64>(PagedPrefillKernel<64, Out>, p, tiles, 2, stream);
    default:
      return LaunchTiled<128>(PagedPrefillKernel<128, Out>, p, tiles, 2, stream);
  }
}

constexpr int kMaxGridY = 65535;

}  // namespace

cudaError_t LaunchSegmentAttention(const SegmentAttentionParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.heads <= 0 || p.heads > kMaxGridY || p.head_dim <= 0 ||
      p.head_dim > kMaxAttentionHeadDim || p.num_segments < 0) {
    return cudaErrorInvalidValue;
  }
  if (p.tokens == 0) return cudaSuccess;
  const int tiles = MaxTiles(p.tokens, p.num_segments);
  switch (p.head_dim) {
    case 16:
      return LaunchTiled<16>(SegmentAttentionTiledKernel<16>, p, tiles, 1, stream);
    case 32:
      return LaunchTiled<32>(SegmentAttentionTiledKernel<32>, p, tiles, 1, stream);
    case 64:
      if (p.k_bf16 == nullptr || p.v_bf16 == nullptr) return cudaErrorInvalidValue;
      return LaunchTiled<64>(SegmentAttentionTiledKernel<64>, p, tiles, 2, stream);
    case 128:
      if (p.k_bf16 == nullptr || p.v_bf16 == nullptr) return cudaErrorInvalidValue;
      return LaunchTiled<128>(SegmentAttentionTiledKernel<128>, p, tiles, 2, stream);
    default:
      Launch(SegmentAttentionKernel, dim3(p.tokens, p.heads), kAttentionThreads, 0, stream, p);
      return cudaGetLastError();
  }
}

cudaError_t LaunchPagedAttention(const PagedAttentionParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.heads <= 0 || p.heads > kMaxGridY || p.kv_heads <= 0 ||
      p.heads % p.kv_heads != 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 ||
      p.head_dim > kMaxAttentionHeadDim || p.num_sequences < 0 || p.max_blocks <= 0 ||
      p.block_size <= 0 || p.num_blocks <= 0) {
    return cudaErrorInvalidValue;
  }
  if (p.tokens == 0) return cudaSuccess;
  Launch(AppendKvKernel, dim3(p.tokens, kAppendParts), kAppendThreads, 0, stream, p);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  return p.out_bf16 ? LaunchPagedAttentionKernels<__nv_bfloat16>(p, stream)
                    : LaunchPagedAttentionKernels<float>(p, stream);
}

}  // namespace pixtral::cuda
