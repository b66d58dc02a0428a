#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kElementsPerLane = 8;  // one 16-byte load of bf16
// Positions a split holds at least: 256, or 128 for a step of very few (sequence, kv head)
// pairs, which leaves most SMs idle otherwise (run 17 on an H200: batch 1 7.28 -> 7.15 ms at 128;
// batch 16 7.91 -> 8.06, so only steps of at most kFewPairs pairs per kFewPairsSms SMs).
constexpr int kMinSplitLen = 256;
constexpr int kMinSplitLenFewPairs = 128;
constexpr int kFewPairs = 16;
constexpr int kFewPairsSms = 132;
// Blocks an SM the split aims at: two fit (96 KB of shared memory each), so more only adds
// waves of shorter splits and a longer merge (bench/NOTES.md run 12).
constexpr int kBlocksPerSm = 2;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxGridY = 65535;

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

// Block (sequence, kv head, split), kMmaWarps warps; warp w takes the split's tiles of kTileKeys
// positions w, w + kMmaWarps, ... Each tile's key and value rows are cp.async copies into the
// warp's own slot of a kMmaStages ring (so a warp keeps kMmaStages - 1 tiles of loads in flight
// and needs only __syncwarp, never a block barrier, while it walks its tiles). Both products are
// mma.sync m16n8k16 bf16 -> f32 with the group's query heads as the rows of A (rows kGroup..15
// are zero): S = Q·Kᵀ for 16 keys is 2 n-tiles x head_dim/16 k-steps, and O += P·V takes P
// straight from S's accumulators (the m16n8 accumulator layout of two key octets is the A layout
// of one k16 step). Fragment ownership (PTX ISA, mma.m16n8k16): lane = 4 * g + t holds rows g and
// g + 8, columns 2t and 2t + 1 (+8); only row g is a real query head, so each lane keeps one
// online softmax (base 2) and half of the accumulators carry zeros.
//
// Shared rows are head_dim bf16 (256 bytes at 128), so the 16-byte chunk c of key row r is stored
// at chunk c ^ (r % 8): the eight rows an ldmatrix phase reads then fall in distinct banks.
// Positions past the split's end are zero-filled by the copy (src-size 0) and masked to -inf, so
// no stale shared data reaches a product (0 x NaN would be NaN).

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * kWarpSize;
constexpr int kTileKeys = 16;
constexpr int kMmaStages = 3;

template <int kHeadDim>
struct MmaRing {
  static constexpr int kChunks = kHeadDim / kElementsPerLane;  // 16-byte chunks a row
  static constexpr int kTileElements = kTileKeys * kHeadDim;   // one tile of k (or v)
  // [warp][stage][k, v][kTileElements] bf16.
  static constexpr size_t kBytes =
      sizeof(__nv_bfloat16) * kMmaWarps * kMmaStages * 2 * kTileElements;
  static_assert(kChunks >= 8, "the swizzle permutes 8 chunks");
};

__device__ __forceinline__ int Swizzled(int key, int chunk) { return chunk ^ (key & 7); }

// Element i of the output, in its type.
__device__ __forceinline__ void StoreOut(const DecodeAttentionParams& p, int64_t i, float v) {
  if (p.out_bf16) {
    StoreFloat(static_cast<__nv_bfloat16*>(p.out) + i, v);
  } else {
    StoreFloat(static_cast<float*>(p.out) + i, v);
  }
}

