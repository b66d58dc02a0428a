#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/sampling.h"

namespace pixtral::cuda {
namespace {

constexpr int kSampleThreads = 1024;
constexpr int kSampleWarps = kSampleThreads / kWarpSize;
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;

// An unsigned key with the order of the float: larger float, larger key.
__device__ __forceinline__ uint32_t OrderedKey(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float KeyToFloat(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// Exclusive prefix sum over the block in thread order; `total` gets the block's sum.
// `scratch` holds kSampleWarps floats. Every thread must call it.
__device__ float BlockExclusiveScan(float v, float* scratch, float* total) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  float inclusive = v;
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const float other = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  __syncthreads();
  if (lane == kWarpSize - 1) scratch[warp] = inclusive;
  __syncthreads();
  float warp_before = 0.0f, sum = 0.0f;
  for (int w = 0; w < kSampleWarps; ++w) {
    if (w < warp) warp_before += scratch[w];
    sum += scratch[w];
  }
  *total = sum;
  return warp_before + inclusive - v;
}

__global__ void __launch_bounds__(kSampleThreads) SampleKernel(SampleParams p) {
  StartAfterPriorKernels();
  __shared__ float scratch[kSampleWarps];
  __shared__ float best_value[kSampleWarps];
  __shared__ int best_index[kSampleWarps];
  __shared__ float histogram[kRadixBins];
  __shared__ uint32_t prefix_shared;
  __shared__ float above_shared;
  __shared__ int chosen_thread, last_thread, chosen_id;

  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int64_t row = blockIdx.x, vocab = p.vocab;
  const float* x = p.logits + row * vocab;
  const float temperature = p.draws[row * 3], top_p = p.draws[row * 3 + 1];
  const float uniform = p.draws[row * 3 + 2];

  // Pass 1: the maximum, its first index, and whether the row is valid.
  float best = -INFINITY;
  int index = INT32_MAX;
  bool bad = false;
  for (int64_t i = tid; i < vocab; i += kSampleThreads) {
    const float v = x[i];
    bad |= isnan(v) || v == INFINITY;
    if (v > best) best = v, index = static_cast<int>(i);  // strided: the first is the lowest
  }
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, offset);
    const int oi = __shfl_xor_sync(0xffffffffu, index, offset);
    if (ov > best || (ov == best && oi < index)) best = ov, index = oi;
  }
  if (lane == 0) best_value[warp] = best, best_index[warp] = index;
  bad = __syncthreads_or(bad);
  best = best_value[0], index = best_index[0];
  for (int w = 1; w < kSampleWarps; ++w) {
    if (best_value[w] > best || (best_value[w] == best && best_index[w] < index)) {
      best = best_value[w], index = best_index[w];
    }
  }
  if (bad || best == -INFINITY) {
    if (tid == 0) p.ids[row] = -1, p.logprobs[row] = NAN;
    return;
  }
  const float max = best;

  // Pass 2: the softmax sums, raw (for the logprob) and tempered (the distribution's mass).
  const bool greedy = temperature == 0.0f;
  const float inv_t = greedy ? 0.0f : 1.0f / temperature;
  float raw = 0.0f, tempered = 0.0f;
  for (int64_t i = tid; i < vocab; i += kSampleThreads) {
    const float d = x[i] - max;
    raw += expf(d);
    if (!greedy) tempered += expf(d * inv_t);
  }
  const float raw_sum = BlockReduce(raw, SumOp(), scratch);
  if (greedy) {
    if (tid == 0) p.ids[row] = index, p.logprobs[row] = -logf(raw_sum);
    return;
  }
  const float mass = BlockReduce(tempered, SumOp(), scratch);

