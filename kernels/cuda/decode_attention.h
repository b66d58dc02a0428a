// Decode attention over the paged bf16 KV cache: one new query token per sequence, all query
// heads of a KV head's group in one thread block (each key and value row is read once for the
// whole group), and long contexts split across blocks (split-KV) whose partial softmax states a
// second kernel merges.
//
// Block (sequence, kv head, split): 4 warps walk the split's positions in tiles of 16, each warp
// through its own ring of cp.async copies in shared memory; both products run on tensor cores
// (mma.sync, the group's query heads as the rows of the query tile) with an online softmax (base
// 2) per head; the warps' states are merged in shared memory, then across splits.
//
//   DecodeAttentionParams p{...};
//   const DecodeSplit split = ChooseDecodeSplit(p.num_sequences, p.kv_heads, max_context, sms);
//   ... allocate split.splits > 1 ? scratch : none ...
//   CUDA_CHECK(LaunchDecodeAttention(p, split, stream));
#ifndef PIXTRAL_KERNELS_CUDA_DECODE_ATTENTION_H_
#define PIXTRAL_KERNELS_CUDA_DECODE_ATTENTION_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

struct DecodeSplit {
  int splits = 1;     // blocks per (sequence, kv head)
  int split_len = 1;  // positions per split
};

// Splits of `max_context` positions that give the grid about two blocks per SM (as many as fit
// at once), at least 256 positions each (a split's fixed cost and the merge outweigh a shorter
// one) and whole tiles of 16 positions. PIXTRAL_DECODE_BLOCKS_PER_SM and
// PIXTRAL_DECODE_MIN_SPLIT override the 2 and the 256 (for tuning runs).
DecodeSplit ChooseDecodeSplit(int num_sequences, int kv_heads, int max_context, int sm_count);

struct DecodeAttentionParams {
  const float* q;  // [tokens, heads, head_dim], token t's row at t * q_stride
  int64_t q_stride;
  void* out;  // f32 or (out_bf16) bf16 [tokens, heads, head_dim]
  bool out_bf16;
  const uint16_t* k_cache;  // bf16 [num_blocks, block_size, kv_heads, head_dim]
  const uint16_t* v_cache;
  const int32_t* sequences;     // [num_sequences, 3]: q_begin, q_len, start_pos
  const int32_t* block_tables;  // [num_sequences, max_blocks]
  int32_t num_sequences;
  int32_t max_blocks;
  int32_t num_blocks;
  int32_t block_size;
  int32_t tokens;
  int32_t heads;
  int32_t kv_heads;
  int32_t head_dim;
  float scale;
  // With more than one split: f32 [num_sequences, heads, splits, head_dim] partial outputs and
  // [num_sequences, heads, splits, 2] (max, sum) of each split's softmax.
  float* split_out = nullptr;
  float* split_stats = nullptr;
};

// Whether LaunchDecodeAttention takes this shape (head_dim 64 or 128, 1, 2, 4 or 8 query heads
// per kv head); others stay on the per-query kernel.
bool DecodeAttentionApplies(int head_dim, int heads, int kv_heads);

// Attention of every sequence with q_len == 1 over its positions [0, start_pos], which the
// cache must already hold (the append runs first). Other sequences' rows are untouched; one whose
// block table is too short or names a block outside the cache gets NaN.
cudaError_t LaunchDecodeAttention(const DecodeAttentionParams& params, const DecodeSplit& split,
                                  cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_DECODE_ATTENTION_H_