// grid (num_sequences, kv_heads, splits), kMmaThreads threads, MmaRing<kHeadDim>::kBytes of
// dynamic shared memory.
template <int kHeadDim, int kGroup>
__global__ void __launch_bounds__(kMmaThreads)
    DecodeAttentionMmaKernel(DecodeAttentionParams p, int splits, int split_len) {
  StartAfterPriorKernels();
  static_assert(kGroup <= 8, "query heads are rows g < 8 of the m16 tile");
  using Ring = MmaRing<kHeadDim>;
  constexpr int kSteps = kHeadDim / 16;    // k16 steps of S = Q·Kᵀ
  constexpr int kDimTiles = kHeadDim / 8;  // n8 tiles of O
  extern __shared__ __align__(16) char dynamic_shared[];
  auto* ring = reinterpret_cast<__nv_bfloat16*>(dynamic_shared);
  // After the walk: each warp's [kGroup][kHeadDim] partial output.
  auto& warp_out = *reinterpret_cast<float(*)[kMmaWarps][kGroup][kHeadDim]>(dynamic_shared);
  static_assert(sizeof(float) * kMmaWarps * kGroup * kHeadDim <= Ring::kBytes);
  __shared__ float warp_max[kMmaWarps][kGroup], warp_sum[kMmaWarps][kGroup];

  const int s = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z;
  const int q_begin = p.sequences[s * 3], q_len = p.sequences[s * 3 + 1];
  if (q_len != 1 || q_begin < 0 || q_begin >= p.tokens) return;
  const int n = p.sequences[s * 3 + 2] + 1;  // positions attended, the new one included
  const int begin = split * split_len, end = min(n, begin + split_len);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int g = lane / 4, t = lane % 4;
  const int first_head = kv_head * kGroup;
  const int64_t out_row = int64_t{p.heads} * kHeadDim;
  const bool valid = __syncthreads_and(TableValid(p, s, n));

  // Row g of A: query head first_head + g, pre-scaled so that scores are in base 2; columns
  // 2t, 2t + 1 and 2t + 8, 2t + 9 of each k16 step.
  uint32_t qa[kSteps][2];
  {
    const float f = p.scale * kLog2e;
    const float* src = p.q + q_begin * p.q_stride + (first_head + g) * kHeadDim;
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
      if (g < kGroup) {
        const float2 lo = *reinterpret_cast<const float2*>(src + k * 16 + 2 * t);
        const float2 hi = *reinterpret_cast<const float2*>(src + k * 16 + 8 + 2 * t);
        qa[k][0] = PackBf16(lo.x * f, lo.y * f), qa[k][1] = PackBf16(hi.x * f, hi.y * f);
      } else {
        qa[k][0] = qa[k][1] = 0;
      }
    }
  }
  float o[kDimTiles][4];
#pragma unroll
  for (int j = 0; j < kDimTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float running_max = -INFINITY, running_sum = 0.0f;  // row g; the sum is this lane's share

  const int tiles = valid ? (end - begin + kTileKeys - 1) / kTileKeys : 0;
  const int my_tiles = tiles > warp ? (tiles - warp + kMmaWarps - 1) / kMmaWarps : 0;
  const int64_t kv_stride = int64_t{p.kv_heads} * kHeadDim;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks;
  const auto* k_base = reinterpret_cast<const __nv_bfloat16*>(p.k_cache) + kv_head * kHeadDim;
  const auto* v_base = reinterpret_cast<const __nv_bfloat16*>(p.v_cache) + kv_head * kHeadDim;
  __nv_bfloat16* warp_ring = ring + warp * kMmaStages * 2 * Ring::kTileElements;
  auto slot_k = [&](int i) { return warp_ring + (i % kMmaStages) * 2 * Ring::kTileElements; };
  auto tile_begin = [&](int i) { return begin + (warp + i * kMmaWarps) * kTileKeys; };
  auto issue = [&](int i) {
    if (i < my_tiles) {
      __nv_bfloat16* k_dst = slot_k(i);
      __nv_bfloat16* v_dst = k_dst + Ring::kTileElements;
      const int first = tile_begin(i);
#pragma unroll
      for (int e = lane; e < kTileKeys * Ring::kChunks; e += kWarpSize) {
        const int key = e / Ring::kChunks, chunk = e % Ring::kChunks;
        const int pos = first + key;
        const bool in = pos < end;
        const int64_t row =
            in ? int64_t{table[pos / p.block_size]} * p.block_size + pos % p.block_size : 0;
        const int at = key * kHeadDim + Swizzled(key, chunk) * kElementsPerLane;
        const int64_t from = row * kv_stride + chunk * kElementsPerLane;
        CopyAsync16OrZero(k_dst + at, k_base + from, in);
        CopyAsync16OrZero(v_dst + at, v_base + from, in);
      }
    }
    CommitAsync();  // an empty group past the end keeps the count of groups uniform
  };

#pragma unroll
  for (int i = 0; i < kMmaStages - 1; ++i) issue(i);
  for (int i = 0; i < my_tiles; ++i) {
    issue(i + kMmaStages - 1);  // into the slot the previous tile read
    WaitAsync<kMmaStages - 1>();
    __syncwarp();  // every lane's copies of this tile are visible to the warp
    const __nv_bfloat16* k_tile = slot_k(i);
    const __nv_bfloat16* v_tile = k_tile + Ring::kTileElements;
    const int first = tile_begin(i);

    // S = Q·Kᵀ: n-tile j holds keys 8j..8j+7; ldmatrix matrix m of lane l: key 8j + l % 8,
    // chunks 2k + m of the k16 steps k, k + 1.
    // Even and odd k steps accumulate apart (summed after): four independent chains of
    // products instead of two, since an mma waits for the previous one on its accumulator.
    float sc[2][4] = {}, sc_odd[2][4] = {};
#pragma unroll
    for (int k = 0; k < kSteps; k += 2) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        uint32_t b[4];
        const int key = 8 * j + lane % 8, chunk = 2 * k + lane / 8;
        LdMatrixX4(b, k_tile + key * kHeadDim + Swizzled(key, chunk) * kElementsPerLane);
        MmaBf16(sc[j], {qa[k][0], 0, qa[k][1], 0}, b[0], b[1]);
        MmaBf16(sc_odd[j], {qa[k + 1][0], 0, qa[k + 1][1], 0}, b[2], b[3]);
      }
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) sc[j][c] += sc_odd[j][c];
    }
    // Row g's scores of keys 8j + 2t, 8j + 2t + 1 are sc[j][0], sc[j][1].
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        if (first + 8 * j + 2 * t + c >= end) sc[j][c] = -INFINITY;
        tile_max = fmaxf(tile_max, sc[j][c]);
      }
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float new_max = fmaxf(running_max, tile_max);  // finite: key `first` is in the split
    const float correction = exp2f(running_max - new_max);
    running_max = new_max;
    float pr[2][2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      pr[j][0] = exp2f(sc[j][0] - new_max), pr[j][1] = exp2f(sc[j][1] - new_max);
    }
    running_sum = running_sum * correction + pr[0][0] + pr[0][1] + pr[1][0] + pr[1][1];