  // The nucleus threshold: the largest tempered score tau whose tokens at or above it hold
  // top_p of the mass, found one byte of its key at a time. above = mass strictly above tau.
  uint32_t prefix = 0, mask = 0;
  float above = 0.0f, tie_mass = 0.0f;
  const float target = top_p * mass;
  if (top_p < 1.0f) {
    for (int shift = 32 - kRadixBits; shift >= 0; shift -= kRadixBits) {
      for (int b = tid; b < kRadixBins; b += kSampleThreads) histogram[b] = 0.0f;
      __syncthreads();
      for (int64_t i = tid; i < vocab; i += kSampleThreads) {
        const float s = (x[i] - max) * inv_t;
        const uint32_t key = OrderedKey(s);
        if ((key & mask) == prefix)
          atomicAdd(&histogram[(key >> shift) & (kRadixBins - 1)], expf(s));
      }
      __syncthreads();
      if (tid == 0) {
        // Highest bin first; where rounding keeps the sum under target, the lowest non-empty bin.
        float cumulative = above;
        int digit = -1, lowest = 0;
        for (int d = kRadixBins - 1; d >= 0; --d) {
          if (histogram[d] > 0.0f) lowest = d;
          if (cumulative + histogram[d] >= target) {
            digit = d;
            break;
          }
          cumulative += histogram[d];
        }
        if (digit < 0) {
          digit = lowest;
          cumulative = above;
          for (int d = kRadixBins - 1; d > digit; --d) cumulative += histogram[d];
        }
        prefix_shared = prefix | (static_cast<uint32_t>(digit) << shift);
        above_shared = cumulative;
        if (shift == 0) scratch[0] = histogram[digit];
      }
      __syncthreads();
      prefix = prefix_shared, above = above_shared;
      mask |= static_cast<uint32_t>(kRadixBins - 1) << shift;
      if (shift == 0) tie_mass = scratch[0];
      __syncthreads();
    }
  }
  // Tokens strictly above tau are kept; of the ties at tau, the lowest ids, as many as top_p
  // needs (all of them when top_p is 1 and tau is below every score).
  const float tau = top_p < 1.0f ? KeyToFloat(prefix) : -INFINITY;
  const float tie_e = top_p < 1.0f ? expf(tau) : 0.0f;
  float ties_needed = 0.0f;
  if (top_p < 1.0f) {
    const float tie_count = tie_e > 0.0f ? rintf(tie_mass / tie_e) : 0.0f;
    ties_needed =
        tie_e > 0.0f ? fminf(tie_count, fmaxf(1.0f, ceilf((target - above) / tie_e))) : tie_count;
  }

  // The draw: inverse CDF in id order, each thread owning one contiguous range of ids.
  const int64_t chunk = (vocab + kSampleThreads - 1) / kSampleThreads;
  const int64_t begin = tid * chunk, end = begin + chunk < vocab ? begin + chunk : vocab;
  float greater = 0.0f, ties = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    const float s = (x[i] - max) * inv_t;
    if (s > tau) greater += expf(s);
    if (s == tau && top_p < 1.0f) ties += 1.0f;
  }
  float unused;
  const float ties_before = BlockExclusiveScan(ties, scratch, &unused);
  const float my_ties = fminf(fmaxf(ties_needed - ties_before, 0.0f), ties);
  const float kept = greater + my_ties * tie_e;
  float kept_total;
  const float kept_before = BlockExclusiveScan(kept, scratch, &kept_total);
  const float goal = fminf(uniform, 1.0f) * kept_total;
  if (tid == 0) chosen_thread = INT32_MAX, last_thread = -1;
  __syncthreads();
  if (kept > 0.0f) {
    atomicMax(&last_thread, tid);
    if (goal >= kept_before && goal < kept_before + kept) atomicMin(&chosen_thread, tid);
  }
  __syncthreads();
  const int owner = chosen_thread != INT32_MAX ? chosen_thread : last_thread;
  if (tid == owner) {
    float cumulative = kept_before, ties_left = ties_needed - ties_before;
    int id = -1;
    for (int64_t i = begin; i < end; ++i) {
      const float s = (x[i] - max) * inv_t;
      bool keep = s > tau;
      if (!keep && s == tau && ties_left > 0.0f) keep = true, ties_left -= 1.0f;
      if (!keep) continue;
      id = static_cast<int>(i);
      cumulative += expf(s);
      if (goal < cumulative) break;
    }
    chosen_id = id;  // past the end by rounding: the last kept token takes the remainder
  }
  __syncthreads();
  if (tid == 0) {
    p.ids[row] = chosen_id;
    p.logprobs[row] = x[chosen_id] - max - logf(raw_sum);
  }
}

}  // namespace

cudaError_t LaunchSample(const SampleParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.vocab <= 0 || p.vocab > INT32_MAX || p.rows > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) return cudaSuccess;
  Launch(SampleKernel, static_cast<unsigned>(p.rows), kSampleThreads, 0, stream, p);
  return cudaGetLastError();
}

}  // namespace pixtral::cuda