#pragma unroll
    for (int d = 0; d < kDimTiles; ++d) o[d][0] *= correction, o[d][1] *= correction;

    // O += P·V: A is row g's p of keys 2t, 2t + 1 (octet 0) and 8 + 2t, 9 + 2t (octet 1); B of
    // dim tiles d, d + 1 from ldmatrix.trans, matrix m of lane l: key 8 (m % 2) + l % 8, chunk
    // d + m / 2.
    const uint32_t pa[4] = {PackBf16(pr[0][0], pr[0][1]), 0, PackBf16(pr[1][0], pr[1][1]), 0};
#pragma unroll
    for (int d = 0; d < kDimTiles; d += 2) {
      uint32_t b[4];
      const int key = 8 * ((lane / 8) % 2) + lane % 8, chunk = d + lane / 16;
      LdMatrixX4Trans(b, v_tile + key * kHeadDim + Swizzled(key, chunk) * kElementsPerLane);
      MmaBf16(o[d], pa, b[0], b[1]);
      MmaBf16(o[d + 1], pa, b[2], b[3]);
    }
    __syncwarp();  // the slot is refilled by the next tile's issue
  }
  running_sum += __shfl_xor_sync(0xffffffffu, running_sum, 1);
  running_sum += __shfl_xor_sync(0xffffffffu, running_sum, 2);
  WaitAsync<0>();
  __syncthreads();  // the ring becomes warp_out
  if (g < kGroup) {
    if (t == 0) warp_max[warp][g] = running_max, warp_sum[warp][g] = running_sum;
#pragma unroll
    for (int d = 0; d < kDimTiles; ++d) {
      warp_out[warp][g][8 * d + 2 * t] = o[d][0];
      warp_out[warp][g][8 * d + 2 * t + 1] = o[d][1];
    }
  }
  __syncthreads();

  // Merge the warps: thread i owns elements i, i + kMmaThreads, ... of [kGroup, kHeadDim].
  for (int e = threadIdx.x; e < kGroup * kHeadDim; e += kMmaThreads) {
    const int head_in_group = e / kHeadDim, dim = e % kHeadDim;
    float m = -INFINITY;
    for (int w = 0; w < kMmaWarps; ++w) m = fmaxf(m, warp_max[w][head_in_group]);
    float sum = 0.0f, out = 0.0f;
    if (m != -INFINITY) {
      for (int w = 0; w < kMmaWarps; ++w) {
        if (warp_max[w][head_in_group] == -INFINITY) continue;  // a warp with no tile
        const float weight = exp2f(warp_max[w][head_in_group] - m);
        sum += warp_sum[w][head_in_group] * weight;
        out += warp_out[w][head_in_group][dim] * weight;
      }
    }
    const int head = first_head + head_in_group;
    if (splits == 1) {
      StoreOut(p, q_begin * out_row + head * kHeadDim + dim, valid ? out / sum : NAN);
    } else {
      const int64_t partial = (int64_t{s} * p.heads + head) * splits + split;
      p.split_out[partial * kHeadDim + dim] = valid ? out : NAN;
      if (dim == 0) p.split_stats[partial * 2] = m, p.split_stats[partial * 2 + 1] = sum;
    }
  }
}

// grid (num_sequences, heads), head_dim threads: out = the splits' outputs weighted by their
// softmax mass.
__global__ void MergeSplitsKernel(DecodeAttentionParams p, int splits) {
  StartAfterPriorKernels();
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
  StoreOut(p, int64_t{q_begin} * p.heads * p.head_dim + head * p.head_dim + d, o / sum);
}

template <int kHeadDim, int kGroup>
cudaError_t LaunchMma(const DecodeAttentionParams& p, const DecodeSplit& split,
                      cudaStream_t stream) {
  constexpr size_t kBytes = MmaRing<kHeadDim>::kBytes;
  static const cudaError_t attribute =
      cudaFuncSetAttribute(DecodeAttentionMmaKernel<kHeadDim, kGroup>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kBytes));
  if (attribute != cudaSuccess) return attribute;
  const dim3 grid(p.num_sequences, p.kv_heads, split.splits);
  Launch(DecodeAttentionMmaKernel<kHeadDim, kGroup>, grid, kMmaThreads, kBytes, stream, p,
         split.splits, split.split_len);
  return cudaGetLastError();
}

template <int kHeadDim>
cudaError_t LaunchMmaForGroup(const DecodeAttentionParams& p, const DecodeSplit& split,
                              cudaStream_t stream) {
  switch (p.heads / p.kv_heads) {
    case 1:
      return LaunchMma<kHeadDim, 1>(p, split, stream);
    case 2:
      return LaunchMma<kHeadDim, 2>(p, split, stream);
    case 4:
      return LaunchMma<kHeadDim, 4>(p, split, stream);
    default:
      return LaunchMma<kHeadDim, 8>(p, split, stream);
  }
}

}  // namespace

namespace {

// A positive integer from the environment, else `fallback`.
int EnvInt(const char* name, int fallback) {
  const char* set = std::getenv(name);
  const int value = set != nullptr ? std::atoi(set) : 0;
  return value > 0 ? value : fallback;
}

}  // namespace

DecodeSplit ChooseDecodeSplit(int num_sequences, int kv_heads, int max_context, int sm_count) {
  // Tuning knobs for benchmarks (bench/NOTES.md): blocks an SM the split aims at, shortest split.
  static const int blocks_per_sm = EnvInt("PIXTRAL_DECODE_BLOCKS_PER_SM", kBlocksPerSm);
  const int64_t blocks = int64_t{num_sequences} * kv_heads;
  const bool few = blocks * kFewPairsSms <= int64_t{kFewPairs} * sm_count;
  static const int set_min_split = EnvInt("PIXTRAL_DECODE_MIN_SPLIT", 0);
  const int min_split =
      set_min_split > 0 ? set_min_split : (few ? kMinSplitLenFewPairs : kMinSplitLen);
  const int64_t wanted =
      (int64_t{blocks_per_sm} * sm_count + blocks - 1) / std::max<int64_t>(blocks, 1);
  const int64_t most = (max_context + min_split - 1) / min_split;
  DecodeSplit split;
  split.splits = static_cast<int>(std::max<int64_t>(1, std::min(wanted, most)));
  // Whole tiles of keys a split (only the last tile of a sequence is partial).
  split.split_len = (max_context + split.splits - 1) / split.splits;
  split.split_len = std::max((split.split_len + kTileKeys - 1) / kTileKeys * kTileKeys, 1);
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
  const cudaError_t error = p.head_dim == 64 ? LaunchMmaForGroup<64>(p, split, stream)
                                             : LaunchMmaForGroup<128>(p, split, stream);
  if (error != cudaSuccess || split.splits == 1) return error;
  Launch(MergeSplitsKernel, dim3(p.num_sequences, p.heads), p.head_dim, 0, stream, p, split.splits);
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
